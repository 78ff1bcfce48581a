"""Streamed exports: written in many small chunks they equal the export written in one, on both backends.

The scenario of ``tests/test_export.py`` gets one more rater, whose repeated comparison of two images comes from a
database older than the store's one-row-per-pair rule: only the latest counts, in the place of the first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from sqlalchemy import insert

from feedback.export import FEATURES, ExportFilters, export
from feedback.models import Comparison
from feedback.store import FeedbackStore
from tests.test_export import Scenario, build_scenario

COMBINATIONS = [
    ("pickapic", "parquet"),
    ("pickapic", "datasets"),
    ("kto", "parquet"),
    ("kto", "jsonl"),
    ("kto", "datasets"),
    ("jsonl", "parquet"),
    ("jsonl", "jsonl"),
    ("jsonl", "datasets"),
]


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    with build_scenario(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "images") as built:
        yield built


def add_legacy_repeats(scenario: Scenario) -> int:
    """dee compared red and green three times (rows the store no longer makes); returns dee's rater id."""
    dee = scenario.store.rater("dee")
    red, green = scenario.ids["red"], scenario.ids["green"]
    rows = [(red, green, "left"), (green, red, "tie"), (green, red, "left")]  # latest: green wins
    with scenario.store._engine.begin() as connection:
        for left, right, outcome in rows:
            values = {"rater_id": dee, "left_image_id": left, "right_image_id": right, "outcome": outcome}
            connection.execute(insert(Comparison).values(**values))
    return dee


def contents(out: Path, output: str) -> object:
    """What an export holds, as comparable values (row order included)."""
    if output == "parquet":
        table = pq.read_table(out / "train.parquet")
        return table.schema, table.to_pylist()
    if output == "datasets":
        dataset = datasets.load_from_disk(str(out))
        return dataset.features, dataset.data.table.to_pylist()
    return {path.name: path.read_bytes() for path in sorted(out.iterdir()) if path.name != "README.md"}


def card(out: Path) -> list[str]:
    return [line for line in (out / "README.md").read_text().splitlines() if not line.startswith("Exported ")]


@pytest.mark.parametrize(("fmt", "output"), COMBINATIONS)
def test_many_chunks_equal_one(db_url: str, tmp_path: Path, fmt: str, output: str) -> None:
    with build_scenario(db_url, tmp_path / "images") as scenario:
        add_legacy_repeats(scenario)
        one = export(scenario.store, fmt, tmp_path / "one", output, chunk_size=10_000)
        many = export(scenario.store, fmt, tmp_path / "many", output, chunk_size=1)
    assert one.rows == many.rows > 0 and one.counts == many.counts
    assert contents(tmp_path / "one", output) == contents(tmp_path / "many", output)
    assert card(tmp_path / "one") == card(tmp_path / "many")
    if output == "parquet":  # one row group per chunk
        assert pq.ParquetFile(tmp_path / "many" / "train.parquet").num_row_groups == many.rows
        assert pq.ParquetFile(tmp_path / "one" / "train.parquet").num_row_groups == 1
    assert not [path for path in (tmp_path / "many").iterdir() if path.name.startswith(".")]  # no staging left


def test_a_repeated_comparison_counts_once_latest_first(tmp_path: Path) -> None:
    with build_scenario(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "images") as scenario:
        dee = add_legacy_repeats(scenario)
        result = export(scenario.store, "pickapic", tmp_path / "out", "parquet", chunk_size=2)
    rows = pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()
    (dees,) = [row for row in rows if row["user_id"] == dee]
    red, green = scenario.ids["red"], scenario.ids["green"]
    assert (dees["image_0_uid"], dees["image_1_uid"], dees["label_0"], dees["best_image_uid"]) == (
        green,
        red,
        1.0,
        green,
    )
    assert [row["source"] for row in rows].index("votes") == 3  # dee's row is the third comparison row, then votes
    assert result.counts["comparisons_replaced_by_later"] == 2 and result.counts["pairs_from_comparisons"] == 3


def test_exports_stream_without_loading_everything(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only --exclude-flagged and --campaign read all judgements at once (ids, for the agreement); no image does."""

    def refused(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the export read every row into memory")

    monkeypatch.setattr(FeedbackStore, "preference_rows", refused)
    for fmt, output in COMBINATIONS:
        assert export(scenario.store, fmt, tmp_path / f"{fmt}-{output}", output, chunk_size=3).rows > 0
    with pytest.raises(AssertionError, match="every row"):
        export(scenario.store, "kto", tmp_path / "flagged", "parquet", ExportFilters(exclude_flagged=True))


def test_an_empty_export_streams_too(scenario: Scenario, tmp_path: Path) -> None:
    future = ExportFilters(model="no-such-model")
    for fmt, output in COMBINATIONS:
        out = tmp_path / f"{fmt}-{output}"
        assert export(scenario.store, fmt, out, output, future, chunk_size=1).rows == 0
        if output == "datasets":  # datasets writes no shard for no rows and cannot load that; the card says so
            features = json.loads((out / "dataset_info.json").read_text())["features"]
            assert list(features) == list(FEATURES[fmt])
        elif output == "parquet":
            assert pq.read_table(out / "train.parquet").num_rows == 0
        else:
            (data,) = [path for path in out.iterdir() if path.suffix == ".jsonl"]
            assert data.read_text() == ""
