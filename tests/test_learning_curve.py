import json
from pathlib import Path

import pytest
from PIL import Image

from model.evaluation.evaluate import paired_difference
from model.evaluation.learning_curve import load_points, main, wilson


def results_folder(
    root: Path,
    steps: int,
    ours: list[bool],
    dense: list[bool],
    dense_steps: int | None = None,
    stage_before: int | None = None,
) -> Path:
    """A ``model.evaluation.evaluate --baseline`` output folder with the fields the curve reads."""
    folder = root / f"vs-dense-{stage_before}-{steps}"
    folder.mkdir()

    def record(at: int) -> dict:
        return {"steps": at, "images_seen": 64 * at, "step_time_hours": at / 1000}

    def model(hits: list[bool], at: int) -> dict:
        accuracy = sum(hits) / len(hits)
        training = record(at) | ({"continued_from": record(stage_before)} if stage_before else {})
        return {
            "n": len(hits),
            "accuracy": {"identity": accuracy, "composition": accuracy},
            "per_prompt": {"identity": hits, "composition": hits},
            "training": training,
        }

    results = {
        "models": {"RAPHAEL-tiny": model(ours, steps), "dense baseline": model(dense, dense_steps or steps)},
        "comparison": {m: paired_difference(ours, dense) for m in ("identity", "composition")},
    }
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_wilson_matches_published_values() -> None:
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson(128, 128)
    assert high == pytest.approx(1.0) and 0.97 < low < 1.0


def test_curve_is_ordered_by_training_images_and_written(tmp_path: Path) -> None:
    late = results_folder(tmp_path, 5550, [True] * 9 + [False], [True] * 6 + [False] * 4)
    early = results_folder(tmp_path, 1700, [True] + [False] * 9, [False] * 10)
    main([str(late), str(early), "--out", str(tmp_path / "curve")])

    points = json.loads((tmp_path / "curve" / "learning_curve.json").read_text())
    assert [p["models"]["RAPHAEL-tiny"]["steps"] for p in points] == [[1700], [5550]]
    assert points[1]["composition"]["difference"] == pytest.approx(0.3)
    table = (tmp_path / "curve" / "learning_curve.md").read_text().splitlines()
    assert table[2].startswith("| 1,700 | 108,800 | 10 | 10.0% | 0.0% | +10.0")
    assert table[3].startswith("| 5,550 | 355,200 | 10 | 90.0% | 60.0% | +30.0")
    with Image.open(tmp_path / "curve" / "learning_curve.png") as png:
        assert png.width > 600 and png.height > 200


def test_checkpoints_of_different_steps_are_refused(tmp_path: Path) -> None:
    uneven = results_folder(tmp_path, 3400, [True], [False], dense_steps=1700)
    with pytest.raises(ValueError, match="different steps"):
        load_points([uneven])
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "results.json").write_text(json.dumps({"models": {}}))
    with pytest.raises(ValueError, match="--baseline"):
        load_points([tmp_path / "alone"])


def test_a_later_stage_counts_the_images_of_the_stages_before(tmp_path: Path) -> None:
    stage_2 = results_folder(tmp_path, 1221, [True, False], [False, False], stage_before=5550)
    stage_1 = results_folder(tmp_path, 5550, [False, False], [False, False])
    points = load_points([stage_2, stage_1])
    ours = points[1]["models"]["RAPHAEL-tiny"]
    assert ours["steps"] == [5550, 1221] and ours["images_seen"] == 64 * (5550 + 1221)
    assert ours["step_time_hours"] == pytest.approx(6.771)
    main([str(stage_2), str(stage_1), "--out", str(tmp_path / "curve")])
    table = (tmp_path / "curve" / "learning_curve.md").read_text().splitlines()
    assert table[3].startswith("| 5,550 + 1,221 | 433,344 | 2 | 50.0% | 0.0% | +50.0")


def test_models_named_at_evaluation_are_read_in_order(tmp_path: Path) -> None:
    """``evaluate --name/--baseline-name`` labels a stage; the curve still takes first minus second."""
    folder = results_folder(tmp_path, 2600, [True, True], [True, False])
    results = json.loads((folder / "results.json").read_text())
    ours, dense = results["models"].values()
    results["models"] = {"RAPHAEL-tiny (stage 5)": ours, "dense (stage 5)": dense}
    (folder / "results.json").write_text(json.dumps(results))
    (point,) = load_points([folder])
    assert point["models"]["RAPHAEL-tiny"]["composition"] == 1.0
    assert point["models"]["dense baseline"]["composition"] == 0.5
    assert point["n"] == 2
