"""The sampler curve: every setting scored on the reference's prompts and seeds, compared paired, timed, resumable."""

import argparse
import json

import pytest
import torch

from model.evaluation import sampler_curve
from model.evaluation.sampler_curve import Setting, main, parse_setting, recommend
from model.pipeline.pipeline_raphael import RaphaelPipeline
from model.pipeline.schedule import default_scheduler
from model.unet.unet_raphael import RaphaelUNet
from tests.test_train import TINY

REFERENCE = Setting("DDIM", 3)
OTHER = Setting("DPM-Solver++", 2, guidance_end=0.5)


@pytest.fixture
def tiny_model(tmp_path):
    """An untrained dense tiny pipeline folder: noise images, but deterministic by seed."""
    torch.manual_seed(0)
    unet = RaphaelUNet(**TINY, num_space_experts=0, num_time_experts=0)
    RaphaelPipeline(unet=unet, scheduler=default_scheduler()).save_pretrained(
        tmp_path / "tiny", include_text_encoder=False
    )
    return tmp_path / "tiny"


def curve_args(model, out) -> list[str]:
    """Two settings (the reference and one other) on two held-out prompts, two timed calls each."""
    return [
        *("--model", str(model), "--out", str(out), "--n", "2", "--batch", "2", "--repeats", "2"),
        *("--samplers", OTHER.sampler, "--steps", str(OTHER.steps), "--guidance-end", str(OTHER.guidance_end)),
        *("--reference-sampler", REFERENCE.sampler, "--reference-steps", str(REFERENCE.steps)),
        *("--num-emoji", "30", "--max-objects", "1", "--max-count", "1", "--styles", "flat"),
    ]


def test_the_curve_pairs_every_setting_with_the_reference_and_resumes(tiny_model, tmp_path, monkeypatch):
    main(curve_args(tiny_model, tmp_path / "out"))
    curve = json.loads((tmp_path / "out" / "curve.json").read_text())
    assert (tmp_path / "out" / "curve.png").stat().st_size > 0 and (tmp_path / "out" / "curve.md").is_file()
    assert curve["reference"] == REFERENCE.key and curve["cfg"] == 2.0 and curve["repeats"] == 2
    rows = {row["key"]: row for row in curve["settings"]}
    assert list(rows) == [REFERENCE.key, OTHER.key]  # the reference first, then the cheapest
    for setting, row in zip((REFERENCE, OTHER), rows.values(), strict=True):
        assert (row["sampler"], row["steps"], row["guidance_end"]) == (
            setting.sampler,
            setting.steps,
            setting.guidance_end,
        )
        assert row["n"] == 2 and len(row["per_prompt"]["composition"]) == 2
        for metric in ("composition", "identity"):
            low, high = row[metric]["ci95"]
            assert 0 <= low <= row[metric]["accuracy"] <= high <= 1
            assert row["accuracy"][metric] == row[metric]["accuracy"]
            assert set(row["difference"][metric]) == {"difference", "ci95"}
        seconds = row["seconds_per_image"]
        assert len(seconds["calls"]) == 2 and 0 < seconds["min"] <= seconds["median"]
    assert rows[REFERENCE.key]["unet_evaluations"] == 6 and rows[OTHER.key]["unet_evaluations"] == 3  # 1 of 2 guided
    for metric in ("composition", "identity"):  # the reference against itself: exactly nothing
        assert rows[REFERENCE.key]["difference"][metric] == {"difference": 0.0, "ci95": [0.0, 0.0]}
    assert set(curve["recommendation"]) == {
        "margin",
        "target_seconds",
        "cheapest_within_margin",
        "closest_to_margin",
        "meets_target",
        "closest_within_target",
    }

    # A second run finds every setting's scores and times in the cache: nothing is drawn or timed again.
    def fail(*args, **kwargs):
        raise AssertionError("a cached setting was computed again")

    monkeypatch.setattr(sampler_curve, "score_setting", fail)
    monkeypatch.setattr(sampler_curve, "time_call", fail)
    main(curve_args(tiny_model, tmp_path / "out"))
    again = json.loads((tmp_path / "out" / "curve.json").read_text())
    assert [row["per_prompt"] for row in again["settings"]] == [row["per_prompt"] for row in curve["settings"]]


def test_a_cache_of_other_prompts_is_not_reused(tiny_model, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    main([*curve_args(tiny_model, tmp_path / "a"), "--cache", str(cache)])
    computed = []
    score = sampler_curve.score_setting
    monkeypatch.setattr(sampler_curve, "score_setting", lambda *a, **k: computed.append(a[3]) or score(*a, **k))
    main([*curve_args(tiny_model, tmp_path / "b"), "--cache", str(cache), "--prompt-seed", "7"])
    assert computed == [REFERENCE, OTHER]


def test_a_reference_model_draws_the_reference_and_a_distilled_model_costs_one_row_per_step(tiny_model, tmp_path):
    """A guidance-distilled student against its teacher's reference: the reference row is the teacher's (and equals a
    run of the teacher alone), the student's rows count one U-Net row per step, its cache is kept apart."""
    teacher = RaphaelPipeline.from_pretrained(tiny_model)
    config = {key: value for key, value in teacher.unet.config.items() if not key.startswith("_")}
    student = RaphaelUNet.from_config({**config, "guidance_embeds": True})
    student.load_state_dict(teacher.unet.state_dict(), strict=False)
    RaphaelPipeline(unet=student, scheduler=default_scheduler()).save_pretrained(
        tmp_path / "student", include_text_encoder=False
    )
    main([*curve_args(tmp_path / "student", tmp_path / "out"), "--reference-model", str(tiny_model)])
    curve = json.loads((tmp_path / "out" / "curve.json").read_text())
    rows = {row["key"]: row for row in curve["settings"]}
    assert rows[REFERENCE.key]["model"] == "reference model" and rows[OTHER.key]["model"] == "model"
    assert rows[REFERENCE.key]["unet_evaluations"] == 6 and rows[OTHER.key]["unet_evaluations"] == 2
    assert (tmp_path / "out" / "cache" / "reference" / f"scores_{REFERENCE.key}.json").is_file()
    assert curve["reference_model"] == str(tiny_model) and "drawn by" in (tmp_path / "out" / "curve.md").read_text()
    main(curve_args(tiny_model, tmp_path / "alone"))
    alone = json.loads((tmp_path / "alone" / "curve.json").read_text())["settings"][0]
    assert alone["per_prompt"] == rows[REFERENCE.key]["per_prompt"]


def test_setting_names_costs_and_the_add_flag():
    assert Setting("DDIM", 25).key == "DDIM_25" and Setting("UniPC", 6, 0.5).key == "UniPC_6_cfg0.5"
    assert Setting("Euler", 5, 0.6).unet_evaluations(2.0) == 5 + 3  # 0.6 x 5 guided steps is 3, not 4
    assert Setting("Euler", 5).unet_evaluations(1.0) == 5  # no CFG: one row per step
    assert parse_setting("DPM-Solver++:8:0.5") == Setting("DPM-Solver++", 8, 0.5)
    assert parse_setting("UniPC:6") == Setting("UniPC", 6)
    for bad in ("PLMS:8", "UniPC:six", "UniPC:6:0.5:1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_setting(bad)


def row(key: str, rows: int, seconds: float, difference: float, low: float) -> dict:
    return {
        "key": key,
        "unet_evaluations": rows,
        "seconds_per_image": {"median": seconds},
        "difference": {"composition": {"difference": difference, "ci95": [low, max(0.0, difference)]}},
    }


def test_recommend_takes_the_cheapest_within_the_margin():
    rows = [
        row("ref", 50, 1.0, 0.0, 0.0),
        row("same cost", 50, 0.9, 0.0, 0.0),  # as many U-Net rows as the reference: no cheaper
        row("fast", 8, 0.1, -0.05, -0.09),
        row("middle", 12, 0.2, -0.002, -0.005),
        row("slow", 30, 0.6, 0.0, -0.002),
    ]
    assert recommend(rows, "ref", margin=0.01, target_seconds=0.25) == {
        "margin": 0.01,
        "target_seconds": 0.25,
        "cheapest_within_margin": "middle",
        "closest_to_margin": None,
        "meets_target": True,
        "closest_within_target": "middle",
    }


def test_recommend_names_the_closest_when_none_is_within_the_margin():
    rows = [row("ref", 50, 1.0, 0.0, 0.0), row("fast", 8, 0.2, -0.03, -0.07), row("slower", 16, 0.4, 0.01, -0.02)]
    result = recommend(rows, "ref", margin=0.01, target_seconds=0.25)
    assert result["cheapest_within_margin"] is None and result["closest_to_margin"] == "slower"
    assert not result["meets_target"] and result["closest_within_target"] == "fast"
