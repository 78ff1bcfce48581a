"""Batches: work that arrives while a batch runs goes together in the next one.

Two places in the demo do many small, alike pieces of work one at a time. Each vote is a tiny write, and
a transaction of one vote costs the same begin, lock and commit as one of a hundred (the store's group
commit). Each generation of one image costs a denoising loop that runs nearly as fast for eight images
(the generation service's shared runs). Callers call :meth:`Batches.submit` and block until their job's
batch has run, so a vote is still acknowledged only after its commit and a generation returns its own
images. There is no thread of its own: the first caller to find nobody running leads. It takes the oldest
waiting job and every later one of the same ``key`` that still fits ``max_size`` (sizes from ``size``),
runs them with ``run_batch`` and wakes their callers; if jobs are still waiting, the oldest of their
callers leads the next batch. Alone, a caller runs its own job at once, so a quiet server adds no wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class _Slot(Generic[T, R]):
    job: T
    key: Hashable
    size: int
    wake: threading.Event = field(default_factory=threading.Event)
    leads: bool = False  # woken to run the next batch, not with a result
    done: bool = False
    result: R | None = None
    error: BaseException | None = None


class Batches(Generic[T, R]):
    """Runs jobs in batches through ``run_batch``, which returns one result or exception per job, in order (an
    exception it raises is every job's answer). Jobs of different ``key`` never share a batch; a batch holds at
    most ``max_size`` (a job larger than that runs alone)."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R | BaseException]],
        max_size: int,
        key: Callable[[T], Hashable] = lambda _job: None,
        size: Callable[[T], int] = lambda _job: 1,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be 1 or more, not {max_size}.")
        self._run_batch = run_batch
        self.max_size = max_size
        self._key = key
        self._size = size
        self._lock = threading.Lock()
        self._waiting: list[_Slot[T, R]] = []
        self._leading = False

    def submit(self, job: T) -> R:
        """Run ``job`` (with whatever else is waiting and fits) and return its result, or raise its exception."""
        slot: _Slot[T, R] = _Slot(job, self._key(job), self._size(job))
        with self._lock:
            self._waiting.append(slot)
            if not self._leading:
                self._leading = slot.leads = True
        while not slot.done:
            if slot.leads:
                slot.leads = False
                self._lead()
            else:
                slot.wake.wait()
                slot.wake.clear()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _take(self) -> list[_Slot[T, R]]:
        """The oldest waiting job and the later ones of its key that fit beside it; called under the lock."""
        first, *rest = self._waiting
        batch, room, left = [first], self.max_size - first.size, []
        for slot in rest:
            if slot.key == first.key and slot.size <= room:
                batch.append(slot)
                room -= slot.size
            else:
                left.append(slot)
        self._waiting = left
        return batch

    def _lead(self) -> None:
        """Run one batch, then hand the lead to the oldest waiting caller, or give it up."""
        with self._lock:
            batch = self._take()
        try:
            outcomes: Sequence[R | BaseException] = self._run_batch([slot.job for slot in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"run_batch answered {len(outcomes)} jobs of {len(batch)}")
        except BaseException as error:  # noqa: BLE001 - it is every job's answer, raised in each caller
            outcomes = [error] * len(batch)
        for slot, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                slot.error = outcome
            else:
                slot.result = outcome
            slot.done = True
            slot.wake.set()
        with self._lock:
            if self._waiting:
                successor = self._waiting[0]
                successor.leads = True
                successor.wake.set()
            else:
                self._leading = False
