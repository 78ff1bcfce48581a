"""Admission control for the model: a bounded line of waiting requests, a fair share per address.

Gradio's queue is shared by every event, so a client that queues a hundred generations would make
everyone's votes wait behind them and then be refused as "queue full". Instead the model's events
leave Gradio's queue at once and wait here, where the line is short and bounded: a request past
the global or per-address bound is told at once how long the wait is, in one friendly sentence,
and votes never queue behind the model at all.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from app.guard import InvalidInput
from app.messages import plural

log = logging.getLogger(__name__)

FIRST_GUESS_S_PER_IMAGE_STEP = 0.05  # until the first run is timed: RAPHAEL-tiny on two CPU cores
_EMA = 0.2  # weight of the newest run in the seconds-per-image-step estimate


class ModelBusy(InvalidInput):
    """The model's line is full (for everyone, or for this address); the message says when to try again."""


class Admission:
    """Admits at most ``max_waiting`` requests for the model (running or waiting) and at most ``max_per_ip`` of them
    from one address. Cost is in image-steps (steps × images), which sets the wait."""

    def __init__(self, max_waiting: int, max_per_ip: int) -> None:
        self.max_waiting = max_waiting
        self.max_per_ip = max_per_ip
        self._lock = threading.Lock()
        self._admitted: Counter[str] = Counter()
        self._cost_admitted = 0
        self._s_per_image_step = FIRST_GUESS_S_PER_IMAGE_STEP
        self.last_run_failed: bool | None = None  # None before the first run; the health check reads it

    @property
    def admitted(self) -> int:
        """Runs admitted now: the one running and those waiting for it."""
        with self._lock:
            return sum(self._admitted.values())

    @property
    def seconds_per_image_step(self) -> float:
        """The measured pace of the model (an average over recent runs), which sets the waits it announces."""
        with self._lock:
            return self._s_per_image_step

    def _admit(self, ip: str, cost: int) -> int:
        """Count the run in, or raise ModelBusy; returns the number of runs ahead of it."""
        with self._lock:
            ahead = sum(self._admitted.values())
            wait = max(1, math.ceil(self._cost_admitted * self._s_per_image_step))
            if ahead >= self.max_waiting:
                raise ModelBusy(
                    f"The model is busy with {ahead} request{plural(ahead)}; please try again in about {wait} s."
                )
            if (mine := self._admitted[ip]) >= self.max_per_ip:
                raise ModelBusy(
                    f"You already have {mine} request{plural(mine)} waiting for the model; "
                    f"please try again in about {wait} s."
                )
            self._admitted[ip] += 1
            self._cost_admitted += cost
            return ahead

    def _leave(self, ip: str, cost: int) -> None:
        with self._lock:
            self._admitted[ip] -= 1
            if self._admitted[ip] <= 0:
                del self._admitted[ip]
            self._cost_admitted -= cost

    @contextmanager
    def slot(self, ip: str | None, cost: int, on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
        """Count one request of ``cost`` image-steps in while it waits for and shares a model run (the generation
        service runs the model once at a time, drawing alike requests together); ``on_wait(ahead)`` is called when
        others are ahead. A run that fails with a fault (not a sentence for the user) marks the model unhealthy."""
        key = ip or "unknown"
        ahead = self._admit(key, cost)
        try:
            if ahead and on_wait is not None:
                on_wait(ahead)
            try:
                yield
            except ValueError:  # a sentence for the user (busy database, bad input): not the model's fault
                raise
            except Exception:
                self.last_run_failed = True
                raise
        finally:
            self._leave(key, cost)

    def ran(self, seconds: float, image_steps: int) -> None:
        """A model run of ``image_steps`` (steps × every image it drew, for all the requests it shared) took
        ``seconds``: the pace that sets the waits announced next."""
        with self._lock:
            self.last_run_failed = False
            self._s_per_image_step += _EMA * (seconds / max(image_steps, 1) - self._s_per_image_step)
