"""Arena battles: two model versions' images shown anonymously to one rater, and the comparison that judged them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "arena_battles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("left_image_id", sa.String(length=36), nullable=False),
        sa.Column("right_image_id", sa.String(length=36), nullable=False),
        sa.Column("comparison_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("left_image_id <> right_image_id", name=op.f("ck_arena_battles_distinct_images")),
        sa.ForeignKeyConstraint(
            ["rater_id"], ["raters.id"], name=op.f("fk_arena_battles_rater_id_raters"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["left_image_id"], ["images.id"], name=op.f("fk_arena_battles_left_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["right_image_id"], ["images.id"], name=op.f("fk_arena_battles_right_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["comparison_id"],
            ["comparisons.id"],
            name=op.f("fk_arena_battles_comparison_id_comparisons"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_arena_battles")),
        sa.UniqueConstraint("comparison_id", name=op.f("uq_arena_battles_comparison_id")),
    )
    op.create_index("ix_arena_battles_rater_id", "arena_battles", ["rater_id"])


def downgrade() -> None:
    op.drop_table("arena_battles")
