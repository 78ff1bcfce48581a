"""Exports, loaded back with 🤗 datasets and checked row for row against what was recorded.

The scenario covers each pairing rule: per-rater 👍/👎 pairs of one prompt, explicit comparisons
(left/right/tie), both_bad and cross-prompt comparisons (skipped), a repeated comparison (latest
wins), a vote pair superseded by a comparison, a lone 👍 (no pair) and a vote taken back; a second
store holds images of two aspects, whose pairs across sizes are skipped.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageColor

from feedback.export import ExportFilters, export, main
from feedback.store import FeedbackStore
from tests.test_store import provenance, solid

APPLE, CAT = "a red apple", "a cat"
TINY_HASH, SMALL_HASH = "a" * 64, "c" * 64


@dataclass
class Scenario:
    store: FeedbackStore
    url: str
    image_dir: Path
    ids: dict[str, str]  # colour -> image id
    raters: dict[str, int]

    def colour(self, image_id: str) -> str:
        return next(colour for colour, i in self.ids.items() if i == image_id)


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    with build_scenario(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "images") as built:
        yield built


@contextmanager
def build_scenario(url: str, image_dir: Path) -> Iterator[Scenario]:
    with FeedbackStore(url, image_dir) as store:
        raters = {name: store.rater(name) for name in ("ann", "bob", "cy")}
        ids: dict[str, str] = {}
        for prompt, model, colours in [
            (APPLE, {"model_name": "raphael-tiny", "model_hash": TINY_HASH}, ["red", "green", "blue", "yellow"]),
            (APPLE, {"model_name": "raphael-small", "model_hash": SMALL_HASH}, ["purple", "orange"]),
            (CAT, {"model_name": "raphael-tiny", "model_hash": TINY_HASH}, ["white", "black"]),
        ]:
            record = store.record_generation(
                raters["ann"], provenance(prompt=prompt, **model), [solid(c) for c in colours]
            )
            ids.update(zip(colours, record.image_ids, strict=True))
        ann, bob, cy = raters["ann"], raters["bob"], raters["cy"]
        for rater, colour, value in [
            (ann, "red", 1), (ann, "green", -1), (ann, "blue", -1), (ann, "purple", 1),
            (bob, "red", -1), (bob, "green", 1),
            (cy, "white", 1), (cy, "black", 1), (cy, "black", 0),
        ]:  # fmt: skip
            store.vote(rater, ids[colour], value)
        for rater, left, right, outcome in [
            (bob, "red", "purple", "tie"),
            (ann, "red", "green", "both_bad"),  # no row, and it replaces ann's red>green vote pair
            (cy, "white", "red", "left"),  # two prompts: skipped
            (bob, "yellow", "blue", "left"),
            (bob, "blue", "yellow", "left"),  # bob changed his mind: blue wins
        ]:
            store.compare(rater, ids[left], ids[right], outcome)
        yield Scenario(store, url, image_dir, ids, raters)


def expected_pairs(s: Scenario) -> set[tuple[Any, ...]]:
    """(user, caption, image_0, image_1, label_0, label_1, best, source), written out by hand."""
    ann, bob = s.raters["ann"], s.raters["bob"]

    def votes_pair(rater: int, winner: str, loser: str) -> tuple[Any, ...]:
        first, second = sorted((s.ids[winner], s.ids[loser]))
        labels = (1.0, 0.0) if first == s.ids[winner] else (0.0, 1.0)
        return (rater, APPLE, first, second, *labels, s.ids[winner], "votes")

    return {
        (bob, APPLE, s.ids["red"], s.ids["purple"], 0.5, 0.5, "", "comparison"),
        # bob's later judgement of the same two images replaced his first in its row, which keeps its order
        (bob, APPLE, s.ids["yellow"], s.ids["blue"], 0.0, 1.0, s.ids["blue"], "comparison"),
        votes_pair(ann, "red", "blue"),
        votes_pair(ann, "purple", "green"),
        votes_pair(ann, "purple", "blue"),
        votes_pair(bob, "green", "red"),
    }


def pair_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["user_id"],
        row["caption"],
        row["image_0_uid"],
        row["image_1_uid"],
        row["label_0"],
        row["label_1"],
        row["best_image_uid"],
        row["source"],
    )


def assert_colour(image: Image.Image, colour: str, tolerance: int = 6) -> None:
    pixel = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    assert all(abs(a - b) <= tolerance for a, b in zip(pixel, ImageColor.getrgb(colour), strict=True)), (pixel, colour)


def load(out: Path, output: str, cache: Path, builder: str | None = None) -> datasets.Dataset:
    if output == "datasets":
        return datasets.load_from_disk(str(out))
    if builder == "imagefolder":
        return datasets.load_dataset("imagefolder", data_dir=str(out), split="train", cache_dir=str(cache))
    files = str(out / ("train.parquet" if output == "parquet" else "train.jsonl"))
    return datasets.load_dataset(
        "parquet" if output == "parquet" else "json", data_files=files, split="train", cache_dir=str(cache)
    )


@pytest.mark.parametrize("output", ["parquet", "datasets"])
def test_pickapic_export_matches_the_database(scenario: Scenario, tmp_path: Path, output: str) -> None:
    result = export(scenario.store, "pickapic", tmp_path / "out", output)
    rows = load(tmp_path / "out", output, tmp_path / "cache")

    assert rows.column_names[:13] == [
        "caption", "jpg_0", "jpg_1", "label_0", "label_1", "model_0", "model_1", "user_id",
        "are_different", "has_label", "best_image_uid", "image_0_uid", "image_1_uid",
    ]  # fmt: skip
    assert len(rows) == result.rows == 6
    assert {pair_key(row) for row in rows} == expected_pairs(scenario)
    images = scenario.store.preference_rows().images
    for row in rows:
        for side in ("0", "1"):
            with Image.open(io.BytesIO(row[f"jpg_{side}"])) as jpeg:
                assert jpeg.format == "JPEG"
                assert_colour(jpeg, scenario.colour(row[f"image_{side}_uid"]))
            assert row[f"model_{side}"] == images[row[f"image_{side}_uid"]].model
            assert images[row[f"image_{side}_uid"]].caption == row["caption"]
        assert row["label_0"] + row["label_1"] == 1.0
        assert row["are_different"] is True and row["has_label"] is True
    assert {row["model_0"] for row in rows} | {row["model_1"] for row in rows} == {
        "raphael-tiny@" + TINY_HASH[:12],
        "raphael-small@" + SMALL_HASH[:12],
    }
    assert result.counts == {
        "rows": 6,
        "pairs_from_comparisons": 2,
        "pairs_from_votes": 4,
        "ties": 1,
        "both_bad_skipped": 1,
        "cross_prompt_comparisons_skipped": 1,
        "cross_size_comparisons_skipped": 0,
        "cross_size_vote_pairs_skipped": 0,
        "comparisons_replaced_by_later": 0,  # the store keeps one row per rater and pair
        "vote_pairs_superseded_by_comparison": 1,
    }
    card = (tmp_path / "out" / "README.md").read_text()
    assert "per rater" in card and "both_bad" in card and "- ties: 1" in card and "license: other" in card


@pytest.mark.postgres
def test_pickapic_export_from_postgres(fresh_postgres_url: str, tmp_path: Path) -> None:
    with build_scenario(fresh_postgres_url, tmp_path / "images") as scenario:
        result = export(scenario.store, "pickapic", tmp_path / "out", "datasets")
        rows = load(tmp_path / "out", "datasets", tmp_path / "cache")
        assert result.rows == 6 and {pair_key(row) for row in rows} == expected_pairs(scenario)


def expected_kto(s: Scenario) -> set[tuple[Any, ...]]:
    ann, bob, cy = s.raters["ann"], s.raters["bob"], s.raters["cy"]
    return {
        (ann, APPLE, "red", True), (ann, APPLE, "green", False), (ann, APPLE, "blue", False),
        (ann, APPLE, "purple", True), (bob, APPLE, "red", False), (bob, APPLE, "green", True),
        (cy, CAT, "white", True),
    }  # fmt: skip


@pytest.mark.parametrize("output", ["jsonl", "parquet", "datasets"])
def test_kto_export_matches_the_database(scenario: Scenario, tmp_path: Path, output: str) -> None:
    out = tmp_path / "out"
    result = export(scenario.store, "kto", out, output)
    rows = load(out, output, tmp_path / "cache", builder="imagefolder" if output == "jsonl" else None)

    assert {"image", "caption", "label"} <= set(rows.column_names)
    assert rows.features["label"] == datasets.Value("bool")
    assert len(rows) == result.rows == 7
    seen = set()
    for row in rows:
        colour = scenario.colour(row["image_uid"])
        assert_colour(row["image"], colour)
        assert row["model"].startswith("raphael-")
        seen.add((row["user_id"], row["caption"], colour, row["label"]))
    assert seen == expected_kto(scenario)
    assert result.counts == {"rows": 7, "likes": 4, "dislikes": 3, "images": 5}
    if output == "jsonl":  # imagefolder: each PNG once, byte for byte the stored original
        metadata = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
        assert {m["file_name"] for m in metadata} == {p.name for p in out.glob("*.png")}
        for m in metadata:
            assert (out / m["file_name"]).read_bytes() == scenario.store.image_path(m["image_uid"]).read_bytes()


@pytest.mark.parametrize("output", ["jsonl", "parquet", "datasets"])
def test_jsonl_log_has_every_event_with_provenance(scenario: Scenario, tmp_path: Path, output: str) -> None:
    result = export(scenario.store, "jsonl", tmp_path / "out", output)
    rows = load(tmp_path / "out", output, tmp_path / "cache")

    assert len(rows) == result.rows == 9
    assert [row["value"] for row in rows if row["user_id"] == scenario.raters["cy"]] == [1, 1, 0]
    assert result.counts == {"rows": 9, "likes": 5, "dislikes": 3, "take_backs": 1}
    for row in rows:
        colour = scenario.colour(row["image_uid"])
        assert row["prompt"] == (CAT if colour in ("white", "black") else APPLE)
        assert (row["seed"], row["steps"], row["cfg"], row["sampler"]) == (1234, 25, 3.0, "ddim")
        assert row["model_hash"] == (SMALL_HASH if colour in ("purple", "orange") else TINY_HASH)
        assert json.loads(row["extra"]) == {}
        assert (scenario.image_dir / row["file"]).exists()
        created = row["created_at"]  # the json loader parses ISO timestamps itself
        created = datetime.fromisoformat(created) if isinstance(created, str) else created
        assert abs(created.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(hours=1)


def test_filters(scenario: Scenario, tmp_path: Path) -> None:
    small = export(scenario.store, "kto", tmp_path / "small", "parquet", ExportFilters(model="raphael-small"))
    assert small.rows == 1  # ann's 👍 on purple
    by_hash = export(scenario.store, "pickapic", tmp_path / "hash", "parquet", ExportFilters(model=TINY_HASH))
    assert by_hash.counts["pairs_from_comparisons"] == 1 and by_hash.counts["pairs_from_votes"] == 2
    future = ExportFilters(since=datetime.now(UTC) + timedelta(days=1))
    empty = export(scenario.store, "pickapic", tmp_path / "future", "parquet", future)
    assert empty.rows == 0  # datasets refuses to load a file without rows; pyarrow reads it
    table = pq.read_table(tmp_path / "future" / "train.parquet")
    assert table.num_rows == 0 and table.schema.names[:3] == ["caption", "jpg_0", "jpg_1"]
    assert "This export is empty" in (tmp_path / "future" / "README.md").read_text()
    # Judgements: red 2 votes + 3 comparisons, green 2 + 1, blue 1 + 1, purple 1 + 1, yellow 0 + 1, white 1 + 1.
    strict = export(scenario.store, "kto", tmp_path / "strict", "datasets", ExportFilters(min_votes=3))
    assert strict.rows == 4  # red ×2, green ×2
    assert "min votes per image: 3" in (tmp_path / "strict" / "README.md").read_text()


def test_cli(scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--db", scenario.url, "--image-dir", str(scenario.image_dir)]
    out = tmp_path / "cli"
    assert main(["--format", "dpo", "--as", "parquet", "--out", str(out), "--model", "raphael-tiny", *common]) == 0
    assert "wrote 3 pickapic rows" in capsys.readouterr().err
    assert "model: raphael-tiny" in (out / "README.md").read_text()

    with pytest.raises(SystemExit) as exit_info:
        main(["--format", "kto", "--out", str(out), *common])  # not empty
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["--format", "kto", "--out", str(tmp_path / "x"), "--db", f"sqlite:///{tmp_path / 'typo.db'}"])
    assert not (tmp_path / "typo.db").exists()
    with pytest.raises(SystemExit):
        main(["--format", "kto", "--out", str(tmp_path / "y"), "--since", "last tuesday", *common])
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "both_bad skipped" in capsys.readouterr().out


def test_pairs_share_a_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """9:16 against 16:9 is no pair: votes pair only images of one size, other comparisons are skipped and counted."""
    url = f"sqlite:///{tmp_path / 'sizes.db'}"
    with FeedbackStore(url, tmp_path / "images") as store:
        ann, bob = store.rater("ann"), store.rater("bob")
        ids: dict[str, str] = {}
        for (width, height), colours in [((16, 28), ["red", "green"]), ((28, 16), ["blue", "yellow"])]:
            images = [Image.new("RGB", (width, height), colour) for colour in colours]
            record = store.record_generation(ann, provenance(prompt=APPLE, width=width, height=height), images)
            ids.update(zip(colours, record.image_ids, strict=True))
        for colour, value in [("red", 1), ("green", -1), ("blue", -1), ("yellow", 1)]:
            store.vote(ann, ids[colour], value)
        store.compare(bob, ids["red"], ids["yellow"], "left")  # portrait against landscape: skipped

        result = export(store, "pickapic", tmp_path / "out", "parquet")
    rows = pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()
    assert {frozenset((row["image_0_uid"], row["image_1_uid"])) for row in rows} == {
        frozenset((ids["red"], ids["green"])),
        frozenset((ids["yellow"], ids["blue"])),
    }
    for row in rows:
        with Image.open(io.BytesIO(row["jpg_0"])) as first, Image.open(io.BytesIO(row["jpg_1"])) as second:
            assert first.size == second.size
    counts = result.counts
    assert (counts["rows"], counts["pairs_from_votes"], counts["pairs_from_comparisons"]) == (2, 2, 0)
    assert (counts["cross_size_vote_pairs_skipped"], counts["cross_size_comparisons_skipped"]) == (2, 1)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "- cross_size_vote_pairs_skipped: 2" in card and "- cross_size_comparisons_skipped: 1" in card

    assert (
        main(["--format", "dpo", "--out", str(tmp_path / "cli"), "--db", url, "--image-dir", str(tmp_path / "images")])
        == 0
    )
    assert "cross_size_comparisons_skipped: 1, cross_size_vote_pairs_skipped: 2" in capsys.readouterr().err


def test_pickapic_jsonl_is_refused(scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Diffusion-DPO reads jpg_0/jpg_1 as JPEG bytes, which JSON cannot carry: Parquet or datasets instead."""
    for fmt in ("pickapic", "dpo"):
        with pytest.raises(ValueError, match="--as jsonl .* --as parquet or --as datasets"):
            export(scenario.store, fmt, tmp_path / fmt, "jsonl")
        assert not (tmp_path / fmt).exists()
    common = ["--db", scenario.url, "--image-dir", str(scenario.image_dir)]
    with pytest.raises(SystemExit) as exit_info:
        main(["--format", "pickapic", "--as", "jsonl", "--out", str(tmp_path / "cli"), *common])
    assert exit_info.value.code == 2
    assert "--as jsonl cannot carry the JPEG bytes" in capsys.readouterr().err
