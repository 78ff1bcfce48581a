"""Postgres-only behaviour: concurrent writers, racing first votes and comparisons, a lock timeout, and several
stores starting at once.

The backend-independent tests in ``test_store.py`` also run on Postgres; these cover what only a
real multi-connection server exercises.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

import feedback.engine
from feedback.engine import LOCK_TIMEOUT_MS
from feedback.store import FeedbackBusy, FeedbackStore
from tests.test_store import assert_concurrent_votes_land, provenance, solid

pytestmark = pytest.mark.postgres


def run_together(count: int, work: Callable[[int], object]) -> list[BaseException]:
    """Run ``work(i)`` in ``count`` threads released at the same moment; return what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as error:  # noqa: BLE001 - reported to the test
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_votes_from_eight_threads_all_land(fresh_postgres_url: str, tmp_path: Path) -> None:
    with FeedbackStore(fresh_postgres_url, tmp_path / "images") as store:
        assert_concurrent_votes_land(store)


def test_racing_first_votes_on_one_image_keep_one_row_and_every_event(fresh_postgres_url: str, tmp_path: Path) -> None:
    """A double click sends two first votes at once; the unique constraint must not lose either."""
    with FeedbackStore(fresh_postgres_url, tmp_path / "images") as store:
        rater = store.rater("double-clicker")
        image = store.record_generation(rater, provenance(), [solid("red")]).image_ids[0]
        errors = run_together(8, lambda i: store.vote(rater, image, 1, comment=f"click {i}"))
        assert errors == []
        rows = store.preference_rows()
        assert len(rows.votes) == 1 and len(rows.events) == 8
        assert rows.votes[0].comment == rows.events[-1].comment


def test_racing_comparisons_of_one_pair_keep_one_row(fresh_postgres_url: str, tmp_path: Path) -> None:
    """Double clicks on a pair, some with the images the other way round, update one row instead of adding eight."""
    with FeedbackStore(fresh_postgres_url, tmp_path / "images") as store:
        rater = store.rater("double-clicker")

        def race(a: str, b: str) -> set[int]:
            ids: list[int] = []
            errors = run_together(8, lambda i: ids.append(store.compare(rater, *((a, b) if i % 2 else (b, a)), "tie")))
            assert errors == []
            return set(ids)

        for seed in range(4):  # a race is not lost every time; four give it a fair chance
            pair = store.record_generation(rater, provenance(seed=seed), [solid("red"), solid("blue")]).image_ids
            assert len(race(*pair)) == 1
        rows = store.preference_rows().comparisons
        assert len(rows) == 4 and {row.outcome for row in rows} == {"tie"}


def test_sessions_wait_for_a_lock_as_long_as_sqlite_does(fresh_postgres_url: str, tmp_path: Path) -> None:
    with FeedbackStore(fresh_postgres_url, tmp_path / "images") as store, store._engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == f"{LOCK_TIMEOUT_MS // 1000}s"


def test_a_write_past_the_lock_timeout_says_it_is_busy(
    fresh_postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feedback.engine, "LOCK_TIMEOUT_MS", 100)
    conninfo = make_url(fresh_postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with FeedbackStore(fresh_postgres_url, tmp_path / "images") as store, psycopg.connect(conninfo) as holder:
        rater = store.rater("rater")
        image = store.record_generation(rater, provenance(), [solid("red")]).image_ids[0]
        holder.execute("LOCK TABLE votes IN ACCESS EXCLUSIVE MODE")  # held until the rollback below
        with pytest.raises(FeedbackBusy, match="busy, so nothing was saved"):
            store.vote(rater, image, 1)
        holder.rollback()
        assert store.vote(rater, image, 1).changed


def test_processes_migrating_at_once_do_not_collide(fresh_postgres_url: str) -> None:
    """Several app processes start together on an empty database; exactly one creates the tables."""
    command = [sys.executable, "-m", "feedback.migrate", "--url", fresh_postgres_url, "upgrade"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(4)]
    outputs = [process.communicate(timeout=120)[0].decode() for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, "\n".join(outputs)
    assert sum("Running upgrade  -> 0001" in output for output in outputs) == 1


def test_threads_opening_stores_at_once(fresh_postgres_url: str, tmp_path: Path) -> None:
    stores: list[FeedbackStore] = []
    errors = run_together(4, lambda i: stores.append(FeedbackStore(fresh_postgres_url, tmp_path / "images")))
    try:
        assert errors == []
        assert len({store.rater("same-person") for store in stores}) == 1
    finally:
        for store in stores:
            store.close()


def test_session_database_is_usable(postgres_url: str, tmp_path: Path) -> None:
    with FeedbackStore(postgres_url, tmp_path / "images") as store:
        rater = store.rater("session-db")
        record = store.record_generation(rater, provenance(), [solid("blue")])
        assert store.vote(rater, record.image_ids[0], -1).changed
