"""``make next-version``: feedback on the current version's images → export → tuning → paired comparison →
registration in the versions folder, which the app then serves in the arena. Few votes, few steps: plumbing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.generation import GenerationRequest, GenerationService
from app.next_version import MAX_COMPOSITION_FALL, build_parser, next_version, verdict
from app.versions import ModelVersions, lineage, version_folders
from feedback.store import FeedbackStore
from model.pipeline.bundled import DEFAULT_BUNDLE
from model.pipeline.identity import weights_hash


def evaluation(difference: float, low: float, high: float) -> dict:
    return {"difference": {"composition": {"difference": difference, "ci95": [low, high]}}}


def test_the_verdict_refuses_a_fall_beyond_the_tolerance_or_a_significant_one() -> None:
    assert verdict(evaluation(0.03, -0.01, 0.07))[0]
    assert verdict(evaluation(-MAX_COMPOSITION_FALL / 2, -0.04, 0.03))[0]  # within a point, not significant
    registered, reason = verdict(evaluation(-0.02, -0.06, 0.01))
    assert not registered and "more than 1 point" in reason
    registered, reason = verdict(evaluation(-0.005, -0.009, -0.001))
    assert not registered and "significant fall" in reason


def test_too_little_feedback_is_a_clear_refusal(tmp_path: Path) -> None:
    with FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}", tmp_path / "images") as store:
        args = build_parser().parse_args(["--out", str(tmp_path / "round"), "--versions", str(tmp_path / "v")])
        with pytest.raises(ValueError, match="too little feedback on raphael-tiny"):
            next_version(store, args)


@pytest.mark.slow
def test_feedback_becomes_a_registered_version_the_arena_serves(tmp_path: Path) -> None:
    service = GenerationService(DEFAULT_BUNDLE, "cpu")
    with FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}", tmp_path / "images") as store:
        raters = [store.rater(f"rater-{i}") for i in range(2)]
        for seed, prompt in enumerate(["a cat on a blue background", "two apples on the left", "a frog"]):
            result = service.run(GenerationRequest(prompt=prompt, steps=3, cfg=2.0, seed=seed, num_images=2))
            record = store.record_generation(raters[0], result.provenance, result.images)
            # A taste for brighter images: both raters prefer the brighter of the two.
            bright = [float(np.asarray(image).mean()) for image in result.images]
            outcome = "left" if bright[0] >= bright[1] else "right"
            for rater in raters:
                store.compare(rater, *record.image_ids, outcome)

        versions = tmp_path / "versions"
        args = build_parser().parse_args(
            ["--out", str(tmp_path / "round-1"), "--versions", str(versions), "--steps", "2"]
            + ["--eval-n", "8", "--eval-steps", "2", "--tune-args", "--batch-size", "2", "--warmup", "1"]
        )
        decision = next_version(store, args)

    assert decision.export["format"] == "pickapic" and decision.export["rows"] >= 3
    evaluation = decision.evaluation
    assert evaluation["prompts"] == 8 and set(evaluation["accuracy"]) == {"candidate", "current"}
    assert decision.registered == verdict(evaluation)[0]
    round_dir = tmp_path / "round-1"
    assert json.loads((round_dir / "decision.json").read_text())["reason"] == decision.reason
    assert (round_dir / "evaluation" / "samples_candidate.png").is_file()
    if decision.registered:
        registered = Path(decision.version)
        assert registered.parent == versions and (registered / "evaluation.json").is_file()
        record = lineage(registered)
        assert record["base"]["weights_hash"] == weights_hash(DEFAULT_BUNDLE)
        assert record["tuning"]["loss"] == "dpo" and record["tuning"]["steps"] == 2
        assert version_folders([DEFAULT_BUNDLE], versions) == [DEFAULT_BUNDLE, registered]
        served = ModelVersions.load([DEFAULT_BUNDLE, registered], "cpu", primary=service)
        assert len(served.labels) == 2  # the arena picks it up on the next start
    else:
        assert decision.version is None and not versions.exists()
