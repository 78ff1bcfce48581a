"""Timing work that runs in several threads at once, as a server's request threads do."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def run_together(work: Callable[[int], None], count: int) -> float:
    """Run ``work(i)`` for i < ``count`` in as many threads, released together; the seconds from their release
    until the last one ends."""
    start = threading.Barrier(count + 1)

    def run(index: int) -> None:
        start.wait()
        work(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began
