"""Engines for SQLite and Postgres, set up so that concurrent writers never lose a vote.

SQLite: WAL lets readers run beside the one writer. ``synchronous=NORMAL`` (the default) survives a
process crash, ``kill -9`` included: a committed transaction is in the WAL file, which the operating
system writes out even if the process dies. Only a power loss or an OS crash can take the last
transactions before a checkpoint; ``FULL`` syncs the WAL on every commit and survives that too, at
the cost of one fsync per vote (hosts on hardware that may lose power choose it, ``--sqlite-synchronous
FULL``). ``busy_timeout`` makes a writer wait for the lock, with SQLite's own growing sleeps, instead
of failing; past it the store refuses with a sentence. A deferred
transaction that reads first and writes later can still fail at once with "database is locked"
(its snapshot went stale, and SQLite does not wait in that case), so transactions opened through
:func:`writer` start with ``BEGIN IMMEDIATE`` and take the write lock up front, where the busy
timeout applies. Postgres sessions run in UTC so that day buckets mean the same on both backends, and
wait for a row lock at most ``LOCK_TIMEOUT_MS`` as SQLite waits for its lock (then the store refuses).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

logger = logging.getLogger(__name__)

WRITE_OPTION = "feedback_write"
LOCK_TIMEOUT_MS = 5000  # how long a writer waits for another's lock, on both backends
SYNCHRONOUS_MODES = ("NORMAL", "FULL")  # SQLite's durability choices, above
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    f"PRAGMA busy_timeout={LOCK_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)


def make_engine(url: str | URL, synchronous: str = "NORMAL") -> Engine:
    """An engine for ``url``; a SQLite file's folder is created if missing. ``synchronous``: SQLite's mode."""
    if synchronous not in SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, not {synchronous!r}.")
    url = make_url(url)
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        options = f"-c timezone=UTC -c lock_timeout={LOCK_TIMEOUT_MS}"
        kwargs.update(connect_args={"options": options}, pool_pre_ping=True)
    elif (db_file := sqlite_file(url)) is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        pragmas = (*SQLITE_PRAGMAS, f"PRAGMA synchronous={synchronous}")
        event.listen(engine, "connect", lambda connection, _record: _sqlite_on_connect(connection, pragmas))
        event.listen(engine, "begin", _sqlite_on_begin)
    logger.debug("engine for %s", url.render_as_string(hide_password=True))
    return engine


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite URL; None for another backend or an in-memory database."""
    url = make_url(url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def writer(engine: Engine) -> Engine:
    """The same engine, but its transactions take SQLite's write lock when they begin."""
    return engine.execution_options(**{WRITE_OPTION: True})


def _sqlite_on_connect(dbapi_connection: Any, pragmas: tuple[str, ...]) -> None:
    # Hand BEGIN over to SQLAlchemy (see _sqlite_on_begin); pysqlite's own BEGIN is always deferred.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in pragmas:
        cursor.execute(pragma)
    cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
