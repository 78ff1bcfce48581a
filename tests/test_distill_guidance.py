"""Guidance distillation: the student starts as the teacher, learns the guided prediction, resumes, is a version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.versions import lineage
from model.pipeline.bundled import load_bundle
from model.pipeline.identity import model_name, weights_hash
from model.pipeline.pipeline_raphael import RaphaelPipeline
from model.pipeline.schedule import default_scheduler, make_noise_scheduler
from model.pipeline.text_encoder import encode_text
from model.training.distill_guidance import guided_target, main, parse_args, student_from
from model.unet.unet_raphael import RaphaelUNet
from tests.test_train import TINY

SLICE = {
    "sample_size": 32,
    "num_emoji": 3,
    "max_objects": 1,
    "max_count": 1,
    "object_weights": None,
    "styles": "flat",
    "buckets": "1:1",
    "paraphrases": False,
}


@pytest.fixture
def teacher(tmp_path: Path) -> Path:
    """A tiny pipeline with a training record naming the slice it was trained on."""
    torch.manual_seed(0)
    pipe = RaphaelPipeline(unet=RaphaelUNet(**TINY), scheduler=default_scheduler())
    pipe.save_pretrained(tmp_path / "teacher", include_text_encoder=False)
    (tmp_path / "teacher" / "training.json").write_text(json.dumps({"name": "tiny", "steps": 5, "data": SLICE}))
    return tmp_path / "teacher"


def distance_to_target(student: RaphaelUNet, teacher: RaphaelUNet, pipe: RaphaelPipeline, scale: float) -> float:
    """Mean squared gap between the student's one-pass prediction and the teacher's CFG one, on a fixed batch."""
    generator = torch.Generator().manual_seed(1)
    clean = torch.rand(4, 3, 32, 32, generator=generator) * 2 - 1
    noise = torch.randn(clean.shape, generator=generator)
    timesteps = torch.tensor([100, 400, 700, 900])
    noisy = make_noise_scheduler().add_noise(clean, noise, timesteps)
    text, mask = encode_text(pipe.tokenizer, pipe.text_encoder, ["an apple", "a cat", "a dog", "a star"])
    empty, empty_mask = encode_text(pipe.tokenizer, pipe.text_encoder, [""] * 4)
    scales = torch.full((4,), scale)
    with torch.no_grad():
        target = guided_target(teacher, noisy, timesteps, text, mask, empty, empty_mask, scales)
        prediction = student.eval()(noisy, timesteps, text, mask, guidance=scales).sample
    return (prediction - target).pow(2).mean().item()


def test_the_student_starts_as_the_teachers_prompt_only_prediction(teacher: Path) -> None:
    pipe = load_bundle(teacher)
    student = student_from(pipe.unet, (1.0, 4.0)).eval()
    assert student.config.guidance_embeds and tuple(student.config.guidance_range) == (1.0, 4.0)
    sample, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 800])
    text, mask = encode_text(pipe.tokenizer, pipe.text_encoder, ["an apple", "a cat"])
    with torch.no_grad():
        torch.testing.assert_close(
            student(sample, t, text, mask, guidance=3.0).sample, pipe.unet(sample, t, text, mask).sample
        )


def test_a_run_learns_the_guided_prediction_resumes_and_is_a_version(teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "distil"
    flags = ["--model", str(teacher), "--out", str(out), "--batch-size", "4", "--lr", "1e-4", "--warmup", "5"]
    main([*flags, "--steps", "10", "--save-every", "5"])
    state = torch.load(out / "state.pt", weights_only=False)
    assert state["step"] == 10 and state["images_seen"] == 40
    main([*flags, "--steps", "40", "--save-every", "10"])  # resumes at step 10
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == list(range(1, 41))

    pipe = load_bundle(teacher)
    distilled = load_bundle(out / "pipeline")
    assert distilled.unet.config.guidance_embeds
    start = student_from(pipe.unet, (1.0, 4.0))
    before = distance_to_target(start, pipe.unet, pipe, 3.0)
    after = distance_to_target(distilled.unet, pipe.unet, pipe, 3.0)
    assert after < 0.9 * before, (before, after)

    record = json.loads((out / "pipeline" / "training.json").read_text())
    assert record["name"] == "tiny-distilled" == model_name(out / "pipeline")
    assert record["data"] == SLICE and record["continued_from"]["name"] == "tiny"
    assert record["steps"] == 40 and record["images_seen"] == 160
    how = record["distillation"]
    assert how["base_model"] == {"path": str(teacher), "weights_hash": weights_hash(teacher)}
    assert (how["guidance_min"], how["guidance_max"], how["batch_size"]) == (1.0, 4.0, 4)
    assert "tiny-distilled" in (out / "pipeline" / "README.md").read_text()
    assert lineage(out / "pipeline")["base"] == {"folder": str(teacher), "weights_hash": weights_hash(teacher)}


def test_a_teacher_without_its_slice_and_bad_flags_are_refused(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    RaphaelPipeline(unet=RaphaelUNet(**TINY), scheduler=default_scheduler()).save_pretrained(
        tmp_path / "bare", include_text_encoder=False
    )
    with pytest.raises(ValueError, match="training.json"):
        main(["--model", str(tmp_path / "bare"), "--out", str(tmp_path / "out"), "--steps", "1"])
    with pytest.raises(SystemExit):
        parse_args(["--guidance-min", "5", "--guidance-max", "2"])
    assert "--guidance-min" in capsys.readouterr().err
