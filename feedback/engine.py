"""Engines for SQLite and Postgres, set up so that concurrent writers never lose a vote.

SQLite: WAL lets readers run beside the one writer; ``synchronous=NORMAL`` survives a process
crash; ``busy_timeout`` makes a writer wait for the lock instead of failing. A deferred
transaction that reads first and writes later can still fail at once with "database is locked"
(its snapshot went stale, and SQLite does not wait in that case), so transactions opened through
:func:`writer` start with ``BEGIN IMMEDIATE`` and take the write lock up front, where the busy
timeout applies. Postgres sessions run in UTC so that day buckets mean the same on both backends.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

logger = logging.getLogger(__name__)

WRITE_OPTION = "feedback_write"
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
)


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created if missing."""
    url = make_url(url)
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        kwargs.update(connect_args={"options": "-c timezone=UTC"}, pool_pre_ping=True)
    elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    logger.debug("engine for %s", url.render_as_string(hide_password=True))
    return engine


def writer(engine: Engine) -> Engine:
    """The same engine, but its transactions take SQLite's write lock when they begin."""
    return engine.execution_options(**{WRITE_OPTION: True})


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Hand BEGIN over to SQLAlchemy (see _sqlite_on_begin); pysqlite's own BEGIN is always deferred.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
