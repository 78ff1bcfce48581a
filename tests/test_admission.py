"""Admission: a bounded line, a fair share per address, and a wait that is said (the generation service runs the
model once at a time: tests/test_generation.py)."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from app.admission import Admission, ModelBusy


@contextmanager
def running(admission: Admission, ip: str, cost: int) -> Iterator[None]:
    """A run of ``cost`` image-steps holding the model in another thread until the block ends."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        with admission.slot(ip, cost):
            started.set()
            release.wait(5)

    runner = threading.Thread(target=hold)
    runner.start()
    assert started.wait(5)
    try:
        yield
    finally:
        release.set()
        runner.join(5)


def test_the_line_is_bounded_and_a_request_is_told_who_is_ahead() -> None:
    admission = Admission(max_waiting=2, max_per_ip=2)
    ahead: list[int] = []
    second_in, release_second = threading.Event(), threading.Event()

    def second() -> None:
        with admission.slot("10.0.0.2", 50, on_wait=ahead.append):
            second_in.set()
            release_second.wait(5)

    with running(admission, "10.0.0.1", 100):
        waiting = threading.Thread(target=second)
        waiting.start()
        assert second_in.wait(5) and ahead == [1]  # admitted, and told that one request is ahead
        with pytest.raises(ModelBusy, match=r"The model is busy with 2 requests; please try again in about \d+ s\."):
            with admission.slot("10.0.0.3", 10):
                pass
        release_second.set()
        waiting.join(5)
    assert admission.admitted == 0


def test_one_address_gets_a_fair_share() -> None:
    admission = Admission(max_waiting=8, max_per_ip=1)
    with running(admission, "10.0.0.1", 20):
        with pytest.raises(ModelBusy, match="You already have 1 request waiting for the model"):
            with admission.slot("10.0.0.1", 20):
                pass
    with admission.slot("10.0.0.1", 20):  # its run is over: it may ask again
        assert admission.admitted == 1


def test_a_failed_run_leaves_the_line() -> None:
    admission = Admission(max_waiting=1, max_per_ip=1)
    with pytest.raises(RuntimeError):
        with admission.slot("10.0.0.1", 10):
            raise RuntimeError("the model failed")
    assert admission.admitted == 0
    with admission.slot("10.0.0.1", 10):
        pass


def test_the_wait_follows_the_measured_pace() -> None:
    admission = Admission(max_waiting=1, max_per_ip=1)
    admission.ran(0.2, 10)  # a model run measured at 0.02 s per image-step
    with running(admission, "10.0.0.1", 1000):
        with pytest.raises(ModelBusy) as busy:
            with admission.slot("10.0.0.2", 10):
                pass
    seconds = int(str(busy.value).split("about ")[1].split(" s")[0])
    assert 20 <= seconds <= 60  # 1,000 image-steps ahead at roughly 0.02-0.05 s each
