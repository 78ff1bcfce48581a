"""Batches: jobs that arrive together share a batch, each caller gets its own answer after its batch."""

import threading
import time

import pytest

from feedback.batches import Batches


class Recorder:
    """A commit_batch that remembers its batches, can be held open, and refuses odd numbers."""

    def __init__(self, hold_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.hold_s = hold_s
        self.lock = threading.Lock()
        self.active = 0
        self.most_active = 0

    def __call__(self, batch: list[int]) -> list[int | BaseException]:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(self.hold_s)
        with self.lock:
            self.batches.append(list(batch))
            self.active -= 1
        return [ValueError(f"{n} is odd") if n % 2 else n * 10 for n in batch]


def submit_all(group: Batches, items: list[int]) -> dict[int, object]:
    answers: dict[int, object] = {}

    def run(n: int) -> None:
        try:
            answers[n] = group.submit(n)
        except ValueError as err:
            answers[n] = str(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a caller never got its answer"
    return answers


def test_alone_a_caller_commits_its_own_item_at_once() -> None:
    recorder = Recorder()
    group = Batches(recorder, max_size=8)
    assert group.submit(4) == 40
    with pytest.raises(ValueError, match="3 is odd"):
        group.submit(3)
    assert recorder.batches == [[4], [3]]


def test_items_that_arrive_during_a_commit_go_together_and_each_gets_its_own_answer() -> None:
    recorder = Recorder(hold_s=0.05)
    group = Batches(recorder, max_size=100)
    answers = submit_all(group, list(range(64)))
    assert answers == {n: f"{n} is odd" if n % 2 else n * 10 for n in range(64)}
    assert sorted(n for batch in recorder.batches for n in batch) == list(range(64))  # each item exactly once
    assert len(recorder.batches) < 64 / 4  # most rode along with others
    assert recorder.most_active == 1  # one batch at a time


def test_batches_never_exceed_max_size() -> None:
    recorder = Recorder(hold_s=0.02)
    group = Batches(recorder, max_size=5)
    submit_all(group, list(range(40)))
    assert max(len(batch) for batch in recorder.batches) <= 5
    assert sorted(n for batch in recorder.batches for n in batch) == list(range(40))


def test_a_failing_batch_is_every_items_answer_and_the_next_batch_still_runs() -> None:
    calls = []

    def commit(batch: list[int]) -> list[int]:
        calls.append(batch)
        if len(calls) == 1:
            raise RuntimeError("database fault")
        return batch

    group = Batches(commit, max_size=8)
    with pytest.raises(RuntimeError, match="database fault"):
        group.submit(1)
    assert group.submit(2) == 2


def test_a_batch_answer_of_the_wrong_length_is_a_fault_not_a_silent_loss() -> None:
    group = Batches(lambda batch: batch[:-1], max_size=8)
    with pytest.raises(RuntimeError, match="answered 0 jobs of 1"):
        group.submit(1)


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Batches(lambda batch: batch, max_size=0)


def test_only_jobs_of_one_key_share_a_batch_and_sizes_fill_it_in_arrival_order() -> None:
    batches: list[list[tuple[str, int]]] = []
    release = threading.Event()

    def run(batch: list[tuple[str, int]]) -> list[str]:
        if not batches:
            release.wait(5)  # the first batch holds the lead while the others queue up
        batches.append(batch)
        return [f"{key}{n}" for key, n in batch]

    group = Batches(run, max_size=8, key=lambda job: job[0], size=lambda job: job[1])
    jobs = [("a", 1), ("a", 4), ("b", 2), ("a", 3), ("a", 2), ("b", 8), ("a", 9)]
    answers: dict[tuple[str, int], str] = {}
    first = threading.Thread(target=lambda: answers.setdefault(jobs[0], group.submit(jobs[0])))
    first.start()
    time.sleep(0.05)
    others = [threading.Thread(target=lambda j=j: answers.setdefault(j, group.submit(j))) for j in jobs[1:]]
    for thread in others:
        thread.start()
        time.sleep(0.02)  # arrive in order
    release.set()
    for thread in [first, *others]:
        thread.join(timeout=10)
    assert answers == {job: f"{job[0]}{job[1]}" for job in jobs}
    assert batches == [
        [("a", 1)],
        [("a", 4), ("a", 3)],  # the oldest waiting job leads; ("a", 2) no longer fits beside them
        [("b", 2)],  # ("b", 8) does not fit beside it
        [("a", 2)],
        [("b", 8)],
        [("a", 9)],  # larger than a batch: alone
    ]
