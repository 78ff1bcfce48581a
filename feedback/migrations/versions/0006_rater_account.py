"""Raters keep the account they signed in with, where the host offers sign-in.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("raters") as batch:
        batch.add_column(sa.Column("account", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("raters") as batch:
        batch.drop_column("account")
