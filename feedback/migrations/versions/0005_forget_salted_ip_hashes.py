"""Clear the IP hashes stored before the daily IP key.

Earlier versions hashed addresses under one permanent salt, which is now the install secret (kept so that
rater ids stay the same): whoever holds the keys folder could still reverse those hashes by hashing every IPv4
address. Hashes are now keyed by a key that is replaced every UTC day, so the old ones are dropped rather than
kept reversible. There is no way back: the downgrade leaves them cleared.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE raters SET ip_hash = NULL WHERE ip_hash IS NOT NULL")


def downgrade() -> None:
    """Cleared hashes stay cleared."""
