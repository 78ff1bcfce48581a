import json
from pathlib import Path

import pytest
from PIL import Image

from model.evaluate import paired_difference
from model.learning_curve import load_points, main, wilson


def results_folder(
    root: Path, steps: int, ours: list[bool], dense: list[bool], dense_steps: int | None = None
) -> Path:
    """A ``model.evaluate --baseline`` output folder with the fields the curve reads."""
    folder = root / f"vs-dense-{steps}"
    folder.mkdir()

    def model(hits: list[bool], at: int) -> dict:
        accuracy = sum(hits) / len(hits)
        return {
            "n": len(hits),
            "accuracy": {"identity": accuracy, "composition": accuracy},
            "per_prompt": {"identity": hits, "composition": hits},
            "training": {"steps": at, "images_seen": 64 * at, "step_time_hours": at / 1000},
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
    assert [p["models"]["RAPHAEL-tiny"]["steps"] for p in points] == [1700, 5550]
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
