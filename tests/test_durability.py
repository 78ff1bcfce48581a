"""Durability: no acknowledged vote is lost when the server is killed, and many writers at once lose nothing.

The kill test serves the real app and has eight raters vote through ``POST /api/vote`` until the server is
killed with SIGKILL; every vote it answered must be in the database afterwards, and nothing it refused. A vote in
flight at the kill may or may not have landed, so each rater's history must be its acknowledged votes, or those
and the one in flight. The load test has sixteen processes write 50,000 votes through the store at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from sqlalchemy.engine import make_url

from app.rater_cookie import COOKIE
from app.served import ServedApp, ServerError
from app.vote_route import VOTE_PATH
from feedback.store import FeedbackStore, PreferenceRows, VoteEventRow
from tests.fixtures.voters import PlannedComparison, PlannedVote, cast, plan, rater_name
from tests.test_store import provenance, solid

pytestmark = pytest.mark.slow

HTTP_VOTERS = 8
ACKNOWLEDGED_BEFORE_KILL = 240  # within one minute's rate limits: 1200 votes per address, 240 per rater
ACK_TIMEOUT_S = 180.0
LOAD_CLIENTS = 16
VOTES_PER_CLIENT = 3_125
LOAD_IMAGES = 64
LOAD_TIMEOUT_S = 1800.0


def sqlite_integrity(db_url: str) -> list[tuple[Any, ...]]:
    """``PRAGMA integrity_check`` of a SQLite database file, through a connection of its own."""
    with sqlite3.connect(make_url(db_url).database) as db:
        return db.execute("PRAGMA integrity_check").fetchall()


def record_images(db_url: str, image_dir: Path, count: int) -> list[str]:
    """``count`` stored images of one generation to vote on, without running a model."""
    colours = [(37 * i % 256, 91 * i % 256, 151 * i % 256) for i in range(count)]
    with FeedbackStore(db_url, image_dir) as store:
        owner = store.rater("durability-owner")
        return store.record_generation(owner, provenance(), [solid(colour, 4) for colour in colours]).image_ids


# -- kill -9 ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One POST /api/vote and its answer: an HTTP status, or None when the connection broke first."""

    image_id: str
    value: int
    comment: str
    status: int | None


@dataclass
class HttpVoter:
    """One rater voting through POST /api/vote over one keep-alive connection until the server goes away."""

    index: int
    url: str
    token: str
    image_ids: list[str]
    acknowledged: threading.Semaphore
    attempts: list[Attempt] = field(default_factory=list)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self._vote_until_the_connection_breaks()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error

    def _vote_until_the_connection_breaks(self) -> None:
        with httpx.Client(base_url=self.url, cookies={COOKIE: self.token}, timeout=60) as http:
            for n in range(10_000):
                image_id = self.image_ids[(self.index + n) % len(self.image_ids)]
                value = 1 if (n // len(self.image_ids) + self.index) % 2 == 0 else -1
                comment = f"voter {self.index} vote {n}"  # unique, so every vote is a change and is found again
                try:
                    answer = http.post(VOTE_PATH, json={"image_id": image_id, "value": value, "comment": comment})
                except httpx.TransportError:
                    self.attempts.append(Attempt(image_id, value, comment, None))
                    return
                self.attempts.append(Attempt(image_id, value, comment, answer.status_code))
                if answer.status_code == 200:
                    assert answer.json()["value"] == value and answer.json()["comment"] == comment
                    self.acknowledged.release()
                elif answer.status_code in (429, 503):
                    time.sleep(0.2)
                else:
                    raise AssertionError(f"POST {VOTE_PATH} answered {answer.status_code}: {answer.text}")

    @property
    def in_flight(self) -> Attempt | None:
        """The request the kill caught: it may or may not have been committed."""
        return self.attempts[-1] if self.attempts and self.attempts[-1].status is None else None


def issue_tokens(url: str, count: int) -> list[str]:
    issuer = Client(url, verbose=False)
    try:
        return [issuer.predict(api_name="/rater_token")["token"] for _ in range(count)]
    finally:
        issuer.close()


@pytest.fixture
def served_app(tiny_sd_dir: Path, tmp_path: Path) -> Iterator[tuple[ServedApp, str, Path, list[str]]]:
    """A served demo on a fresh SQLite database that already holds four images; it is stopped (if it still
    runs) afterwards. Yields the app, its database URL, image folder and the image ids."""
    db_url, image_dir = f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "images"
    image_ids = record_images(db_url, image_dir, 4)
    args = ["--model", str(tiny_sd_dir), "--db", db_url, "--image-dir", str(image_dir), "--device", "cpu"]
    env = {
        "RAPHAEL_TORCH_THREADS": "1",
        "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
        "RAPHAEL_IP_SALT": "test-salt",
        "RAPHAEL_NEW_RATERS_PER_HOUR": "1000",
    }
    served = ServedApp(args, tmp_path / "app.log", env)
    try:
        served.__enter__()
    except ServerError as err:
        pytest.fail(str(err))
    try:
        yield served, db_url, image_dir, image_ids
    finally:
        served.stop()


def voter_histories(rows: PreferenceRows, voters: list[HttpVoter]) -> dict[int, list[VoteEventRow]]:
    """Each voter's stored vote events, oldest first, found by the comments it sent."""
    histories: dict[int, list[VoteEventRow]] = {voter.index: [] for voter in voters}
    for event in rows.events:
        if event.comment and event.comment.startswith("voter "):
            histories[int(event.comment.split()[1])].append(event)
    return histories


def test_kill_9_loses_no_acknowledged_vote(served_app: tuple[ServedApp, str, Path, list[str]]) -> None:
    served, db_url, image_dir, image_ids = served_app
    acknowledged = threading.Semaphore(0)
    tokens = issue_tokens(served.url, HTTP_VOTERS)
    voters = [HttpVoter(i, served.url, token, image_ids, acknowledged) for i, token in enumerate(tokens)]
    threads = [threading.Thread(target=voter.run, daemon=True) for voter in voters]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + ACK_TIMEOUT_S
    for _ in range(ACKNOWLEDGED_BEFORE_KILL):
        assert acknowledged.acquire(timeout=max(deadline - time.monotonic(), 0)), (
            f"fewer than {ACKNOWLEDGED_BEFORE_KILL} votes acknowledged in {ACK_TIMEOUT_S:.0f} s; "
            f"errors {[v.error for v in voters if v.error]}; the server log ends:\n{served.log_tail()}"
        )
    assert served.crash() == -signal.SIGKILL
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads)
    assert [voter.error for voter in voters if voter.error] == []
    assert all(voter.attempts[-1].status is None for voter in voters)  # each voter stopped at the broken connection
    assert sum(a.status == 200 for v in voters for a in v.attempts) >= ACKNOWLEDGED_BEFORE_KILL

    assert sqlite_integrity(db_url) == [("ok",)]
    with FeedbackStore(db_url, image_dir) as store:
        rows = store.preference_rows(with_images=False)
    assert sqlite_integrity(db_url) == [("ok",)]
    histories = voter_histories(rows, voters)
    current = {(vote.rater_id, vote.image_id): (vote.value, vote.comment) for vote in rows.votes}
    raters: dict[int, int] = {}
    landed_count = 0
    for voter in voters:
        acked = [(a.image_id, a.value, a.comment) for a in voter.attempts if a.status == 200]
        stored = [(e.image_id, e.value, e.comment) for e in histories[voter.index]]
        in_flight = voter.in_flight
        landed = in_flight is not None and stored == [*acked, (in_flight.image_id, in_flight.value, in_flight.comment)]
        # Every acknowledged vote, in order, and nothing refused; the vote in flight at the kill at most once more.
        landed_count += landed
        assert stored == acked or landed, f"voter {voter.index}: stored {stored[-3:]}, acknowledged {acked[-3:]}"
        (rater,) = {e.rater_id for e in histories[voter.index]}
        raters[voter.index] = rater
        assert [e for e in rows.events if e.rater_id == rater] == histories[voter.index]
        # The current vote on each image is the last acknowledged one, or the vote in flight where it landed.
        expected = {image_id: (value, comment) for image_id, value, comment in acked}
        if landed:
            expected[in_flight.image_id] = (in_flight.value, in_flight.comment)
        assert {image_id: vote for (r, image_id), vote in current.items() if r == rater} == expected
    assert len(set(raters.values())) == HTTP_VOTERS
    statuses = Counter(a.status for v in voters for a in v.attempts)
    print(
        f"\nkilled after {statuses[200]} acknowledged votes; answers {dict(statuses)}; {landed_count} in flight landed"
    )

    # The restarted server serves the same database, and a rater's token is still the same rater.
    served.log_path = served.log_path.with_name("app-restarted.log")
    served.__enter__()
    image_id = image_ids[0]
    before = current.get((raters[0], image_id), (0, None))[0]
    vote = {"image_id": image_id, "value": -before or 1, "comment": "after restart"}
    with httpx.Client(base_url=served.url, cookies={COOKIE: tokens[0]}, timeout=60) as http:
        answer = http.post(VOTE_PATH, json=vote)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {**vote, "previous": before}
    with FeedbackStore(db_url, image_dir) as store:
        events = store.preference_rows(with_images=False).events
    assert events[-1].comment == "after restart" and events[-1].rater_id == raters[0]
    assert len(events) == len(rows.events) + 1


# -- 50,000 votes ---------------------------------------------------------------------------------------------------


def expected_state(
    client: int, image_ids: list[str]
) -> tuple[dict[str, tuple[int, str | None]], dict[frozenset[str], tuple[str, str, str]]]:
    """A client's last vote on each image it voted on (value and comment, 0 when taken back), and its last judgement
    of each pair it judged."""
    votes: dict[str, tuple[int, str | None]] = {}
    comparisons: dict[frozenset[str], tuple[str, str, str]] = {}
    for step in plan(client, image_ids, VOTES_PER_CLIENT):
        if isinstance(step, PlannedVote):
            votes[step.image_id] = (step.value, step.comment)
        else:
            assert isinstance(step, PlannedComparison)
            pair = frozenset((step.left_image_id, step.right_image_id))
            comparisons[pair] = (step.left_image_id, step.right_image_id, step.outcome)
    return votes, comparisons


def seen_from(left: str, outcome: str, row_left: str) -> str:
    """An outcome judged with ``left`` on the left, as a row with ``row_left`` on the left stores it."""
    return outcome if left == row_left else {"left": "right", "right": "left"}.get(outcome, outcome)


def test_50000_votes_16_clients(db_url: str, tmp_path: Path) -> None:
    """Sixteen processes (separate connections and, on SQLite, separate writers contending for the file) each cast
    3,125 votes on 64 shared images, every one a change, with a comparison after every 25th."""
    image_dir = tmp_path / "images"
    image_ids = record_images(db_url, image_dir, LOAD_IMAGES)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(LOAD_CLIENTS + 1), context.Queue()
    processes = [
        context.Process(
            target=cast, args=(db_url, str(image_dir), client, image_ids, VOTES_PER_CLIENT, start, results)
        )
        for client in range(LOAD_CLIENTS)
    ]
    for process in processes:
        process.start()
    reports: list[dict[str, Any]] = []
    try:
        with contextlib.suppress(threading.BrokenBarrierError):  # a client failed before voting; its report says why
            start.wait(timeout=300)
        began = time.perf_counter()
        with contextlib.suppress(queue.Empty):
            while len(reports) < LOAD_CLIENTS:
                reports.append(results.get(timeout=LOAD_TIMEOUT_S))
        seconds = time.perf_counter() - began
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [problem for report in reports for problem in report["problems"]] == []
    assert len(reports) == LOAD_CLIENTS, "a client did not finish within the time limit"
    total = LOAD_CLIENTS * VOTES_PER_CLIENT
    busy = sum(report["busy"] for report in reports)
    print(
        f"\n{make_url(db_url).get_backend_name()}: {total} votes from {LOAD_CLIENTS} processes in {seconds:.1f} s "
        f"({total / seconds:.0f} votes/s), {busy} busy answers tried again"
    )

    if make_url(db_url).get_backend_name() == "sqlite":
        assert sqlite_integrity(db_url) == [("ok",)]
    with FeedbackStore(db_url, image_dir) as store:
        rows = store.preference_rows(with_images=False)
        raters = {report["client"]: report["rater_id"] for report in reports}
        assert all(store.rater(rater_name(client)) == rater for client, rater in raters.items())
    assert len(rows.events) == total
    assert len(set(raters.values())) == LOAD_CLIENTS
    for client, rater in raters.items():
        last_votes, last_comparisons = expected_state(client, image_ids)
        assert sum(event.rater_id == rater for event in rows.events) == VOTES_PER_CLIENT
        current = {vote.image_id: (vote.value, vote.comment) for vote in rows.votes if vote.rater_id == rater}
        assert current == {image_id: vote for image_id, vote in last_votes.items() if vote[0] != 0}
        judged = [row for row in rows.comparisons if row.rater_id == rater]
        assert len(judged) == len(last_comparisons)  # one row per pair
        for row in judged:
            left, _, outcome = last_comparisons[frozenset((row.left_image_id, row.right_image_id))]
            assert row.outcome == seen_from(left, outcome, row.left_image_id)
