"""Inter-rater agreement: α against a published value, comparison orientation, flagged raters, the CLI."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feedback.agreement import RATER_COLUMNS, agreement, comparison_ratings, krippendorff_alpha, main
from feedback.export import ExportFilters, export
from feedback.store import FeedbackStore, PreferenceRows
from tests.test_store import COLOURS, provenance, solid

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the example with missing
# values: 4 observers, 12 units (None = not rated); nominal α = 0.743.
PUBLISHED = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def by_unit(matrix: list[list[int | None]]) -> dict[int, dict[int, int]]:
    """Observer × unit rows → {unit: {observer: value}}."""
    return {
        unit: {observer: row[unit] for observer, row in enumerate(matrix) if row[unit] is not None}
        for unit in range(len(matrix[0]))
    }


def test_alpha_matches_the_published_example() -> None:
    result = krippendorff_alpha(by_unit(PUBLISHED))
    assert result.alpha == pytest.approx(0.743, abs=5e-4)
    assert (result.items, result.ratings, result.raters) == (11, 40, 4)  # unit 12 has one value: not pairable
    assert result.low < result.alpha < result.high <= 1


def test_alpha_extremes() -> None:
    assert krippendorff_alpha({i: {0: i % 2, 1: i % 2} for i in range(10)}).alpha == 1.0
    # Two raters who always disagree on 10 binary items: 1 - (n - 1) · 20 / (20² - 2 · 10²) = -0.9.
    assert krippendorff_alpha({i: {0: i % 2, 1: 1 - i % 2} for i in range(10)}).alpha == pytest.approx(-0.9)
    assert math.isnan(krippendorff_alpha({i: {0: 1, 1: 1} for i in range(5)}).alpha)  # one category only
    nothing = krippendorff_alpha({i: {0: 1} for i in range(5)})
    assert math.isnan(nothing.alpha) and nothing.items == 0


def alpha_by_definition(matrix: list[list[int | None]]) -> float:
    """Nominal α = 1 - D_o / D_e straight from pairs of values (Krippendorff 2011), to check the package against."""
    units = [[value for value in unit if value is not None] for unit in zip(*matrix)]
    units = [unit for unit in units if len(unit) >= 2]
    values = [value for unit in units for value in unit]
    n = len(values)

    def disagreements(pool: list[int]) -> int:
        return sum(a != b for i, a in enumerate(pool) for j, b in enumerate(pool) if i != j)

    observed = sum(disagreements(unit) / (len(unit) - 1) for unit in units) / n
    expected = disagreements(values) / (n * (n - 1))
    return 1 - observed / expected


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("labels", [(0, 1, 2), ("first", "second", "tie")])
def test_alpha_matches_its_definition_on_random_ratings(seed: int, labels: tuple[object, ...]) -> None:
    rng = np.random.default_rng(seed)
    matrix = [[int(v) if rng.random() < 0.6 else None for v in rng.integers(3, size=20)] for _ in range(5)]
    ratings = {unit: {rater: labels[v] for rater, v in values.items()} for unit, values in by_unit(matrix).items()}
    assert alpha_by_definition(PUBLISHED) == pytest.approx(0.743, abs=5e-4)  # the check itself is right
    assert krippendorff_alpha(ratings, n_boot=0).alpha == pytest.approx(alpha_by_definition(matrix), abs=1e-12)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeedbackStore]:
    with FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "images") as store:
        yield store


def test_comparisons_agree_across_sides(store: FeedbackStore) -> None:
    """Left on (A, B) and right on (B, A) name the same winner."""
    first, second = store.rater("a"), store.rater("b")
    a, b = store.record_generation(first, provenance(), [solid("red"), solid("blue")]).image_ids
    store.compare(first, a, b, "left")
    store.compare(second, b, a, "right")
    store.compare(second, a, b, "tie")  # a rater's latest judgement of a pair replaces the earlier one
    rows = store.preference_rows(with_images=False)
    ratings = comparison_ratings(rows)
    pair = tuple(sorted((rows.items[a], rows.items[b])))  # the items the images show
    assert ratings == {pair: {first: "first" if rows.items[a] == pair[0] else "second", second: "tie"}}


def consistent_store(store: FeedbackStore) -> tuple[list[int], int]:
    """Three raters who agree on 8 images but one, and a fourth who contradicts them on every image."""
    raters = [store.rater(f"rater-{i}") for i in range(4)]
    images = store.record_generation(raters[0], provenance(), [solid(c) for c in COLOURS]).image_ids
    for index, image in enumerate(images):
        truth = 1 if index % 2 else -1
        for rater in raters[:3]:
            store.vote(rater, image, -truth if (rater, index) == (raters[2], 0) else truth)
        store.vote(raters[3], image, -truth)
    return raters, raters[3]


def test_report_flags_the_rater_who_disagrees(store: FeedbackStore) -> None:
    raters, contrarian = consistent_store(store)
    report = agreement(store.preference_rows(with_images=False), min_shared=5)
    assert report.votes.items == 8 and report.votes.raters == 4
    assert -1 < report.votes.alpha < 0.5  # one rater in four always against the rest
    table = report.raters.set_index("rater_id")
    assert table.loc[contrarian, "flagged"] and not table.loc[raters[:3], "flagged"].any()
    assert table.loc[contrarian, "vote_agreement"] < 0.05 < 0.6 < table.loc[raters[0], "vote_agreement"]
    assert table.loc[raters[0], "chance"] == pytest.approx((17 / 32) ** 2 + (15 / 32) ** 2)  # 17 👍, 15 👎 in all
    assert report.comparisons.items == 0 and math.isnan(report.comparisons.alpha)
    assert (table["shared_pairs"] == 0).all() and table["pair_agreement"].isna().all()

    without = agreement(store.preference_rows(with_images=False), min_shared=9)  # too few shared items to judge
    assert not without.raters["flagged"].any()


def test_cli_prints_json(store: FeedbackStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, contrarian = consistent_store(store)
    assert main(["--db", store.url, "--image-dir", str(tmp_path / "images")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["votes"]["items"] == 8 and report["comparisons"]["alpha"] is None
    assert [row["rater_id"] for row in report["raters"] if row["flagged"]] == [contrarian]

    with pytest.raises(SystemExit) as exit_info:
        main(["--db", f"sqlite:///{tmp_path / 'missing.db'}"])
    assert exit_info.value.code == 2


def test_export_can_leave_out_flagged_raters(store: FeedbackStore, tmp_path: Path) -> None:
    raters, contrarian = consistent_store(store)
    kept = export(store, "kto", tmp_path / "all", "parquet")
    cleaned = export(store, "kto", tmp_path / "clean", "parquet", ExportFilters(exclude_flagged=True))
    assert (kept.rows, cleaned.rows) == (32, 24)
    users = pd.read_parquet(tmp_path / "clean" / "train.parquet")["user_id"]
    assert contrarian not in set(users) and set(users) == set(raters[:3])
    assert cleaned.counts["flagged_raters_left_out"] == 1 and cleaned.counts["votes_of_flagged_raters"] == 8
    card = (tmp_path / "clean" / "README.md").read_text()
    assert "raters flagged by `feedback.agreement`: left out" in card and "flagged_raters_left_out: 1" in card


def test_no_feedback_yet() -> None:
    report = agreement(PreferenceRows(votes=[], comparisons=[], events=[], images={}, items={}))
    nothing = {"alpha": None, "low": None, "high": None, "items": 0, "ratings": 0, "raters": 0}
    assert report.to_dict()["votes"] == report.to_dict()["comparisons"] == nothing
    assert report.raters.empty and list(report.raters.columns) == RATER_COLUMNS


def test_raters_who_generate_the_same_image_share_one_item(store: FeedbackStore) -> None:
    """Each browser gets its own image ids; the same bytes for the same text are still one item to agree on."""
    raters = [store.rater(f"rater-{i}", None) for i in range(3)]
    copies = [
        store.record_generation(rater, provenance(), [solid("red"), solid("blue")]).image_ids for rater in raters
    ]
    other_text = store.record_generation(
        raters[0], provenance(enhanced_prompt="an apple, in pixel art"), [solid("red")]
    )
    for rater, (red, blue) in zip(raters, copies):
        store.vote(rater, red, 1)
        store.vote(rater, blue, -1 if rater != raters[2] else 1)
    store.vote(raters[1], other_text.image_ids[0], -1)  # same bytes, another text: a different item

    rows = store.preference_rows(with_images=False, with_events=False)
    assert len({rows.items[copy[0]] for copy in copies}) == 1
    assert rows.items[other_text.image_ids[0]] != rows.items[copies[0][0]]
    report = agreement(rows, n_boot=0)
    assert (report.votes.items, report.votes.raters, report.votes.ratings) == (2, 3, 6)
