"""Votes that arrive together share one transaction, with the same answers and history as one at a time."""

import threading
import time

import pytest

from feedback.store import FeedbackError, FeedbackStore, VoteRecord, VoteRequest
from tests.test_store import COLOURS, provenance, solid


@pytest.fixture
def images(store: FeedbackStore) -> tuple[int, list[str]]:
    rater = store.rater("rater-a")
    return rater, store.record_generation(rater, provenance(), [solid(c, 4) for c in COLOURS[:3]]).image_ids


def test_one_batch_applies_its_votes_in_order_and_refuses_only_the_bad_ones(
    store: FeedbackStore, images: tuple[int, list[str]]
) -> None:
    rater, (first, second, _) = images
    other = store.rater("rater-b")
    store.vote(rater, second, -1, "dark")  # already stored before the batch
    batch = [
        VoteRequest(rater, first, 1, None),
        VoteRequest(rater, "no-such-image", 1, None),
        VoteRequest(rater, first, 0, None),  # a double click in the same batch takes it back
        VoteRequest(rater, first, -1, "blurry"),
        VoteRequest(123456, first, 1, None),  # no such rater
        VoteRequest(rater, second, -1, "dark"),  # repeats the stored vote: no change
        VoteRequest(other, second, 1, None),
        VoteRequest(rater, second, 0, None),
    ]
    outcomes = store._commit_votes(batch)
    assert outcomes[0] == VoteRecord(rater, first, 1, 0, None, True)
    assert isinstance(outcomes[1], FeedbackError) and "does not exist" in str(outcomes[1])
    assert outcomes[2] == VoteRecord(rater, first, 0, 1, None, True)
    assert outcomes[3] == VoteRecord(rater, first, -1, 0, "blurry", True)
    assert isinstance(outcomes[4], FeedbackError) and "session is unknown" in str(outcomes[4])
    assert outcomes[5] == VoteRecord(rater, second, -1, -1, "dark", False)
    assert outcomes[6] == VoteRecord(other, second, 1, 0, None, True)
    assert outcomes[7] == VoteRecord(rater, second, 0, -1, None, True)

    rows = store.preference_rows()
    history = [(e.rater_id, e.image_id, e.value, e.comment) for e in rows.events]
    assert history == [
        (rater, second, -1, "dark"),
        (rater, first, 1, None),
        (rater, first, 0, None),
        (rater, first, -1, "blurry"),
        (other, second, 1, None),
        (rater, second, 0, None),
    ]
    current = {(v.rater_id, v.image_id): (v.value, v.comment) for v in rows.votes}
    assert current == {(rater, first): (-1, "blurry"), (other, second): (1, None)}


def test_votes_from_sixteen_threads_share_commits_and_all_land(
    store: FeedbackStore, images: tuple[int, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, image_ids = images
    raters = [store.rater(f"voter-{n}") for n in range(16)]
    sizes: list[int] = []
    commit = store._commit_votes

    def slow_commit(batch: list[VoteRequest]) -> list[VoteRecord | FeedbackError]:
        sizes.append(len(batch))
        time.sleep(0.005)  # a commit that takes a while, so that the others arrive meanwhile
        return commit(batch)

    monkeypatch.setattr(store._votes, "_run_batch", slow_commit)
    answers: dict[int, list[VoteRecord]] = {rater: [] for rater in raters}
    start = threading.Barrier(len(raters))

    def vote(rater: int) -> None:
        start.wait()
        for step in range(12):
            answers[rater].append(store.vote(rater, image_ids[step % 3], 1 if step % 2 else -1, f"step {step}"))

    threads = [threading.Thread(target=vote, args=(rater,)) for rater in raters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(sizes) == 16 * 12 and max(sizes) > 1  # every vote committed once; many shared a transaction
    rows = store.preference_rows()
    assert len(rows.events) == 16 * 12
    for rater in raters:
        assert [a.comment for a in answers[rater]] == [f"step {step}" for step in range(12)]
        mine = [(e.image_id, e.value, e.comment) for e in rows.events if e.rater_id == rater]
        assert mine == [(image_ids[s % 3], 1 if s % 2 else -1, f"step {s}") for s in range(12)]  # in order
        assert store.current_votes(rater, image_ids) == {image_ids[s % 3]: 1 if s % 2 else -1 for s in (9, 10, 11)}
