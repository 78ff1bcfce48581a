"""``make loop``: simulated raters with a hidden taste use the real app; their feedback tunes the next version,
which new raters judge against the base in the arena.

The fast tests pin the tastes and the raters' noise; the slow one runs a tiny loop through the real server and the
bundled model (few prompts, votes and steps) to check the plumbing, not the result.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.handlers import display_copy
from app.loop import LoopConfig, battle_summary, domain_prompts, main, run_loop, win_rate
from app.simulated_raters import (
    SIZE_TIE_RATIO,
    Battle,
    Correctness,
    Judge,
    LargerEmoji,
    accuracies,
    emoji_area,
    load_rgb,
    native,
)
from feedback.models import COMPARISON_OUTCOMES
from feedback.store import FeedbackStore
from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.evaluation.evaluate import prompt_kind
from model.pipeline.bundled import DEFAULT_BUNDLE

SLICE = SceneConfig(num_emoji=30, max_objects=2, max_count=2, styles=("flat",))  # the bundled model's


def square(side: int, size: int = 32) -> np.ndarray:
    """A grey image with a ``side`` px red square in it."""
    image = np.full((size, size, 3), 128, np.uint8)
    image[4 : 4 + side, 6 : 6 + side] = (214, 48, 49)
    return image


# -- tastes ---------------------------------------------------------------------------------------------------------


def test_emoji_area_is_the_share_that_is_not_backdrop() -> None:
    assert emoji_area(np.full((32, 32, 3), 200, np.uint8)) == 0.0
    assert emoji_area(square(8)) == pytest.approx(64 / 1024)
    assert emoji_area(square(12)) > emoji_area(square(8))
    image, _, scene = EmojiScenes(SLICE, seed=3).sample(0)
    boxes = sum((x1 - x0) * (y1 - y0) for obj in scene.objects for x0, y0, x1, y1 in obj.boxes)
    assert 0 < emoji_area(image) <= boxes / (scene.height * scene.width)  # sprites have transparent corners


def test_a_served_arena_image_reads_back_at_the_models_size(tmp_path: Path) -> None:
    original = square(8)[:, :28]  # not square: the enlargement must keep the aspect
    Image.fromarray(original).save(tmp_path / "stored.png")
    display_copy(tmp_path / "stored.png", None).save(tmp_path / "served.png")
    served = load_rgb(tmp_path / "served.png")
    assert served.shape[0] > original.shape[0]
    np.testing.assert_array_equal(native(served, 32, 28), original)
    assert emoji_area(served) == pytest.approx(emoji_area(original))
    with pytest.raises(ValueError, match="no enlargement of 30x32"):
        native(served, 32, 30)


def test_larger_emoji_likes_the_upper_half_of_a_page_and_ties_what_looks_alike() -> None:
    taste = LargerEmoji()
    assert taste.likes([0.1, 0.4, 0.2, 0.3]) == [False, True, False, True]
    assert taste.outcome(0.2, 0.1) == "left" and taste.outcome(0.1, 0.2) == "right"
    assert taste.outcome(0.2, 0.2 * SIZE_TIE_RATIO + 1e-9) == "tie"
    assert taste.fits("two cats on a red background") and not taste.fits("two LARGE cats on red")
    assert not taste.fits("a tiny frog on the left")


def test_correctness_asks_the_recognizer_about_the_prompts_scene() -> None:
    taste = Correctness()
    images, _, scenes = EmojiScenes(SLICE, seed=5).batch(0, 2, bucket="1:1")
    right, wrong = taste.score(list(images), scenes[0])
    assert right == 1.0 and wrong < 1.0  # the real render of its scene, and another scene's render
    assert taste.likes([right, wrong]) == [True, False]
    assert taste.outcome(1.0, 1.0) == "tie" and taste.outcome(0.5, 0.5) == "both_bad"
    assert taste.outcome(0.75, 1.0) == "right" and taste.outcome(0.5, 0.25) == "left"


# -- noise ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("accuracy", [0.8, 0.85, 0.9])
def test_a_noisy_rater_agrees_with_the_taste_at_its_rate(accuracy: float) -> None:
    taste, scores = LargerEmoji(), random.Random(1)
    judge = Judge(taste, accuracy, random.Random(2))
    pairs = [(scores.random(), scores.random()) for _ in range(1000)]
    agree = np.mean([judge.pair(a, b) == taste.outcome(a, b) for a, b in pairs])
    assert agree == pytest.approx(accuracy, abs=0.03)
    pages = [[scores.random() for _ in range(4)] for _ in range(250)]  # 1000 votes
    votes = [(v == 1) == liked for page in pages for v, liked in zip(judge.votes(page), taste.likes(page))]
    assert np.mean(votes) == pytest.approx(accuracy, abs=0.03)


def test_a_random_clicker_agrees_only_by_chance() -> None:
    taste, scores = LargerEmoji(), random.Random(3)
    judge = Judge(taste, None, random.Random(4))
    pairs = [(scores.random(), scores.random()) for _ in range(1000)]
    answers = [judge.pair(a, b) for a, b in pairs]
    assert set(answers) == set(COMPARISON_OUTCOMES)
    assert np.mean([x == taste.outcome(a, b) for x, (a, b) in zip(answers, pairs)]) == pytest.approx(0.25, abs=0.04)
    votes = judge.votes([scores.random() for _ in range(1000)])
    assert np.mean(np.array(votes) == 1) == pytest.approx(0.5, abs=0.05)


def test_a_panel_spreads_over_eighty_to_ninety_percent() -> None:
    rates = accuracies(4)
    assert rates == sorted(rates) and 0.8 < rates[0] < rates[-1] < 0.9 and np.mean(rates) == pytest.approx(0.85)
    assert accuracies(1) == [pytest.approx(0.85)]


# -- the report -----------------------------------------------------------------------------------------------------


def test_the_arena_counts_tuned_wins_from_either_side() -> None:
    battles = [
        Battle(1, "p", "left", "tuned@1", "base@2", 0.3, 0.1),  # tuned left, wins
        Battle(2, "p", "left", "base@2", "tuned@1", 0.3, 0.1),  # tuned right, loses (the taste agrees)
        Battle(3, "p", "right", "base@2", "tuned@1", 0.1, 0.3),  # tuned right, wins
        Battle(4, "p", "tie", "tuned@1", "base@2", 0.2, 0.2),
    ]
    summary = battle_summary(battles, "tuned@1", LargerEmoji())
    assert summary["outcomes"] == {"tuned": 2, "base": 1, "tie": 1, "both_bad": 0}
    assert summary["win_rate"]["rate"] == pytest.approx(2 / 3) and summary["win_rate"]["decided"] == 3
    low, high = summary["win_rate"]["ci95"]
    assert 0 < low < 2 / 3 < high < 1
    assert summary["taste_win_rate"]["rate"] == pytest.approx(2 / 3)
    taste = summary["taste"]
    assert taste["tuned"]["mean"] == pytest.approx(0.225) and taste["base"]["mean"] == pytest.approx(0.175)
    assert taste["difference"]["mean"] == pytest.approx(0.05)
    assert win_rate(0, 0) == {"rate": None, "ci95": None, "decided": 0}


def test_prompts_come_with_their_scenes_and_suit_the_taste() -> None:
    prompts = domain_prompts(SLICE, "train", 20, seed=0, taste=LargerEmoji())
    assert len(prompts) == 20 and all(LargerEmoji().fits(caption) for caption, _ in prompts)
    assert prompts == domain_prompts(SLICE, "train", 20, seed=0, taste=LargerEmoji())
    assert all(1 <= len(scene.objects) <= 2 for _, scene in prompts)


def test_prompts_can_be_limited_to_the_kinds_the_model_gets_wrong() -> None:
    prompts = domain_prompts(SLICE, "train", 12, seed=0, taste=Correctness(), kinds=["2 emoji ×2"])
    assert len(prompts) == 12 and {prompt_kind(scene) for _, scene in prompts} == {"2 emoji ×2"}
    with pytest.raises(ValueError, match="^Only 0 of 240 train prompts of kind 3 emoji ×1 suit the correctness"):
        domain_prompts(SLICE, "train", 12, seed=0, taste=Correctness(), kinds=["3 emoji ×1"])  # the slice has 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--kind", "two cats"], '--kind takes the form "2 emoji ×2"'),
        (["--raters", "1"], "--raters must be at least 2"),
        (["--images", "1"], "--images must be from 2 to 8"),
        (["--rounds", "0"], "--rounds must be at least 1"),
    ],
)
def test_bad_settings_are_one_sentence_errors(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--taste", "size", "--out", str(tmp_path / "run"), *flags])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error and not (tmp_path / "run").exists()


def test_a_used_out_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "loop.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(["--taste", "size", "--out", str(tmp_path)])
    assert "is not empty; choose a new --out folder" in capsys.readouterr().err


# -- the loop, small ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_small_loop_runs_through_the_real_app(tmp_path: Path) -> None:
    out = tmp_path / "loop"
    config = LoopConfig(
        taste="size",
        out=out,
        rounds=1,
        prompts=3,
        raters=2,
        random_raters=1,
        images=4,
        steps=2,
        tune_steps=2,
        eval_n=8,
        eval_steps=2,
        arena_battles=4,
        model=DEFAULT_BUNDLE,
        threads=1,
        tune_args=("--batch-size", "2", "--warmup", "1"),
    )
    report = run_loop(config)
    assert json.loads((out / "loop.json").read_text()) == json.loads(json.dumps(report))
    assert set(report) == {"taste", "settings", "raters", "rounds", "arena", "totals"}
    (round_1,) = report["rounds"]
    assert set(round_1) == {
        "round", "version", "folder", "pages", "images", "cast", "taste", "raters", "judgements_used",
        "judgements_left_out", "next_version", "cpu_seconds", "wall_seconds",
    }  # fmt: skip
    assert round_1["cast"] == {"generations": 3, "votes": 3 * 4 * 3, "comparisons": 3 * 6 * 3}
    arena = report["arena"]
    battles = arena["battles"]

    # Every judgement reached the store through the API, from the raters the loop names.
    with FeedbackStore(f"sqlite:///{out / 'feedback.db'}", out / "images") as store:
        rows = store.preference_rows(with_images=False, with_events=False)
        judged = store.arena_battles()
    assert len(rows.votes) == round_1["cast"]["votes"]
    assert len(rows.comparisons) == round_1["cast"]["comparisons"] + battles  # an arena vote is a comparison too
    assert {v.rater_id for v in rows.votes} == {r["rater_id"] for r in round_1["raters"]}
    assert len(judged) == battles == 4

    # The random clicker agrees least with the others; the export kept only the unflagged raters' judgements.
    lowest = min(round_1["raters"], key=lambda r: r["agreement"])
    assert lowest["name"] == "rater-random-1" and lowest["accuracy"] is None
    cast = round_1["cast"]["votes"] + round_1["cast"]["comparisons"]
    assert round_1["judgements_used"] + round_1["judgements_left_out"] == cast

    # next-version ran and decided.
    decision = round_1["next_version"]
    assert isinstance(decision["registered"], bool) and decision["reason"]
    assert decision["export"]["format"] == "pickapic" and decision["evaluation"]["prompts"] == 8
    flagged = sum(r["flagged"] for r in round_1["raters"])
    assert decision["export"]["counts"]["flagged_raters_left_out"] == flagged
    assert json.loads((out / "round-1" / "next-version" / "decision.json").read_text())["reason"] == decision["reason"]
    assert Path(decision["version"]).is_dir() if decision["registered"] else decision["version"] is None

    # The arena judged base against tuned on held-out prompts, and the report holds every number.
    assert arena["tuned_registered"] == decision["registered"] and arena["tuned"] != arena["base"]
    assert sum(arena["outcomes"].values()) == battles and arena["prompts"] == "held-out"
    assert set(arena["taste"]) == {"base", "tuned", "difference"} and len(arena["leaderboard"]) == 2
    assert {"rate", "ci95", "decided"} <= set(arena["win_rate"])
    totals = report["totals"]
    assert totals["judgements_cast"] == 90 and totals["arena_battles"] == 4 and totals["cpu_seconds"] > 0
    assert round_1["cpu_seconds"]["server"] > 0 and arena["cpu_seconds"]["server"] > 0
    assert (out / "curve.png").stat().st_size > 0
