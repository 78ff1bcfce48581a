"""The reward model: learning from real exports of rendered scenes, saving, relabelling, the raters' ceiling.

The exports come from the real store and exporter: one rater sees generations of three rendered scenes
for one caption (its own scene and the scenes of two other captions) and likes the first only. So a pair's
winner is the scene of its caption, and a 👍 marks an image that shows its caption: an easy task (12 emoji,
one object per scene) that frozen recognizer and MiniLM features can learn from 100-odd captions.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from PIL import Image

from feedback.export import export
from feedback.store import FeedbackStore
from model.data.dataset import EmojiScenes, SceneConfig
from model.evaluation.reward import (
    Judgements,
    RewardModel,
    best_of_n,
    held_out_captions,
    load_reward_model,
    main,
    rater_ceiling,
    read_export,
    split_rows,
)
from tests.test_store import provenance

torch.set_num_threads(1)

SCENES = SceneConfig(num_emoji=12, max_objects=1)
GENERATIONS = 160


@dataclass(frozen=True)
class Exports:
    pairs: Path
    pairs_datasets: Path
    votes: Path
    votes_imagefolder: Path
    model: Path  # trained by the CLI on both exports
    metrics: dict


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    root = tmp_path_factory.mktemp("reward")
    scenes = EmojiScenes(SCENES, seed=3)
    with FeedbackStore(f"sqlite:///{root / 'feedback.db'}", root / "images") as store:
        rater = store.rater("ann")
        for i in range(GENERATIONS):
            bucket = SCENES.bucket_names[i % len(SCENES.bucket_names)]
            pixels, captions, _ = scenes.batch(i, 3, bucket=bucket)  # (3, H, W, 3): scene 0 shows captions[0]
            height, width = pixels.shape[1:3]
            record = store.record_generation(
                rater,
                provenance(prompt=captions[0], seed=i, width=width, height=height),
                [Image.fromarray(p) for p in pixels],
            )
            for image_id, value in zip(record.image_ids, (1, -1, -1)):
                store.vote(rater, image_id, value)
        export(store, "pickapic", root / "pairs", "parquet")
        export(store, "pickapic", root / "pairs_datasets", "datasets")
        export(store, "kto", root / "votes", "parquet")
        export(store, "kto", root / "votes_imagefolder", "jsonl")
    args = ["train", "--pairs", str(root / "pairs"), "--votes", str(root / "votes"), "--out", str(root / "model")]
    assert main([*args, "--threads", "1", "--seed", "0", "--epochs", "100"]) == 0
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    return Exports(
        root / "pairs", root / "pairs_datasets", root / "votes", root / "votes_imagefolder", root / "model", metrics
    )


def test_training_lifts_held_out_accuracy_far_above_an_untrained_head(exports: Exports) -> None:
    heldout, untrained = exports.metrics["heldout"], exports.metrics["heldout_untrained_head"]
    pairwise = heldout["pairwise"]
    assert pairwise["n"] >= 40
    assert pairwise["accuracy"] >= 0.75 and pairwise["ci95"][0] > 0.6, pairwise
    assert pairwise["ci95"][0] <= pairwise["accuracy"] <= pairwise["ci95"][1]
    assert heldout["votes"]["majority_baseline"] == pytest.approx(2 / 3)  # one 👍 and two 👎 per generation
    assert heldout["votes"]["accuracy"] >= heldout["votes"]["majority_baseline"] + 0.1, heldout["votes"]
    assert abs(untrained["pairwise"]["accuracy"] - 0.5) <= 0.2, untrained  # an untrained head is at chance
    assert exports.metrics["data"]["votes"] == 3 * GENERATIONS
    ceiling = exports.metrics["raters_ceiling"]  # one rater: no pair can be checked against another
    assert ceiling["agreement"] is None and ceiling["judgements"] == 0
    assert ceiling["note"] == "no pair was judged by two or more raters, so the raters' ceiling cannot be measured"
    assert (exports.model / SAFETENSORS_WEIGHTS_NAME).stat().st_size < 5 * 2**20


def test_the_held_out_split_shares_no_caption_and_is_seeded(exports: Exports) -> None:
    data = Judgements()
    data.add_pairs(exports.pairs)
    data.add_votes(exports.votes)
    held = held_out_captions(data.captions, 0.25, seed=0)
    assert held == held_out_captions(data.captions, 0.25, seed=0) != held_out_captions(data.captions, 0.25, seed=1)
    train, heldout = split_rows(data, held)
    train_captions = {data.pair_caption[i] for i in train.pairs} | {data.vote_caption[i] for i in train.votes}
    held_captions = {data.pair_caption[i] for i in heldout.pairs} | {data.vote_caption[i] for i in heldout.votes}
    assert held_captions == held and not train_captions & held_captions
    assert len(train.pairs) + len(heldout.pairs) == len(data.pair_caption)
    assert exports.metrics["data"]["held_out_captions"] == len(held)


def test_votes_read_alike_from_parquet_and_from_an_imagefolder(exports: Exports) -> None:
    parquet, folder = Judgements(), Judgements()
    parquet.add_votes(exports.votes)
    folder.add_votes(exports.votes_imagefolder)
    assert len(parquet.vote_label) == 3 * GENERATIONS and sum(parquet.vote_label) == GENERATIONS
    assert (parquet.captions, parquet.vote_caption, parquet.vote_label) == (
        folder.captions,
        folder.vote_caption,
        folder.vote_label,
    )
    for i, j in zip(parquet.vote_image, folder.vote_image):
        assert np.array_equal(np.asarray(parquet.bank.images[i]), np.asarray(folder.bank.images[j]))


def test_save_and_load_give_identical_scores(exports: Exports, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = RewardModel.from_recognizer(hidden_dim=16)
    images = [
        Image.open(io.BytesIO(b))
        for b in pq.read_table(exports.pairs / "train.parquet").column("jpg_0").to_pylist()[:6]
    ]
    prompts = [f"a cat on a {colour} background" for colour in ("red", "blue", "green", "red", "pink", "gray")]
    model.save_pretrained(tmp_path / "rm")
    loaded = load_reward_model(tmp_path / "rm")
    assert torch.equal(model.score(images, prompts), loaded.score(images, prompts))
    assert loaded.config.hidden_dim == 16 and not loaded.training


def swapped(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """``table`` with the labels (and best image) of ``rows`` turned round."""
    label_0 = np.asarray(table.column("label_0").to_pylist())
    label_0[rows] = 1.0 - label_0[rows]
    uids = zip(table.column("image_0_uid").to_pylist(), table.column("image_1_uid").to_pylist())
    best = ["" if label == 0.5 else a if label == 1.0 else b for (a, b), label in zip(uids, label_0)]
    for name, values in (("label_0", label_0), ("label_1", 1.0 - label_0), ("best_image_uid", best)):
        position = table.column_names.index(name)
        table = table.set_column(position, table.schema.field(position), pa.array(values))
    return table


def test_relabel_keeps_the_format_and_turns_swapped_labels_back(exports: Exports, tmp_path: Path) -> None:
    original = pq.read_table(exports.pairs / "train.parquet")
    rows = np.arange(0, len(original), 2)
    (tmp_path / "swapped").mkdir()
    pq.write_table(swapped(original, rows), tmp_path / "swapped" / "train.parquet")
    out = tmp_path / "relabelled"
    assert (
        main(["relabel", "--model", str(exports.model), "--pairs", str(tmp_path / "swapped"), "--out", str(out)]) == 0
    )

    relabelled = pq.read_table(out / "train.parquet")
    assert relabelled.schema.equals(original.schema, check_metadata=True)
    for name in ("caption", "jpg_0", "jpg_1", "user_id", "image_0_uid", "image_1_uid", "source"):
        assert relabelled.column(name).equals(original.column(name)), name
    truth, new = (np.asarray(t.column("label_0").to_pylist()) for t in (original, relabelled))
    assert (new[rows] == truth[rows]).mean() >= 0.8  # swapped rows are turned back
    assert (new == truth).mean() >= 0.8
    assert np.array_equal(np.asarray(relabelled.column("label_1").to_pylist()), 1.0 - new)
    assert "labels_changed" in (out / "README.md").read_text()

    model = load_reward_model(exports.model)
    first = slice(0, 8)
    decode = [Image.open(io.BytesIO(b)) for b in relabelled.column("jpg_0").to_pylist()[first]]
    other = [Image.open(io.BytesIO(b)) for b in relabelled.column("jpg_1").to_pylist()[first]]
    captions = relabelled.column("caption").to_pylist()[first]
    expected = (model.score(decode, captions) > model.score(other, captions)).float().numpy()
    assert np.array_equal(new[first], expected)
    best = relabelled.column("best_image_uid").to_pylist()
    uids = relabelled.column("image_0_uid").to_pylist(), relabelled.column("image_1_uid").to_pylist()
    assert all(b == (uids[0][i] if new[i] == 1.0 else uids[1][i]) for i, b in enumerate(best))


def test_relabel_writes_a_datasets_export_as_datasets(exports: Exports, tmp_path: Path) -> None:
    out = tmp_path / "relabelled"
    args = ["relabel", "--model", str(exports.model), "--pairs", str(exports.pairs_datasets), "--out", str(out)]
    assert main(args) == 0
    before, _, _ = read_export(exports.pairs_datasets, "--pairs")
    after, _, layout = read_export(out, "--pairs")
    assert layout == "datasets" and after.schema.equals(before.schema) and len(after) == len(before)


def write_pairs(path: Path, rows: list[tuple[str, int, int, float]]) -> None:
    """A pickapic Parquet file of (rater, image 0, image 1, label_0); image n is a solid grey of level n."""

    def jpeg(level: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), (level, level, level)).save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()

    path.mkdir()
    table = [
        {"caption": "a cat", "jpg_0": jpeg(a), "jpg_1": jpeg(b), "label_0": label, "label_1": 1 - label, "user_id": r}
        for r, a, b, label in rows
    ]
    pq.write_table(pa.Table.from_pylist(table), path / "train.parquet")


def test_raters_ceiling_on_three_raters(tmp_path: Path) -> None:
    write_pairs(
        tmp_path / "pairs",
        [
            ("ann", 10, 90, 1.0),  # 10 beats 90
            ("bob", 90, 10, 0.0),  # the same choice, the pair shown the other way round
            ("cy", 10, 90, 0.0),  # 90 beats 10
            ("dan", 10, 90, 0.5),  # a tie: ignored
            ("ann", 20, 80, 1.0),  # three raters agree
            ("bob", 80, 20, 0.0),
            ("cy", 20, 80, 1.0),
            ("ann", 30, 70, 1.0),  # one rater only: not counted
        ],
    )
    data = Judgements()
    data.add_pairs(tmp_path / "pairs")
    ceiling = rater_ceiling(data.pair_images, data.pair_label, data.pair_rater)
    # First pair: ann and bob each see the others split (½), cy sees two against (0); second pair: 1, 1, 1.
    assert math.isclose(ceiling["agreement"], (0.5 + 0.5 + 0.0 + 3.0) / 6)
    assert (ceiling["judgements"], ceiling["pairs"], ceiling["even_splits"]) == (6, 2, 2)


class FixedScores:
    """Stands in for a RewardModel whose scores are known."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = torch.tensor(scores)

    def score(self, images: list, prompts: list[str]) -> torch.Tensor:
        assert len(images) == len(prompts) == len(self.scores) and len(set(prompts)) == 1
        return self.scores


def test_best_of_n_returns_the_top_k_indices_best_first() -> None:
    model = FixedScores([0.1, 0.9, -1.0, 0.9, 0.3])
    images = [None] * 5
    assert best_of_n(model, images, "a cat", 1) == [1]
    assert best_of_n(model, images, "a cat", 3) == [1, 3, 4]  # equal scores keep the earlier image first
    assert best_of_n(model, images, "a cat", 5) == [1, 3, 4, 0, 2]
    for k in (0, 6):
        with pytest.raises(ValueError, match="k must be between 1 and the number of images"):
            best_of_n(model, images, "a cat", k)


def test_score_prints_the_scores_as_json(exports: Exports, tmp_path: Path, capsys) -> None:
    pixels, captions, _ = EmojiScenes(SCENES, seed=99).batch(0, 2, bucket="1:1")
    paths = [tmp_path / f"{i}.png" for i in range(2)]
    for path, image in zip(paths, pixels):
        Image.fromarray(image).save(path)
    capsys.readouterr()
    assert main(["score", "--model", str(exports.model), "--prompt", captions[0], *map(str, paths)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["prompt"] == captions[0] and [s["image"] for s in printed["scores"]] == list(map(str, paths))
    model = load_reward_model(exports.model)
    expected = model.score([Image.open(p) for p in paths], [captions[0]] * 2).tolist()
    assert [s["score"] for s in printed["scores"]] == pytest.approx(expected, abs=1e-6)


def error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    found = re.match(r"python -m model\.evaluation\.reward( train| relabel| score)?: error: (.*)", message)
    assert found, message
    return found.group(2)


def test_bad_paths_give_one_sentence_naming_the_flag_or_file(
    exports: Exports, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    image = tmp_path / "not-an-image.png"
    image.write_text("hello")
    out = str(tmp_path / "out")
    expected = {
        (
            "train",
            "--pairs",
            str(tmp_path / "nowhere"),
            "--out",
            out,
        ): f"--pairs {tmp_path / 'nowhere'} does not exist.",
        ("train", "--votes", str(empty), "--out", out): f"--votes {empty} holds no export",
        ("train", "--votes", str(exports.pairs), "--out", out): f"--votes {exports.pairs} is not a kto export",
        ("train", "--pairs", str(exports.votes), "--out", out): f"--pairs {exports.votes} is not a pickapic export",
        ("train", "--out", out): "train needs --pairs, --votes or both.",
        ("train", "--pairs", str(exports.pairs), "--out", out, "--epochs", "0"): "argument --epochs: must be 1",
        ("score", "--model", str(empty), "--prompt", "a cat", str(image)): f"--model {empty} holds no reward model",
        ("score", "--model", str(exports.model), "--prompt", "a cat", str(image)): f"IMAGE {image} is not an image",
        ("relabel", "--model", str(exports.model), "--pairs", str(exports.pairs), "--out", str(exports.votes)): (
            f"--out {exports.votes} is not an empty folder"
        ),
    }
    for argv, start in expected.items():
        message = error_of(list(argv), capsys)
        assert message.startswith(start), (argv, message)
        assert message.endswith(".") and "\n" not in message and ". " not in message.removeprefix(start), message


def test_help_describes_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, words in [
        ([], ["train", "relabel", "score", "examples"]),
        (["train"], ["--pairs", "--votes", "--out", "--epochs", "--lr", "--seed", "--val-fraction"]),
        (["relabel"], ["--model", "--pairs", "--out", "choice"]),
        (["score"], ["--model", "--prompt", "IMAGE"]),
    ]:
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        text = capsys.readouterr().out
        assert all(word in text for word in words), (argv, text)
