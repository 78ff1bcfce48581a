"""Initial schema: raters, generations, images, votes, vote history, comparisons.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "raters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("anon_id", sa.String(length=128), nullable=False),
        sa.Column("ip_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raters")),
        sa.UniqueConstraint("anon_id", name=op.f("uq_raters_anon_id")),
    )
    op.create_table(
        "generations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("enhanced_prompt", sa.Text(), nullable=True),
        sa.Column("negative_prompt", sa.Text(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("cfg", sa.Float(), nullable=False),
        sa.Column("sampler", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_hash", sa.String(length=128), nullable=False),
        sa.Column("app_version", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rater_id"], ["raters.id"], name=op.f("fk_generations_rater_id_raters"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generations")),
    )
    op.create_index("ix_generations_category", "generations", ["category"])
    op.create_index("ix_generations_created_at", "generations", ["created_at"])
    op.create_index("ix_generations_model", "generations", ["model_name", "model_hash"])
    op.create_table(
        "images",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("generation_id", sa.String(length=36), nullable=False),
        sa.Column("batch_index", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["generation_id"], ["generations.id"], name=op.f("fk_images_generation_id_generations"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("generation_id", "batch_index", name=op.f("uq_images_generation_id_batch_index")),
    )
    op.create_index("ix_images_sha256", "images", ["sha256"])
    op.create_table(
        "votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("value", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("value IN (-1, 1)", name=op.f("ck_votes_value")),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name=op.f("fk_votes_image_id_images"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"], name=op.f("fk_votes_rater_id_raters"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_votes")),
        sa.UniqueConstraint("rater_id", "image_id", name=op.f("uq_votes_rater_id_image_id")),
    )
    op.create_index("ix_votes_image_id", "votes", ["image_id"])
    op.create_index("ix_votes_updated_at", "votes", ["updated_at"])
    op.create_table(
        "vote_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("value", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("value IN (-1, 0, 1)", name=op.f("ck_vote_events_value")),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_vote_events_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["rater_id"], ["raters.id"], name=op.f("fk_vote_events_rater_id_raters"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vote_events")),
    )
    op.create_index("ix_vote_events_created_at", "vote_events", ["created_at"])
    op.create_index("ix_vote_events_rater_image", "vote_events", ["rater_id", "image_id"])
    op.create_table(
        "comparisons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("left_image_id", sa.String(length=36), nullable=False),
        sa.Column("right_image_id", sa.String(length=36), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("left_image_id <> right_image_id", name=op.f("ck_comparisons_distinct_images")),
        sa.CheckConstraint("outcome IN ('left', 'right', 'tie', 'both_bad')", name=op.f("ck_comparisons_outcome")),
        sa.ForeignKeyConstraint(
            ["left_image_id"], ["images.id"], name=op.f("fk_comparisons_left_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["right_image_id"], ["images.id"], name=op.f("fk_comparisons_right_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["rater_id"], ["raters.id"], name=op.f("fk_comparisons_rater_id_raters"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comparisons")),
    )
    op.create_index("ix_comparisons_created_at", "comparisons", ["created_at"])
    op.create_index("ix_comparisons_rater_id", "comparisons", ["rater_id"])


def downgrade() -> None:
    op.drop_table("comparisons")
    op.drop_table("vote_events")
    op.drop_table("votes")
    op.drop_table("images")
    op.drop_table("generations")
    op.drop_table("raters")
