"""Preference fine-tuning: the DPO and KTO losses, reading every export output, and a run that learns."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from feedback.export import export
from feedback.store import FeedbackStore
from model.pipeline.bundled import DEFAULT_BUNDLE, load_bundle
from model.pipeline.identity import model_name, weights_hash
from model.pipeline.pipeline_raphael import RaphaelPipeline
from model.pipeline.schedule import default_scheduler
from model.pipeline.text_encoder import encode_text
from model.prompts.trained_domain import TrainedDomain
from model.training.preference import (
    build_parser,
    denoising_errors,
    dpo_loss,
    export_sha256,
    kto_loss,
    load_preferences,
    main,
)
from model.training.train import to_tensor
from model.unet.unet_raphael import RaphaelUNet
from tests.test_store import provenance, solid
from tests.test_train import TINY

PROMPT = "an apple on a blue background"


def test_dpo_loss_rewards_a_lower_error_on_the_winner() -> None:
    ref = torch.tensor([0.5, 0.5])
    loss, accuracy = dpo_loss(ref, ref, ref, ref, beta=100.0)
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6) and accuracy.item() == 0.0
    better, _ = dpo_loss(ref - 0.01, ref, ref, ref, beta=100.0)  # error falls on the winner only
    worse, _ = dpo_loss(ref + 0.01, ref, ref, ref, beta=100.0)
    assert better.item() < math.log(2) < worse.item()
    assert math.isclose(better.item(), -math.log(1 / (1 + math.exp(-0.5))), rel_tol=1e-5)  # -log σ(β/2 · 0.01)


def test_kto_loss_signs_the_reward_by_label_around_the_kl_point() -> None:
    ref = torch.tensor([0.5, 0.5])
    model = torch.tensor([0.49, 0.51])  # better on the first image, worse on the second
    right, acc_right = kto_loss(model, ref, torch.tensor([True, False]), beta=100.0)
    wrong, acc_wrong = kto_loss(model, ref, torch.tensor([False, True]), beta=100.0)
    assert right.item() < 0.5 < wrong.item()
    assert acc_right.item() == 1.0 and acc_wrong.item() == 0.0
    heavy, _ = kto_loss(model, ref, torch.tensor([False, True]), beta=100.0, lambda_u=2.0)
    assert heavy.item() > wrong.item()


@pytest.fixture
def tiny_pipeline(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    pipe = RaphaelPipeline(unet=RaphaelUNet(**TINY), scheduler=default_scheduler())
    pipe.save_pretrained(tmp_path / "tiny", include_text_encoder=False)
    return tmp_path / "tiny"


@pytest.fixture
def feedback(tmp_path: Path) -> FeedbackStore:
    """Two raters who like the red apples and dislike the blue ones; one tie; one 64-px image."""
    with FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}", tmp_path / "images") as store:
        for name in ("ann", "bob"):
            rater = store.rater(name)
            record = store.record_generation(
                rater,
                provenance(prompt=PROMPT, seed=len(name), width=32, height=32),
                [solid("red", 32), solid("blue", 32), solid("#ff2020", 32), solid("#2020ff", 32)],
            )
            for image_id, value in zip(record.image_ids, (1, -1, 1, -1)):
                store.vote(rater, image_id, value)
            store.compare(rater, record.image_ids[0], record.image_ids[2], "tie")
        big = store.record_generation(rater, provenance(prompt=PROMPT, width=64, height=64), [solid("red", 64)])
        store.vote(rater, big.image_ids[0], 1)
        yield store


@pytest.mark.parametrize("output", ["parquet", "datasets"])  # pickapic refuses jsonl
def test_reads_every_pickapic_output(feedback: FeedbackStore, tmp_path: Path, output: str) -> None:
    result = export(feedback, "pickapic", tmp_path / "pairs", output)
    assert result.counts["cross_size_vote_pairs_skipped"] == 2  # bob's 64-px like against his two dislikes
    pairs = load_preferences(tmp_path / "pairs")
    assert len(pairs.pairs) == 8 and pairs.skipped == {"ties": 2}  # per rater: 2 likes x 2 dislikes
    for winner, loser in pairs.pairs:
        assert winner.label and not loser.label and winner.caption == loser.caption == PROMPT
        assert winner.image[0, 0, 0] > 200 and loser.image[0, 0, 2] > 200  # red won, blue lost (JPEG-close)


def test_pairs_of_other_sources_are_checked(tmp_path: Path) -> None:
    """Pairs not made by our exporter may mix sizes (skipped) or carry base64 text (refused with a hint)."""

    def jpeg(size: int) -> bytes:
        buffer = io.BytesIO()
        solid("red", size).save(buffer, format="JPEG")
        return buffer.getvalue()

    row = {"caption": PROMPT, "jpg_0": jpeg(32), "jpg_1": jpeg(64), "label_0": 1.0, "label_1": 0.0}
    (tmp_path / "mixed").mkdir()
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "mixed" / "train.parquet")
    assert load_preferences(tmp_path / "mixed").skipped == {"pairs_of_different_sizes": 1}
    (tmp_path / "text.jsonl").write_text(json.dumps({**row, "jpg_0": "aGk=", "jpg_1": "aGk="}) + "\n")
    with pytest.raises(ValueError, match="--as parquet"):
        load_preferences(tmp_path / "text.jsonl")


@pytest.mark.parametrize("output", ["parquet", "jsonl", "datasets"])
def test_reads_every_kto_output(feedback: FeedbackStore, tmp_path: Path, output: str) -> None:
    export(feedback, "kto", tmp_path / "kto", output)
    singles = load_preferences(tmp_path / "kto").singles
    assert len(singles) == 9 and sum(x.label for x in singles) == 5
    assert {x.image.shape for x in singles} == {(32, 32, 3), (64, 64, 3)}


@torch.no_grad()
def rewards(tuned: RaphaelPipeline, reference: RaphaelUNet, examples: list, draws: int = 4) -> torch.Tensor:
    """Implicit reward ``ref_error - tuned_error`` (B,) per example, averaged over fixed noise draws.

    Consecutive examples share noise and timestep, so the rewards of a pair compare like with like.
    """
    images = to_tensor(np.stack([x.image for x in examples]))  # (B, 3, H, W)
    text, mask = encode_text(tuned.tokenizer, tuned.text_encoder, [x.caption for x in examples])
    generator = torch.Generator().manual_seed(0)
    total = torch.zeros(len(examples))
    for _ in range(draws):
        noise = torch.randn(images.shape, generator=generator)
        timesteps = torch.randint(0, 1000, (len(examples),), generator=generator)
        noise[1::2], timesteps[1::2] = noise[0::2], timesteps[0::2]
        scheduler = tuned.scheduler
        total += denoising_errors(reference, scheduler, images, text, mask, noise, timesteps)
        total -= denoising_errors(tuned.unet, scheduler, images, text, mask, noise, timesteps)
    return total / draws


def run_args(data: Path, model: Path, out: Path, steps: int) -> list[str]:
    return [
        "--data",
        str(data),
        "--model",
        str(model),
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--batch-size",
        "4",
        "--lr",
        "3e-3",
        "--warmup",
        "1",
        "--beta",
        "5000",
        "--save-every",
        "2",
        "--threads",
        "1",
    ]


@pytest.mark.slow
def test_dpo_run_learns_the_preference_resumes_and_loads(
    feedback: FeedbackStore, tiny_pipeline: Path, tmp_path: Path
) -> None:
    shutil.copyfile(DEFAULT_BUNDLE / "training.json", tiny_pipeline / "training.json")  # a curriculum bundle
    base = json.loads((tiny_pipeline / "training.json").read_text())
    export(feedback, "pickapic", tmp_path / "pairs", "parquet")
    main(run_args(tmp_path / "pairs", tiny_pipeline, tmp_path / "run", 4))
    assert torch.load(tmp_path / "run" / "state.pt", weights_only=False)["step"] == 4
    main(run_args(tmp_path / "pairs", tiny_pipeline, tmp_path / "run", 12))  # resumes at step 4
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0

    out = tmp_path / "run" / "pipeline"
    tuned = load_bundle(out)
    trained = json.loads((out / "training.json").read_text())
    assert trained["name"] == model_name(out) == "tiny-dpo"  # <base name>-<loss>; the app shows it
    assert trained["data"] == base["data"] and trained["continued_from"] == base
    assert (trained["steps"], trained["images_seen"]) == (12, 12 * 4 * 2)  # 4 pairs of 2 images per step
    assert TrainedDomain.from_bundle(out) == TrainedDomain.from_bundle(DEFAULT_BUNDLE)
    record = trained["preference"]
    assert (record["loss"], record["steps"], record["examples"], record["skipped"]) == ("dpo", 12, 8, {"ties": 2})
    hyperparameters = {"beta": 5000.0, "lambda_d": 1.0, "lambda_u": 1.0, "lr": 3e-3, "warmup": 1, "batch_size": 4}
    assert hyperparameters.items() <= record.items() and record["seed"] == 0
    assert record["export"] == {"path": str(tmp_path / "pairs"), "sha256": export_sha256(tmp_path / "pairs")}
    assert record["base_model"] == {"path": str(tiny_pipeline), "weights_hash": weights_hash(tiny_pipeline)}
    card = (out / "README.md").read_text()  # the model card says what it was tuned on
    assert card.startswith("# tiny-dpo") and weights_hash(tiny_pipeline) in card and record["export"]["sha256"] in card
    assert "12 steps" in card and "lr 0.003" in card and "2 ties" in card
    pairs = load_preferences(tmp_path / "pairs").pairs
    reward = rewards(tuned, load_bundle(tiny_pipeline).unet, [x for pair in pairs for x in pair])
    assert (reward[0::2] - reward[1::2]).mean() > 0  # winners gained on losers against the reference
    tuned.set_progress_bar_config(disable=True)
    image = tuned(PROMPT, num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all()


@pytest.mark.slow
def test_dpo_with_flipped_labels_moves_the_other_way(
    feedback: FeedbackStore, tiny_pipeline: Path, tmp_path: Path
) -> None:
    export(feedback, "pickapic", tmp_path / "pairs", "parquet")
    rows = pq.read_table(tmp_path / "pairs" / "train.parquet").to_pylist()
    for row in rows:
        row["label_0"], row["label_1"] = row["label_1"], row["label_0"]
    (tmp_path / "flipped").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "flipped" / "train.parquet")
    main(run_args(tmp_path / "flipped", tiny_pipeline, tmp_path / "run", 12))
    pairs = load_preferences(tmp_path / "pairs").pairs  # red first, as the people voted
    reward = rewards(
        load_bundle(tmp_path / "run" / "pipeline"),
        load_bundle(tiny_pipeline).unet,
        [x for pair in pairs for x in pair],
    )
    assert (reward[0::2] - reward[1::2]).mean() < 0


@pytest.mark.slow
def test_kto_run_raises_the_reward_of_liked_images(feedback: FeedbackStore, tiny_pipeline: Path, tmp_path: Path):
    export(feedback, "kto", tmp_path / "kto", "jsonl")
    main([*run_args(tmp_path / "kto", tiny_pipeline, tmp_path / "run", 12), "--name", "tiny-liked"])
    trained = json.loads((tmp_path / "run" / "pipeline" / "training.json").read_text())
    assert trained["name"] == "tiny-liked" and trained["data"] is None and trained["continued_from"] is None
    record = trained["preference"]
    assert (record["loss"], record["examples"], record["skipped"]) == ("kto", 8, {"not_a_bucket_of_the_model": 1})
    singles = [x for x in load_preferences(tmp_path / "kto").singles if x.image.shape == (32, 32, 3)]
    reward = rewards(load_bundle(tmp_path / "run" / "pipeline"), load_bundle(tiny_pipeline).unet, singles)
    liked = torch.tensor([x.label for x in singles])
    assert reward[liked].mean() > reward[~liked].mean()


def test_no_usable_rows_is_a_clear_error(feedback: FeedbackStore, tiny_pipeline: Path, tmp_path: Path) -> None:
    with FeedbackStore(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path / "empty") as empty:
        export(empty, "pickapic", tmp_path / "none", "parquet")
    with pytest.raises(ValueError, match="nothing to train"):
        main(run_args(tmp_path / "none", tiny_pipeline, tmp_path / "run", 2))
    with pytest.raises(FileNotFoundError, match="No export found"):
        main(run_args(tmp_path / "missing", tiny_pipeline, tmp_path / "run", 2))


@pytest.mark.slow
def test_a_latent_pipeline_is_tuned_on_vae_latents(feedback: FeedbackStore, tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(4, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=32,
    )
    unet = RaphaelUNet(**{**TINY, "sample_size": 16, "in_channels": 4, "out_channels": 4})
    RaphaelPipeline(unet=unet, scheduler=default_scheduler(), vae=vae).save_pretrained(
        tmp_path / "latent", include_text_encoder=False
    )
    export(feedback, "pickapic", tmp_path / "pairs", "parquet")
    main(run_args(tmp_path / "pairs", tmp_path / "latent", tmp_path / "run", 2))
    tuned = load_bundle(tmp_path / "run" / "pipeline")
    assert tuned.vae is not None and tuned.unet.config.in_channels == 4
    tuned.set_progress_bar_config(disable=True)
    image = tuned(PROMPT, num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all()


def test_every_flag_is_described_and_bad_values_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert all(action.help for action in build_parser()._actions)
    for flag, value in [("--steps", "0"), ("--warmup", "0"), ("--name", " ")]:
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--data", "x", flag, value])
        assert f"argument {flag}:" in capsys.readouterr().err
