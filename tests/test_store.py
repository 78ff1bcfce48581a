"""FeedbackStore behaviour: votes and their history, comparisons, image files, dashboard, filters.

The core tests run on SQLite and on a throwaway Postgres database; the SQLite-specific ones
(WAL, a busy database, concurrent writers) follow. Images are tiny solid-colour PNGs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

import feedback.engine
import feedback.images
from feedback.campaigns import CampaignItemSpec
from feedback.export import export
from feedback.images import read_provenance
from feedback.models import MAX_COMMENT_CHARS, Rater
from feedback.store import FeedbackBusy, FeedbackError, FeedbackStore, ImagesNotSaved

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]


def provenance(**overrides: Any) -> dict[str, Any]:
    """A complete provenance dict, as the app sends it."""
    return {
        "prompt": "a red apple on a table",
        "enhanced_prompt": None,
        "model_prompt": None,
        "negative_prompt": "blurry",
        "seed": 1234,
        "steps": 25,
        "cfg": 3.0,
        "sampler": "ddim",
        "width": 16,
        "height": 16,
        "model_name": "raphael-tiny",
        "model_hash": "a" * 64,
        "app_version": "0.1.0",
        "category": "food",
        **overrides,
    }


def solid(colour: str, size: int = 16) -> Image.Image:
    return Image.new("RGB", (size, size), colour)


@pytest.fixture
def images(store: FeedbackStore) -> tuple[int, list[str]]:
    """A rater and the four images of one generation."""
    rater = store.rater("rater-a")
    record = store.record_generation(rater, provenance(), [solid(c) for c in COLOURS[:4]])
    return rater, record.image_ids


def test_vote_change_undo_keeps_history(store: FeedbackStore, images: tuple[int, list[str]]) -> None:
    rater, (image, other, *_) = images
    first = store.vote(rater, image, 1, comment="  lovely colours ")
    assert (first.value, first.previous, first.comment, first.changed) == (1, 0, "lovely colours", True)
    assert store.current_votes(rater, [image, other]) == {image: 1, other: 0}

    changed = store.vote(rater, image, -1)
    assert (changed.value, changed.previous, changed.changed) == (-1, 1, True)
    repeated = store.vote(rater, image, -1)
    assert (repeated.previous, repeated.changed) == (-1, False)

    undone = store.vote(rater, image, 0)
    assert (undone.value, undone.previous, undone.changed) == (0, -1, True)
    assert store.vote(rater, image, 0).changed is False
    assert store.current_votes(rater, [image]) == {image: 0}
    assert store.vote_history(rater, image) == [1, -1, 0]

    events = store.preference_rows().events
    assert [(e.value, e.comment) for e in events] == [(1, "lovely colours"), (-1, None), (0, None)]
    assert store.dashboard().totals["n_votes"] == 0
    current = store.preference_rows(with_images=False, with_events=False)  # what the dashboard reads
    assert (current.events, current.images) == ([], {})


def test_one_current_vote_per_rater_and_image(store: FeedbackStore, images: tuple[int, list[str]]) -> None:
    rater, (image, *_) = images
    other = store.rater("rater-b")
    for value in (1, -1, 1, 1):
        store.vote(rater, image, value)
    store.vote(other, image, -1)
    votes = store.preference_rows().votes
    assert sorted((v.rater_id, v.value) for v in votes) == sorted([(rater, 1), (other, -1)])
    assert store.dashboard().totals["n_votes"] == 2


@pytest.mark.parametrize(
    ("value", "comment", "message"),
    [
        (2, None, "👍"),
        (True, None, "👍"),
        (1, "x" * (MAX_COMMENT_CHARS + 1), f"at most {MAX_COMMENT_CHARS} characters"),
    ],
)
def test_vote_rejects_bad_input(
    store: FeedbackStore, images: tuple[int, list[str]], value: int, comment: str | None, message: str
) -> None:
    rater, (image, *_) = images
    with pytest.raises(FeedbackError, match=message):
        store.vote(rater, image, value, comment=comment)
    assert store.vote(rater, image, 1, comment="x" * MAX_COMMENT_CHARS).changed


def test_vote_on_unknown_image_or_rater(store: FeedbackStore, images: tuple[int, list[str]]) -> None:
    rater, (image, *_) = images
    with pytest.raises(FeedbackError, match="does not exist"):
        store.vote(rater, "no-such-image", 1)
    with pytest.raises(FeedbackError, match="session is unknown"):
        store.vote(rater + 1000, image, 1)
    assert isinstance(FeedbackError("x"), ValueError)
    assert store.preference_rows().events == []


def test_compare_validates_and_records(store: FeedbackStore, images: tuple[int, list[str]]) -> None:
    rater, (left, right, *_) = images
    with pytest.raises(FeedbackError, match="tie"):
        store.compare(rater, left, right, "maybe")
    with pytest.raises(FeedbackError, match="two different images"):
        store.compare(rater, left, left, "left")
    with pytest.raises(FeedbackError, match="does not exist"):
        store.compare(rater, left, "gone", "left")
    comparison_id = store.compare(rater, left, right, "left")
    (row,) = store.preference_rows().comparisons
    assert (row.id, row.rater_id, row.left_image_id, row.right_image_id, row.outcome) == (
        comparison_id, rater, left, right, "left",
    )  # fmt: skip


def test_a_rater_has_one_comparison_per_pair(
    store: FeedbackStore, images: tuple[int, list[str]], tmp_path: Path
) -> None:
    """Repeats update the one row; the images the other way round flip the outcome onto the row's sides."""
    rater, (left, right, third, *_) = images
    other = store.rater("rater-b")
    first = store.compare(rater, left, right, "tie")
    assert [store.compare(rater, left, right, "tie") for _ in range(24)] == [first] * 24
    assert store.compare(rater, right, left, "left") == first  # the right image of the row won
    assert store.compare(other, right, left, "both_bad") != first  # another rater's judgement is their own
    assert store.compare(rater, left, third, "left") != first  # another pair
    rows = store.preference_rows().comparisons
    assert [(c.rater_id, c.left_image_id, c.right_image_id, c.outcome) for c in rows] == [
        (rater, left, right, "right"),
        (other, right, left, "both_bad"),
        (rater, left, third, "left"),
    ]
    store.compare(rater, right, left, "tie")
    assert store.preference_rows().comparisons[0].outcome == "tie"
    assert store.dashboard().totals["n_comparisons"] == 3

    store.compare(rater, right, left, "right")  # the left image of the row won, as the export must say
    result = export(store, "pickapic", tmp_path / "pairs")
    assert result.counts["comparisons_replaced_by_later"] == 0
    pairs = pd.read_parquet(tmp_path / "pairs" / "train.parquet")
    mine = pairs[(pairs["user_id"] == rater) & (pairs["image_1_uid"] == right)]
    assert mine[["image_0_uid", "best_image_uid"]].values.tolist() == [[left, left]]


def test_a_campaign_answer_and_a_later_comparison_of_its_pair_are_one_row(store: FeedbackStore) -> None:
    rater = store.rater("rater-a")
    a, b = store.record_generation(rater, provenance(), [solid("red"), solid("blue")]).image_ids
    campaign = store.create_campaign(
        "pairs", "pair", "", 2, 0.0, [CampaignItemSpec(left_image_id=a, right_image_id=b)]
    )
    store.answer_campaign_item(store.campaign_items(campaign)[0].id, rater, "left", 3.0)
    store.compare(rater, b, a, "left")
    rows = store.preference_rows(campaign="pairs").comparisons
    assert [(c.left_image_id, c.right_image_id, c.outcome) for c in rows] == [(a, b, "right")]
    assert store.campaign_answers(campaign)[0].answer == "left"  # the campaign keeps the answer it was given


def test_a_battle_reads_its_judgement_from_its_own_sides(store: FeedbackStore) -> None:
    """A battle's images compared before, the other way round, share that row; the battle still names its winner."""
    rater = store.rater("rater-a")
    left = store.record_generation(rater, provenance(), [solid("red")]).image_ids[0]
    right = store.record_generation(rater, provenance(model_hash="b" * 64), [solid("blue")]).image_ids[0]
    store.compare(rater, right, left, "tie")
    battle = store.start_battle(rater, left, right)
    assert store.judge_battle(battle, rater, "left").outcome == "left"
    (comparison,) = store.preference_rows().comparisons
    assert (comparison.left_image_id, comparison.outcome) == (right, "right")
    assert store.arena_battles()[0].outcome == "left"

    again = store.start_battle(rater, left, right)
    with pytest.raises(FeedbackError, match="already judged these two images in another battle"):
        store.judge_battle(again, rater, "right")
    assert [b.outcome for b in store.arena_battles(judged_only=False)] == ["left", None]


def test_images_are_content_addressed_and_carry_provenance(store: FeedbackStore) -> None:
    rater = store.rater("rater-a")
    first = store.record_generation(rater, provenance(style="flat"), [solid("red"), solid("blue")])
    again = store.record_generation(rater, provenance(style="flat"), [solid("red")])
    other_seed = store.record_generation(rater, provenance(seed=99, style="flat"), [solid("red")])

    assert again.paths[0] == first.paths[0] and again.image_ids[0] != first.image_ids[0]
    assert other_seed.paths[0] != first.paths[0]  # provenance is part of the bytes
    for index, path in enumerate(first.paths):
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert path == store.images.root / digest[:2] / f"{digest[2:]}.png"
        assert read_provenance(path) == {**provenance(), "style": "flat", "batch_index": index}
    assert store.image_path(first.image_ids[1]) == first.paths[1]
    assert not list(store.images.root.rglob(".tmp-*"))
    with Image.open(first.paths[0]) as image:
        assert image.getpixel((0, 0)) == (255, 0, 0)

    row = store.preference_rows().images  # nothing rated yet
    assert row == {}
    with pytest.raises(FeedbackError):
        store.image_path("missing")


def test_each_stored_png_names_its_own_seed(store: FeedbackStore) -> None:
    rater = store.rater("rater-a")
    record = store.record_generation(rater, provenance(seed=11, seeds=[11, 12]), [solid("red"), solid("blue")])
    for index, path in enumerate(record.paths):
        single = read_provenance(path)
        assert (single["seed"], single["batch_seed"], single["batch_index"]) == (11 + index, 11, index)
        assert "seeds" not in single
    for image_id in record.image_ids:
        store.vote(rater, image_id, 1)
    rows = store.preference_rows().images
    assert [rows[i].provenance["seed"] for i in record.image_ids] == [11, 12]


def test_provenance_columns_and_extra(store: FeedbackStore) -> None:
    rater = store.rater("rater-a")
    prov = provenance(enhanced_prompt="a shiny red apple", seed=2**40, lora="none", guidance_rescale=0.7)
    record = store.record_generation(rater, prov, [solid("red")])
    store.vote(rater, record.image_ids[0], 1)
    image = store.preference_rows().images[record.image_ids[0]]
    assert image.caption == "a shiny red apple"  # what the model generated from, as the rater saw it
    assert image.provenance["prompt"] == "a red apple on a table"
    assert image.provenance["enhanced_prompt"] == "a shiny red apple"
    assert image.provenance["seed"] == 2**40
    assert image.provenance["extra"] == {"lora": "none", "guidance_rescale": 0.7}
    assert image.model == "raphael-tiny@" + "a" * 12
    with pytest.raises(ValueError, match="missing seed"):
        store.record_generation(rater, provenance(seed=None), [solid("red")])


def test_rater_is_get_or_create_and_ip_is_hashed(store: FeedbackStore) -> None:
    first = store.rater("browser-1", ip="203.0.113.7")
    assert store.rater("browser-1", ip="198.51.100.1") == first
    assert store.rater("browser-2") != first
    with pytest.raises(FeedbackError):
        store.rater("")


def ip_hashes(store: FeedbackStore) -> dict[str, str | None]:
    with store._engine.connect() as connection:
        return dict(connection.execute(select(Rater.anon_id, Rater.ip_hash)).all())


def test_ip_hashes_are_cleared_after_the_retention_days(store: FeedbackStore) -> None:
    store.rater("old", ip="203.0.113.7")
    with store._engine.begin() as connection:
        connection.execute(update(Rater).values(created_at=datetime.now(UTC) - timedelta(days=store.ip_hash_days + 1)))
    store.rater("new", ip="203.0.113.8")
    assert ip_hashes(store)["old"] is not None  # checked once a day: today's check ran before "old" aged
    assert store.forget_ip_hashes() == 1
    assert ip_hashes(store)["old"] is None and ip_hashes(store)["new"] is not None
    tomorrow = datetime.now(UTC) + timedelta(days=store.ip_hash_days, seconds=1)
    assert store.forget_ip_hashes(now=tomorrow) == 1 and set(ip_hashes(store).values()) == {None}


def test_the_store_clears_old_ip_hashes_once_a_day_before_it_keeps_a_new_one(store: FeedbackStore) -> None:
    store.rater("old", ip="203.0.113.7")
    with store._engine.begin() as connection:
        connection.execute(update(Rater).values(created_at=datetime.now(UTC) - timedelta(days=store.ip_hash_days + 1)))
    store._ip_hashes_checked = None  # as on a new day
    store.rater("new", ip="203.0.113.8")
    assert ip_hashes(store)["old"] is None and ip_hashes(store)["new"] is not None


def test_no_ip_hash_is_stored_when_retention_is_zero(db_url: str, tmp_path: Path) -> None:
    with FeedbackStore(db_url, tmp_path / "images", ip_hash_days=0) as store:
        store.rater("someone", ip="203.0.113.7")
        assert ip_hashes(store) == {"someone": None}
    with pytest.raises(ValueError, match="ip_hash_days must be 0 or more"):
        FeedbackStore(db_url, tmp_path / "images", ip_hash_days=-1)


def test_dashboard(store: FeedbackStore) -> None:
    a, b = store.rater("a"), store.rater("b")
    tiny = store.record_generation(a, provenance(category="food"), [solid("red"), solid("blue")])
    newer = store.record_generation(
        a, provenance(model_hash="b" * 64, category=None), [solid("green"), solid("white")]
    )
    store.vote(a, tiny.image_ids[0], 1)
    store.vote(b, tiny.image_ids[0], 1)
    store.vote(a, tiny.image_ids[1], -1)
    store.vote(a, newer.image_ids[0], 1)
    store.compare(b, tiny.image_ids[0], newer.image_ids[0], "right")

    data = store.dashboard()
    assert data.totals == {"n_votes": 4, "n_images": 4, "n_raters": 2, "n_comparisons": 1}
    assert data.votes_per_day[["likes", "dislikes"]].sum().tolist() == [3, 1]
    assert data.votes_per_day["day"].iloc[0].date() == datetime.now(UTC).date()
    by_model = data.by_model.set_index("model_hash")
    assert by_model.loc["a" * 64, ["likes", "dislikes", "votes"]].tolist() == [2, 1, 3]
    assert by_model.loc["b" * 64, "like_rate"] == 1.0
    by_category = data.by_category.set_index("category")
    assert by_category.loc["food", "like_rate"] == pytest.approx(2 / 3)
    assert by_category.loc["(none)", "votes"] == 1


def test_dashboard_when_empty(store: FeedbackStore) -> None:
    data = store.dashboard()
    assert data.totals == {"n_votes": 0, "n_images": 0, "n_raters": 0, "n_comparisons": 0}
    assert data.votes_per_day.empty and data.by_model.empty and data.by_category.empty
    assert list(data.by_model.columns) == ["model_name", "model_hash", "likes", "dislikes", "votes", "like_rate"]


def test_preference_rows_filters(store: FeedbackStore) -> None:
    a, b = store.rater("a"), store.rater("b")
    tiny = store.record_generation(a, provenance(), [solid("red"), solid("blue")])
    other = store.record_generation(a, provenance(model_name="raphael-small", model_hash="c" * 64), [solid("green")])
    store.vote(a, tiny.image_ids[0], 1)
    store.vote(b, tiny.image_ids[0], -1)
    store.vote(a, tiny.image_ids[1], -1)
    store.vote(a, other.image_ids[0], 1)
    store.compare(b, tiny.image_ids[0], tiny.image_ids[1], "left")
    store.compare(b, tiny.image_ids[0], other.image_ids[0], "tie")

    everything = store.preference_rows()
    assert (len(everything.votes), len(everything.comparisons), len(everything.events)) == (4, 2, 4)
    assert set(everything.images) == {*tiny.image_ids, *other.image_ids}

    small = store.preference_rows(model="raphael-small")
    assert [v.image_id for v in small.votes] == other.image_ids and small.comparisons == []
    assert len(store.preference_rows(model="c" * 64).votes) == 1

    now = datetime.now(UTC)
    assert store.preference_rows(since=now + timedelta(hours=1)).votes == []
    assert store.preference_rows(until=now - timedelta(hours=1)).comparisons == []
    window = store.preference_rows(since=now - timedelta(hours=1), until=now + timedelta(hours=1))
    assert len(window.votes) == 4
    naive = store.preference_rows(since=(now - timedelta(hours=1)).replace(tzinfo=None))  # read as UTC
    assert len(naive.votes) == 4

    # Judgements per image: red 2 votes + 2 comparisons, blue 1 + 1, green 1 + 1.
    strict = store.preference_rows(min_votes=3)
    assert {v.image_id for v in strict.votes} == {tiny.image_ids[0]}
    assert strict.comparisons == []
    assert len(store.preference_rows(min_votes=2).comparisons) == 2


# -- SQLite specifics -----------------------------------------------------------------------------


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[FeedbackStore]:
    with FeedbackStore(f"sqlite:///{tmp_path / 'db' / 'feedback.db'}", tmp_path / "images") as store:
        yield store


def test_sqlite_runs_in_wal_with_safe_pragmas(sqlite_store: FeedbackStore, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "db" / "feedback.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with sqlite_store._engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert pragma("PRAGMA busy_timeout").scalar() == 5000
        assert pragma("PRAGMA foreign_keys").scalar() == 1


def test_sqlite_syncs_every_commit_when_asked(tmp_path: Path) -> None:
    with FeedbackStore(f"sqlite:///{tmp_path / 'full.db'}", tmp_path / "images", synchronous="FULL") as store:
        with store._engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with pytest.raises(ValueError, match="synchronous must be one of NORMAL, FULL"):
        FeedbackStore(f"sqlite:///{tmp_path / 'off.db'}", tmp_path / "images", synchronous="OFF")


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers give up on a locked SQLite database after 50 ms instead of 5 s."""
    pragmas = tuple(
        "PRAGMA busy_timeout=50" if p.startswith("PRAGMA busy_timeout") else p for p in feedback.engine.SQLITE_PRAGMAS
    )
    monkeypatch.setattr(feedback.engine, "SQLITE_PRAGMAS", pragmas)


def every_write(store: FeedbackStore) -> dict[str, Callable[[], object]]:
    """One call of each write method, on data made beforehand."""
    rater = store.rater("rater-a")
    left, right, third = store.record_generation(rater, provenance(), [solid(c) for c in COLOURS[:3]]).image_ids
    other = store.record_generation(rater, provenance(model_hash="b" * 64), [solid("white")]).image_ids[0]
    campaign = store.create_campaign(
        "pairs", "pair", "", 2, 0.0, [CampaignItemSpec(left_image_id=left, right_image_id=right)]
    )
    item = store.campaign_items(campaign)[0].id
    battle = store.start_battle(rater, left, other)
    return {
        "rater": lambda: store.rater("newcomer", ip="203.0.113.7"),
        "record_generation": lambda: store.record_generation(rater, provenance(seed=7), [solid("black")]),
        "vote": lambda: store.vote(rater, left, 1),
        "compare": lambda: store.compare(rater, left, third, "left"),
        "create_campaign": lambda: store.create_campaign(
            "more", "vote", "", 1, 0.0, [CampaignItemSpec(image_id=third)]
        ),
        "answer_campaign_item": lambda: store.answer_campaign_item(item, rater, "tie", 2.0),
        "close_campaign": lambda: store.close_campaign("pairs"),
        "start_battle": lambda: store.start_battle(rater, third, other),
        "judge_battle": lambda: store.judge_battle(battle, rater, "right"),
    }


WRITES = (
    "rater", "record_generation", "vote", "compare", "create_campaign", "answer_campaign_item", "close_campaign",
    "start_battle", "judge_battle",
)  # fmt: skip


def row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}


@pytest.mark.parametrize("write", WRITES)
def test_a_write_to_a_locked_database_says_it_is_busy(short_busy_timeout: None, tmp_path: Path, write: str) -> None:
    path = tmp_path / "feedback.db"
    with FeedbackStore(f"sqlite:///{path}", tmp_path / "images") as store:
        writes = every_write(store)
        assert set(writes) == set(WRITES)
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            before = row_counts(holder)
            holder.execute("BEGIN EXCLUSIVE")
            with pytest.raises(FeedbackBusy, match="^The feedback database is busy, so nothing was saved;") as caught:
                writes[write]()
            assert isinstance(caught.value, ValueError)  # so the app shows the message
            holder.execute("ROLLBACK")
            assert row_counts(holder) == before
            writes[write]()  # the same write goes through once the lock is gone
        finally:
            holder.close()


def test_other_database_errors_stay_faults(sqlite_store: FeedbackStore, tmp_path: Path) -> None:
    rater = sqlite_store.rater("rater-a")
    image = sqlite_store.record_generation(rater, provenance(), [solid("red")]).image_ids[0]
    with sqlite3.connect(tmp_path / "db" / "feedback.db") as raw:
        raw.execute("DROP TABLE vote_events")
    with pytest.raises(OperationalError, match="no such table") as caught:
        sqlite_store.vote(rater, image, 1)
    assert not isinstance(caught.value, ValueError)


def test_an_image_folder_that_refuses_files_stores_nothing(
    store: FeedbackStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rater = store.rater("rater-a")
    folder = store.images.root
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root writes anyway: refuse where the read-only folder would

            def refuse(*_args: object, **_kwargs: object) -> tuple[int, str]:
                raise PermissionError(13, "Permission denied", str(folder))

            monkeypatch.setattr(feedback.images.tempfile, "mkstemp", refuse)
        with caplog.at_level(logging.ERROR, logger="feedback.store"):
            with pytest.raises(ImagesNotSaved, match="^The server could not save the images, so nothing was stored"):
                store.record_generation(rater, provenance(), [solid("red")])
    finally:
        folder.chmod(0o755)
    assert store.dashboard().totals["n_images"] == 0
    (logged,) = [r for r in caplog.records if r.name == "feedback.store" and r.levelno >= logging.ERROR]
    assert logged.exc_info is not None and issubclass(logged.exc_info[0], PermissionError)
    monkeypatch.undo()
    assert store.record_generation(rater, provenance(), [solid("red")]).paths[0].exists()


def test_an_unusable_image_folder_is_found_before_the_model_runs(store: FeedbackStore) -> None:
    """The app asks before it generates, so a request fails before the model spends its time."""
    store.check_images_writable()
    folder = store.images.root
    shutil.rmtree(folder)
    folder.write_text("a file where the folder was")  # refused even by root, unlike a read-only mode
    try:
        with pytest.raises(ImagesNotSaved, match="^The server could not save the images, so nothing was stored"):
            store.check_images_writable()
    finally:
        folder.unlink()
        folder.mkdir()
    store.check_images_writable()
    assert not [p for p in folder.iterdir() if p.name.startswith(".probe-")]  # the probe leaves nothing


def test_concurrent_votes_from_eight_threads_all_land(sqlite_store: FeedbackStore) -> None:
    assert_concurrent_votes_land(sqlite_store)


def assert_concurrent_votes_land(store: FeedbackStore, threads: int = 8, per_thread: int = 15) -> None:
    """Eight raters vote, change their minds and comment at once; every write must be kept."""
    owner = store.rater("owner")
    image_ids = store.record_generation(owner, provenance(), [solid(c, 4) for c in COLOURS]).image_ids
    raters = [store.rater(f"rater-{n}") for n in range(threads)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(rater: int) -> None:
        try:
            start.wait()
            for step in range(per_thread):
                image = image_ids[step % len(image_ids)]
                store.vote(rater, image, 1 if (rater + step) % 2 else -1, comment=f"step {step}")
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    workers = [threading.Thread(target=work, args=(rater,)) for rater in raters]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    rows = store.preference_rows()
    assert len(rows.events) == threads * per_thread  # every change has a comment that differs
    assert len(rows.votes) == threads * min(per_thread, len(image_ids))
    for rater in raters:
        last = {image_ids[s % len(image_ids)]: (1 if (rater + s) % 2 else -1) for s in range(per_thread)}
        assert store.current_votes(rater, image_ids) == {i: last.get(i, 0) for i in image_ids}
