"""The Alembic migrations themselves: up, all the way down, up again, and in step with the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from feedback import migrate
from feedback.engine import make_engine
from feedback.models import Base
from feedback.store import FeedbackStore

TABLES = {"raters", "generations", "images", "votes", "vote_events", "comparisons", "alembic_version"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    return request.getfixturevalue("fresh_postgres_url")


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    migrate.upgrade(db_url)
    assert tables(db_url) == TABLES and current_revision(db_url) == "0001"
    migrate.downgrade(db_url, "base")
    assert tables(db_url) == {"alembic_version"} and current_revision(db_url) is None
    migrate.upgrade(db_url)
    assert tables(db_url) == TABLES and current_revision(db_url) == "0001"


def test_migrations_match_the_models(db_url: str) -> None:
    """The hand-written revisions create exactly what models.py declares."""
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_store_starts_on_a_migrated_database_and_keeps_data(db_url: str, tmp_path: Path) -> None:
    with FeedbackStore(db_url, tmp_path / "images") as store:
        rater = store.rater("kept")
    migrate.upgrade(db_url)  # already at head: nothing to do
    with FeedbackStore(db_url, tmp_path / "images") as store:
        assert store.rater("kept") == rater


def test_cli_upgrade_and_downgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    migrate.main(["--url", url, "upgrade"])
    assert tables(url) == TABLES
    migrate.main(["--url", url, "downgrade", "base"])
    assert tables(url) == {"alembic_version"}
