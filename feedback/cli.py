"""Command-line options shared by the feedback CLIs: where the database is, and which feedback to read."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime

from feedback.engine import sqlite_file
from feedback.store import FeedbackStore


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--db`` and ``--image-dir``, defaulting to the app's own ``$RAPHAEL_DB`` / ``$RAPHAEL_IMAGE_DIR``."""
    parser.add_argument(
        "--db",
        default=os.environ.get("RAPHAEL_DB", "sqlite:///data/feedback.db"),
        help="SQLAlchemy URL of the feedback database (default: $RAPHAEL_DB or sqlite:///data/feedback.db)",
    )
    parser.add_argument(
        "--image-dir",
        default=os.environ.get("RAPHAEL_IMAGE_DIR", "data/images"),
        help="folder of the stored images (default: $RAPHAEL_IMAGE_DIR or data/images)",
    )


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--since`` and ``--until``, as :meth:`FeedbackStore.preference_rows` takes them."""
    parser.add_argument("--model", help="only images of this model: its name or full weights hash")
    parser.add_argument("--since", type=timestamp, help="only feedback from this time on (ISO; naive = UTC)")
    parser.add_argument("--until", type=timestamp, help="only feedback before this time (ISO; naive = UTC)")


def open_store(parser: argparse.ArgumentParser, args: argparse.Namespace) -> FeedbackStore:
    """The store at ``args.db``; a SQLite file that does not exist is a usage error, not a new database."""
    db_file = sqlite_file(args.db)
    if db_file is not None and not db_file.exists():
        parser.error(f"no database at {db_file}")
    return FeedbackStore(args.db, args.image_dir)


def timestamp(text: str) -> datetime:
    """An ISO date or time; a naive one is taken as UTC, like every timestamp in the store."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r} (try 2025-06-01T12:00)") from error
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
