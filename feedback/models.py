"""SQLAlchemy 2.0 ORM for raters, generations, images, votes, pairwise comparisons, rating campaigns and arena
battles.

Timestamps are stored as UTC and come back timezone-aware on every backend, so filters and
dashboards never mix naive and aware datetimes. Constraint names follow one naming convention so
that Alembic batch migrations on SQLite can address them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The answers of a pairwise judgement, in the order the page lays out their buttons.
COMPARISON_OUTCOMES = ("left", "tie", "both_bad", "right")
VOTE_VALUES = (1, -1)  # 👍, 👎; an undo (0) deletes the vote and lives on in the vote history only
MAX_COMMENT_CHARS = 500
MAX_ACCOUNT_CHARS = 128

# Rating campaigns: a vote item is one image (👍 "1" / 👎 "-1"), a pair item two images judged side by side.
CAMPAIGN_KINDS = ("vote", "pair")
VOTE_ANSWERS = tuple(str(value) for value in VOTE_VALUES)  # a campaign stores every answer as text
CAMPAIGN_ANSWERS = {"vote": VOTE_ANSWERS, "pair": COMPARISON_OUTCOMES}
MAX_CAMPAIGN_NAME_CHARS = 128
MAX_ANSWERS_WANTED = 50  # k, the answers wanted per item


def _one_of(column: str, values: tuple[object, ...]) -> str:
    """SQL for a CHECK that ``column`` holds one of ``values``."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is written as UTC and always read back timezone-aware.

    SQLite has no time zones and hands back naive values (``CURRENT_TIMESTAMP`` is UTC); Postgres
    stores ``timestamptz``. Normalising here keeps every caller on aware UTC datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Rater(Base):
    """A person rating images, known by an anonymous browser id, a keyed IP hash kept for a while, and the account
    they signed in with where the host offers sign-in."""

    __tablename__ = "raters"

    id: Mapped[int] = mapped_column(primary_key=True)
    anon_id: Mapped[str] = mapped_column(String(128), unique=True)
    ip_hash: Mapped[str | None] = mapped_column(String(64))
    account: Mapped[str | None] = mapped_column(String(MAX_ACCOUNT_CHARS))  # e.g. "hf:alice"; None: not signed in
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Generation(Base):
    """One call of the pipeline with its full provenance, so every image can be reproduced."""

    __tablename__ = "generations"
    __table_args__ = (
        Index("ix_generations_model", "model_name", "model_hash"),
        Index("ix_generations_category", "category"),
        Index("ix_generations_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rater_id: Mapped[int | None] = mapped_column(ForeignKey("raters.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    prompt: Mapped[str] = mapped_column(Text)
    enhanced_prompt: Mapped[str | None] = mapped_column(Text)
    model_prompt: Mapped[str | None] = mapped_column(Text)  # what the model read; None on rows from before 0002
    negative_prompt: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    steps: Mapped[int] = mapped_column(Integer)
    cfg: Mapped[float] = mapped_column(Float)
    sampler: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(128))
    model_hash: Mapped[str] = mapped_column(String(128))
    app_version: Mapped[str] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(64))
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)

    images: Mapped[list[Image]] = relationship(back_populates="generation", order_by="Image.batch_index")


class Image(Base):
    """One image of a generation; the file is content-addressed by its PNG's sha256."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("generation_id", "batch_index"),
        Index("ix_images_sha256", "sha256"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    generation_id: Mapped[str] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    batch_index: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(255))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)

    generation: Mapped[Generation] = relationship(back_populates="images")


class Vote(Base):
    """A rater's current 👍 (+1) or 👎 (-1) on an image; undoing a vote deletes this row."""

    __tablename__ = "votes"
    __table_args__ = (
        UniqueConstraint("rater_id", "image_id"),
        CheckConstraint(_one_of("value", VOTE_VALUES), name="value"),
        Index("ix_votes_image_id", "image_id"),
        Index("ix_votes_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"))
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    value: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class VoteEvent(Base):
    """Append-only history of every vote change; ``value`` 0 records an undo."""

    __tablename__ = "vote_events"
    __table_args__ = (
        CheckConstraint(_one_of("value", (*VOTE_VALUES, 0)), name="value"),
        Index("ix_vote_events_rater_image", "rater_id", "image_id"),
        Index("ix_vote_events_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"))
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    value: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Comparison(Base):
    """A rater's judgement of two images side by side."""

    __tablename__ = "comparisons"
    __table_args__ = (
        CheckConstraint(_one_of("outcome", COMPARISON_OUTCOMES), name="outcome"),
        CheckConstraint("left_image_id <> right_image_id", name="distinct_images"),
        Index("ix_comparisons_rater_id", "rater_id"),
        Index("ix_comparisons_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"))
    left_image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    right_image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Campaign(Base):
    """A named set of pre-generated items that raters answer under one set of guidelines, k answers per item."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(_one_of("kind", CAMPAIGN_KINDS), name="kind"),
        CheckConstraint(f"answers_wanted BETWEEN 1 AND {MAX_ANSWERS_WANTED}", name="answers_wanted"),
        CheckConstraint("gold_rate >= 0 AND gold_rate < 1", name="gold_rate"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_CAMPAIGN_NAME_CHARS), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    guidelines: Mapped[str] = mapped_column(Text)  # markdown shown to raters
    answers_wanted: Mapped[int] = mapped_column(Integer)
    gold_rate: Mapped[float] = mapped_column(Float)  # chance that the next item served is a gold item
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    closed_at: Mapped[datetime | None] = mapped_column()


class CampaignItem(Base):
    """One image (vote campaign) or two images (pair campaign); a gold item carries its known answer."""

    __tablename__ = "campaign_items"
    __table_args__ = (
        UniqueConstraint("campaign_id", "position"),
        CheckConstraint(
            "(image_id IS NOT NULL AND left_image_id IS NULL AND right_image_id IS NULL) OR "
            "(image_id IS NULL AND left_image_id IS NOT NULL AND right_image_id IS NOT NULL "
            "AND left_image_id <> right_image_id)",
            name="images",
        ),
        CheckConstraint(_one_of("gold_answer", (*VOTE_ANSWERS, *COMPARISON_OUTCOMES)), name="gold_answer"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    image_id: Mapped[str | None] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    left_image_id: Mapped[str | None] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    right_image_id: Mapped[str | None] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    gold_answer: Mapped[str | None] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer)


class CampaignAnswer(Base):
    """A rater's one answer to a campaign item, with the time they took; it is also stored as a vote or comparison."""

    __tablename__ = "campaign_answers"
    __table_args__ = (
        UniqueConstraint("item_id", "rater_id"),
        CheckConstraint(_one_of("answer", (*VOTE_ANSWERS, *COMPARISON_OUTCOMES)), name="answer"),
        CheckConstraint("seconds >= 0", name="seconds"),
        Index("ix_campaign_answers_campaign_rater", "campaign_id", "rater_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("campaign_items.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"))
    answer: Mapped[str] = mapped_column(String(16))
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ArenaBattle(Base):
    """Two model versions' images of one prompt, seed and settings, shown anonymously; judged once by its rater.

    The battle is stored when it is shown (so a judgement can name what was on screen) and judged later; the
    judgement is also a comparison, so exports and agreement see it with each image's model version.
    """

    __tablename__ = "arena_battles"
    __table_args__ = (
        CheckConstraint("left_image_id <> right_image_id", name="distinct_images"),
        Index("ix_arena_battles_rater_id", "rater_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"))
    left_image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    right_image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    comparison_id: Mapped[int | None] = mapped_column(ForeignKey("comparisons.id", ondelete="SET NULL"), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
