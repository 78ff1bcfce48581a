"""A run's JSON-lines records, one row per step: ``log.jsonl`` (losses) and the checkpoints' scores beside it.

A killed run has often logged steps its last checkpoint never saw. Whatever reads the records on behalf of that
checkpoint (the resumed run, a bundle's compute summary, a snapshot) keeps the rows up to the checkpoint's step.
"""

from __future__ import annotations

import json
from pathlib import Path

RUN_LOG = "log.jsonl"


def log_rows(path: Path, step: float) -> list[dict]:
    """The rows of the records at ``path`` up to and including ``step``; none when the run has not written them yet."""
    if not path.exists():
        return []
    return [row for row in map(json.loads, path.read_text().splitlines()) if row["step"] <= step]


def write_log(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` as the run itself does, one JSON object per line."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
