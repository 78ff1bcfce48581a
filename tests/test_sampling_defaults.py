"""A folder's recommended sampling: read and checked, written by the sampler curve only with its evidence, and the
app's controls start from it."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from app.generation import GenerationRequest, GenerationService
from model.evaluation.sampler_curve import recommend, set_default
from model.pipeline.pipeline_raphael import RaphaelPipeline
from model.pipeline.samplers import DEFAULT_SAMPLER
from model.pipeline.sampling_defaults import sampling_defaults
from model.pipeline.schedule import default_scheduler
from model.unet.unet_raphael import RaphaelUNet
from tests.test_train import TINY


def with_sampling(source: Path, folder: Path, sampling: dict) -> Path:
    shutil.copytree(source, folder)
    (folder / "training.json").write_text(json.dumps({"name": "tiny", "sampling": sampling}))
    return folder


def test_the_app_starts_from_the_folders_sampling(tiny_sd_dir: Path, tmp_path: Path) -> None:
    plain = GenerationService(tiny_sd_dir, device="cpu", torch_threads=1)
    assert plain.default_sampler == DEFAULT_SAMPLER and plain.call_default("num_inference_steps") == 50
    folder = with_sampling(
        tiny_sd_dir, tmp_path / "fast", {"sampler": "Euler", "num_inference_steps": 6, "guidance_scale": 3.0}
    )
    fast = GenerationService(folder, device="cpu", torch_threads=1)
    assert fast.default_sampler == "Euler"
    assert fast.call_default("num_inference_steps") == 6 and fast.call_default("guidance_scale") == 3.0
    assert fast.call_default("eta") == plain.call_default("eta")  # what the folder does not say stays the pipeline's


def test_the_folders_guidance_end_applies_to_every_image_and_is_recorded(tiny_sd_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    RaphaelPipeline(unet=RaphaelUNet(**TINY), scheduler=default_scheduler()).save_pretrained(
        tmp_path / "raphael", include_text_encoder=False
    )
    folder = with_sampling(tmp_path / "raphael", tmp_path / "guided-half", {"guidance_end": 0.5})
    service = GenerationService(folder, device="cpu", torch_threads=1)
    rows: list[int] = []
    service.pipe.unet.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    result = service.run(GenerationRequest("two cats", steps=4, cfg=2.0, seed=3, num_images=1))
    assert rows == [2, 2, 1, 1] and result.provenance["guidance_end"] == 0.5
    # A pipeline without the argument (Stable Diffusion) guides every step, and its provenance says nothing of it.
    other = GenerationService(with_sampling(tiny_sd_dir, tmp_path / "sd", {"guidance_end": 0.5}), device="cpu")
    sd = other.run(GenerationRequest("two cats", steps=2, cfg=2.0, seed=3, num_images=1))
    assert "guidance_end" not in sd.provenance


@pytest.mark.parametrize(
    "sampling",
    [{"sampler": "Heun"}, {"num_inference_steps": 0}, {"num_inference_steps": 2.5}, {"guidance_scale": -1}],
)
def test_a_sampling_the_pipeline_would_refuse_names_the_file(tmp_path: Path, sampling: dict) -> None:
    (tmp_path / "training.json").write_text(json.dumps({"sampling": sampling}))
    with pytest.raises(ValueError, match=f"{tmp_path / 'training.json'}: sampling {next(iter(sampling))}"):
        sampling_defaults(tmp_path)
    assert sampling_defaults(tmp_path / "missing") == {}


def row(key: str, sampler: str, steps: int, end: float, rows: int, low: float, seconds: float) -> dict:
    """One curve row as ``run_curve`` writes it, with only what ``set_default`` reads."""
    return {
        "key": key,
        "label": key,
        "sampler": sampler,
        "steps": steps,
        "guidance_end": end,
        "unet_evaluations": rows,
        "composition": {"accuracy": 0.93, "ci95": [0.88, 0.97]},
        "difference": {"composition": {"difference": low + 0.02, "ci95": [low, low + 0.04]}},
        "seconds_per_image": {"median": seconds},
    }


def curve(*rows: dict) -> dict:
    """A curve as ``main`` writes it: the reference, the rows, and ``recommend``'s choice within 1 point."""
    settings = [row("DDIM_25", "DDIM", 25, 1.0, 50, 0.0, 1.3), *rows]
    return {
        "reference": "DDIM_25",
        "reference_model": "teacher",
        "cfg": 2.0,
        "config_note": "256 prompts",
        "recommendation": recommend(settings, "DDIM_25", margin=0.01, target_seconds=0.25),
        "settings": settings,
    }


def test_set_default_takes_the_cheapest_setting_within_the_margin(tmp_path: Path) -> None:
    (tmp_path / "training.json").write_text(json.dumps({"name": "tiny", "data": {"num_emoji": 30}}))
    candidates = curve(
        row("DPM_4", "DPM-Solver++", 4, 1.0, 8, -0.05, 0.2),  # cheapest, but outside the margin
        row("UniPC_8", "UniPC", 8, 1.0, 16, -0.005, 0.5),
        row("DPM_8_cfg0.5", "DPM-Solver++", 8, 0.5, 12, -0.002, 0.4),  # within the margin and the fastest
        row("DPM_10", "DPM-Solver++", 10, 1.0, 20, -0.004, 0.6),
    )
    written = set_default(tmp_path, candidates, tmp_path / "curve.json")
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["name"] == "tiny" and record["data"] == {"num_emoji": 30}  # the rest of the record is kept
    assert record["sampling"] == written and sampling_defaults(tmp_path) == written
    chosen = [written[key] for key in ("sampler", "num_inference_steps", "guidance_scale", "guidance_end")]
    assert chosen == ["DPM-Solver++", 8, 2.0, 0.5]
    evidence = written["evidence"]
    assert evidence["composition_minus_reference"]["ci95"][0] == -0.002
    assert evidence["seconds_per_image"] == 0.4 and evidence["reference_seconds_per_image"] == 1.3
    assert evidence["curve"] == str(tmp_path / "curve.json") and evidence["reference"] == "DDIM_25 by teacher"


def test_set_default_leaves_the_folder_alone_when_nothing_qualifies(tmp_path: Path) -> None:
    (tmp_path / "training.json").write_text(json.dumps({"name": "tiny"}))
    assert set_default(tmp_path, curve(row("DPM_4", "DPM-Solver++", 4, 1.0, 8, -0.05, 0.2)), tmp_path / "c") is None
    assert json.loads((tmp_path / "training.json").read_text()) == {"name": "tiny"}
