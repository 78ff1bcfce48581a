"""The Alembic migrations themselves: up, all the way down, up again, and in step with the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from feedback import migrate
from feedback.engine import make_engine
from feedback.models import Base
from feedback.store import FeedbackStore

TABLES = {
    "raters", "generations", "images", "votes", "vote_events", "comparisons",
    "campaigns", "campaign_items", "campaign_answers", "arena_battles", "alembic_version",
}  # fmt: skip
HEAD = "0006"


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
    assert tables(db_url) == TABLES and current_revision(db_url) == HEAD
    migrate.downgrade(db_url, "base")
    assert tables(db_url) == {"alembic_version"} and current_revision(db_url) is None
    migrate.upgrade(db_url)
    assert tables(db_url) == TABLES and current_revision(db_url) == HEAD


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


def test_rows_from_before_model_prompt_keep_their_caption(db_url: str, tmp_path: Path) -> None:
    """0002 adds generations.model_prompt; a generation stored at 0001 still exports what it was generated from."""
    migrate.upgrade(db_url, "0001")
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO raters (id, anon_id) VALUES (1, 'old')"))
            connection.execute(
                text(
                    "INSERT INTO generations (id, rater_id, prompt, enhanced_prompt, seed, steps, cfg, sampler, "
                    "width, height, model_name, model_hash, app_version, extra) VALUES ('g', 1, 'a cat', "
                    "'a cat, pixel art', 1, 2, 3.0, 'ddim', 32, 32, 'm', 'h', '0', '{}')"
                )
            )
            connection.execute(
                text("INSERT INTO images (id, generation_id, batch_index, sha256, path, width, height) "
                     "VALUES ('i', 'g', 0, 's', 'p.png', 32, 32)")
            )  # fmt: skip
    finally:
        engine.dispose()
    migrate.upgrade(db_url)
    assert current_revision(db_url) == HEAD
    with FeedbackStore(db_url, tmp_path / "images") as store:
        store.vote(1, "i", 1)
        rows = store.preference_rows()
    assert rows.images["i"].provenance["model_prompt"] is None
    assert rows.images["i"].caption == "a cat, pixel art"


def test_ip_hashes_under_the_old_permanent_salt_are_cleared(db_url: str) -> None:
    """0005 drops the hashes made under a permanent salt (now the install secret), which stayed reversible."""
    migrate.upgrade(db_url, "0004")
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            rows = "(1, 'a', 'ab12'), (2, 'b', NULL)"
            connection.execute(text(f"INSERT INTO raters (id, anon_id, ip_hash) VALUES {rows}"))
        migrate.upgrade(db_url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM raters WHERE ip_hash IS NOT NULL")).scalar() == 0
            assert connection.execute(text("SELECT count(*) FROM raters")).scalar() == 2
    finally:
        engine.dispose()


def test_cli_upgrade_and_downgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    migrate.main(["--url", url, "upgrade"])
    assert tables(url) == TABLES
    migrate.main(["--url", url, "downgrade", "base"])
    assert tables(url) == {"alembic_version"}
