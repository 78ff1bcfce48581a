"""Run the Alembic migrations from code, with no ``alembic.ini``.

``FeedbackStore`` upgrades to head when it starts; this module is also a small CLI for doing it by
hand::

    python -m feedback.migrate --url sqlite:///data/feedback.db upgrade
    python -m feedback.migrate --url postgresql+psycopg://postgres@127.0.0.1:5432/raphael downgrade base
    python -m feedback.migrate --url sqlite:///data/feedback.db revision -m "add x" --autogenerate
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

from feedback.engine import make_engine, writer

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Alembic keeps the running environment in module globals (alembic.context), so two threads of one
# process must not migrate at once. Separate processes are serialised by env.py's Postgres lock.
_ALEMBIC_LOCK = threading.Lock()


def alembic_config(connection: Connection) -> Config:
    """An Alembic config pointing at ``feedback/migrations`` that runs on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """Upgrade the database at ``target`` (a URL or an engine) to ``revision``."""
    _run(target, lambda config: command.upgrade(config, revision))


def downgrade(target: str | Engine, revision: str) -> None:
    """Downgrade the database at ``target`` (a URL or an engine) to ``revision`` (``base`` empties it)."""
    _run(target, lambda config: command.downgrade(config, revision))


def _run(target: str | Engine, action: Callable[[Config], object]) -> None:
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with _ALEMBIC_LOCK, writer(engine).connect() as connection:
            action(alembic_config(connection))
            if connection.in_transaction():
                connection.commit()
    finally:
        if isinstance(target, str):
            engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m feedback.migrate",
        description="Apply or inspect the feedback database migrations (Alembic, configured in code).",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("RAPHAEL_DB", "sqlite:///data/feedback.db"),
        help="SQLAlchemy database URL (default: $RAPHAEL_DB or sqlite:///data/feedback.db)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upgrade", help="upgrade to a revision (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    down = commands.add_parser("downgrade", help="downgrade to a revision ('base' drops every table)")
    down.add_argument("revision")
    commands.add_parser("current", help="print the database's current revision")
    commands.add_parser("history", help="list the revisions")
    rev = commands.add_parser("revision", help="write a new revision file into feedback/migrations/versions")
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--autogenerate", action="store_true", help="diff the models against the database")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    actions = {
        "upgrade": lambda config: command.upgrade(config, args.revision),
        "downgrade": lambda config: command.downgrade(config, args.revision),
        "current": lambda config: command.current(config, verbose=True),
        "history": lambda config: command.history(config),
        "revision": lambda config: command.revision(config, message=args.message, autogenerate=args.autogenerate),
    }
    _run(args.url, actions[args.command])


if __name__ == "__main__":
    main()
