"""Rating campaigns: their items (single images or pairs, some gold) and each rater's answers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported, so this revision keeps creating what it created when models.py moves on.
_ANSWERS = "('1', '-1', 'left', 'tie', 'both_bad', 'right')"


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("guidelines", sa.Text(), nullable=False),
        sa.Column("answers_wanted", sa.Integer(), nullable=False),
        sa.Column("gold_rate", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('vote', 'pair')", name=op.f("ck_campaigns_kind")),
        sa.CheckConstraint("answers_wanted BETWEEN 1 AND 50", name=op.f("ck_campaigns_answers_wanted")),
        sa.CheckConstraint("gold_rate >= 0 AND gold_rate < 1", name=op.f("ck_campaigns_gold_rate")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("name", name=op.f("uq_campaigns_name")),
    )
    op.create_table(
        "campaign_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=True),
        sa.Column("left_image_id", sa.String(length=36), nullable=True),
        sa.Column("right_image_id", sa.String(length=36), nullable=True),
        sa.Column("gold_answer", sa.String(length=16), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "(image_id IS NOT NULL AND left_image_id IS NULL AND right_image_id IS NULL) OR "
            "(image_id IS NULL AND left_image_id IS NOT NULL AND right_image_id IS NOT NULL "
            "AND left_image_id <> right_image_id)",
            name=op.f("ck_campaign_items_images"),
        ),
        sa.CheckConstraint(f"gold_answer IN {_ANSWERS}", name=op.f("ck_campaign_items_gold_answer")),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_items_campaign_id_campaigns"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_campaign_items_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["left_image_id"], ["images.id"], name=op.f("fk_campaign_items_left_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["right_image_id"], ["images.id"], name=op.f("fk_campaign_items_right_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_items")),
        sa.UniqueConstraint("campaign_id", "position", name=op.f("uq_campaign_items_campaign_id_position")),
    )
    op.create_table(
        "campaign_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("answer", sa.String(length=16), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(f"answer IN {_ANSWERS}", name=op.f("ck_campaign_answers_answer")),
        sa.CheckConstraint("seconds >= 0", name=op.f("ck_campaign_answers_seconds")),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_answers_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["campaign_items.id"],
            name=op.f("fk_campaign_answers_item_id_campaign_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rater_id"], ["raters.id"], name=op.f("fk_campaign_answers_rater_id_raters"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_answers")),
        sa.UniqueConstraint("item_id", "rater_id", name=op.f("uq_campaign_answers_item_id_rater_id")),
    )
    op.create_index("ix_campaign_answers_campaign_rater", "campaign_answers", ["campaign_id", "rater_id"])


def downgrade() -> None:
    op.drop_table("campaign_answers")
    op.drop_table("campaign_items")
    op.drop_table("campaigns")
