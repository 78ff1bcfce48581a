"""Alembic environment: runs on the connection that :mod:`feedback.migrate` hands over.

There is no ``alembic.ini``; use ``python -m feedback.migrate`` (or ``feedback.migrate.upgrade``),
which builds the configuration in code and passes an open connection in ``config.attributes``.
"""

from alembic import context
from sqlalchemy import Connection, text

from feedback.models import Base

# Any constant works; it only has to be the same for every process migrating this database.
POSTGRES_MIGRATION_LOCK = 0x5241_5048  # "RAPH"

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through feedback.migrate, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things in place
    compare_type=True,
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Two app processes starting at once must not both create the tables.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_MIGRATION_LOCK})
    context.run_migrations()
