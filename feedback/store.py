"""FeedbackStore: the one place that reads and writes the feedback database.

The app records each generation with its provenance, then votes (👍 +1, 👎 -1, 0 = take back)
and side-by-side comparisons. A rater has at most one current vote per image (``votes``); every
change to it is also appended to ``vote_events``, so nothing a rater ever said is lost.
Exports read through :meth:`FeedbackStore.preference_rows`.

A rater has one comparison per pair of images too: judging the same two images again, in either
order, replaces the outcome of the earlier row.

Rating campaigns (:mod:`feedback.campaigns`) serve pre-generated items to raters, fewest answers
first, with gold items mixed in; each answer is also stored as the vote or comparison it is.

Every refusal the person who clicked can act on is a :class:`FeedbackError` (a ValueError, whose
message the app shows): bad input, but also a database too busy to take the write and an image
folder the server cannot write to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import random
import sqlite3
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from PIL import Image as PILImage
from sqlalchemy import (
    Row,
    Select,
    and_,
    bindparam,
    case,
    delete,
    distinct,
    func,
    insert,
    or_,
    select,
    tuple_,
    union,
    union_all,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, aliased, sessionmaker

from feedback import migrate
from feedback.batches import Batches
from feedback.engine import make_engine, writer
from feedback.images import ImageFiles, generated_from, image_provenance, model_version
from feedback.keys import IP_HASH_DAYS, install_keys
from feedback.models import (
    CAMPAIGN_ANSWERS,
    CAMPAIGN_KINDS,
    COMPARISON_OUTCOMES,
    MAX_ACCOUNT_CHARS,
    MAX_ANSWERS_WANTED,
    MAX_CAMPAIGN_NAME_CHARS,
    MAX_COMMENT_CHARS,
    ArenaBattle,
    Campaign,
    CampaignAnswer,
    CampaignItem,
    Comparison,
    Generation,
    Image,
    Rater,
    Vote,
    VoteEvent,
)

if TYPE_CHECKING:
    from feedback.campaigns import CampaignItemSpec

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ANON_ID_CHARS = 128
REQUIRED_PROVENANCE = (
    "prompt", "seed", "steps", "cfg", "sampler", "width", "height", "model_name", "model_hash", "app_version",
)  # fmt: skip
OPTIONAL_PROVENANCE = ("enhanced_prompt", "model_prompt", "negative_prompt", "category")
PROVENANCE_KEYS = REQUIRED_PROVENANCE + OPTIONAL_PROVENANCE
_PROVENANCE_TYPES = {"seed": int, "steps": int, "cfg": float, "width": int, "height": int}
_IN_CHUNK = 500  # ids per IN (...) clause, well under every backend's parameter limit
READ_CHUNK_ROWS = 1000  # rows a FeedbackReader fetches from the database at a time
_VOTE_ATTEMPTS = 3
_KNOWN_RATERS = 100_000  # raters whose ids the store keeps in memory, so that a vote needs no lookup first
_VOTE_BATCH = 200  # votes per group commit: 200 keys to check and lock stay within one IN (...) clause
# The votes' group commit statements (FeedbackStore._commit_votes), built once so that each is compiled once. The
# current votes are locked in key order, so that two processes' batches on Postgres cannot deadlock.
_VOTES = Vote.__table__
_BY_KEY = (_VOTES.c.rater_id == bindparam("r"), _VOTES.c.image_id == bindparam("i"))
_BATCH_RATERS = select(Rater.id).where(Rater.id.in_(bindparam("ids", expanding=True)))
_BATCH_IMAGES = select(Image.id).where(Image.id.in_(bindparam("ids", expanding=True)))
_BATCH_VOTES = (
    select(_VOTES.c.rater_id, _VOTES.c.image_id, _VOTES.c.value, _VOTES.c.comment)
    .where(tuple_(_VOTES.c.rater_id, _VOTES.c.image_id).in_(bindparam("keys", expanding=True)))
    .order_by(_VOTES.c.rater_id, _VOTES.c.image_id)
    .with_for_update()
)
_ADD_VOTES = insert(_VOTES).values(
    rater_id=bindparam("r"), image_id=bindparam("i"), value=bindparam("v"), comment=bindparam("c")
)
_CHANGE_VOTES = (
    update(_VOTES).where(*_BY_KEY).values(value=bindparam("v"), comment=bindparam("c"), updated_at=func.now())
)
_TAKE_BACK_VOTES = delete(_VOTES).where(*_BY_KEY)
_ADD_EVENTS = insert(VoteEvent.__table__)
_SWAPPED = {"left": "right", "right": "left"}  # a comparison outcome seen from the other side; ties stay
_PG_LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock_timeout
_UNKNOWN_RATER = "Your session is unknown; reload the page."
_UNKNOWN_IMAGE = "That image does not exist (any more); generate a new one."
_IMAGES_NOT_SAVED = (
    "The server could not save the images, so nothing was stored; please tell the site's administrators."
)


class FeedbackError(ValueError):
    """Something the store refuses or cannot do; the message is written for the person who asked."""


class FeedbackBusy(FeedbackError):
    """The database stayed locked by other writers for longer than the busy or lock timeout; trying again helps."""


class ImagesNotSaved(FeedbackError):
    """The image folder refused the files (permissions, a full disk); the admins find the cause in the log."""


@dataclass(frozen=True)
class GenerationRecord:
    """What :meth:`FeedbackStore.record_generation` stored: ids and files, in batch order."""

    id: str
    image_ids: list[str]
    paths: list[Path]


@dataclass(frozen=True)
class VoteRequest:
    """One vote waiting for its group commit (value and comment already checked)."""

    rater_id: int
    image_id: str
    value: int
    comment: str | None


@dataclass(frozen=True)
class VoteRecord:
    """The outcome of a vote; ``changed`` is False when it repeated the current state."""

    rater_id: int
    image_id: str
    value: int
    previous: int
    comment: str | None
    changed: bool


@dataclass(frozen=True)
class DashboardData:
    """Tables for the ratings dashboard, ready for plotting."""

    votes_per_day: pd.DataFrame  # day, likes, dislikes
    by_model: pd.DataFrame  # model_name, model_hash, likes, dislikes, votes, like_rate
    by_category: pd.DataFrame  # category, likes, dislikes, votes, like_rate
    totals: dict[str, int]  # n_votes, n_images, n_raters, n_comparisons


@dataclass(frozen=True)
class ImageRow:
    """An image with the provenance of its generation, as exports need it."""

    id: str
    generation_id: str
    batch_index: int
    sha256: str
    file: str  # relative to the image folder
    path: Path  # absolute
    width: int
    height: int
    generated_at: datetime
    provenance: dict[str, Any]  # PROVENANCE_KEYS plus "extra"

    @property
    def caption(self) -> str:
        """The text the image was generated from (the prompt as typed stays in the provenance)."""
        return generated_from(self.provenance)

    @property
    def model(self) -> str:
        """A model version label: ``name@`` and the first 12 characters of the weights hash."""
        return model_version(self.provenance["model_name"], self.provenance["model_hash"])


@dataclass(frozen=True)
class VoteRow:
    rater_id: int
    image_id: str
    value: int
    comment: str | None
    updated_at: datetime


@dataclass(frozen=True)
class ComparisonRow:
    id: int
    rater_id: int
    left_image_id: str
    right_image_id: str
    outcome: str
    created_at: datetime


@dataclass(frozen=True)
class VoteEventRow:
    id: int
    rater_id: int
    image_id: str
    value: int
    comment: str | None
    created_at: datetime


@dataclass(frozen=True)
class PreferenceRows:
    """Filtered feedback for the exporters: current votes, comparisons, vote history and their images."""

    votes: list[VoteRow]
    comparisons: list[ComparisonRow]
    events: list[VoteEventRow]
    images: dict[str, ImageRow]
    # image id -> the item a rater judged: the image's bytes with the text it was generated from. Two raters who
    # generate the same prompt, seed and settings get two image ids but see one item, so agreement counts them.
    items: dict[str, str]


@dataclass(frozen=True)
class CampaignInfo:
    """A campaign with its progress; ``items_complete`` counts non-gold items with k answers or more."""

    id: int
    name: str
    kind: str
    guidelines: str
    answers_wanted: int
    gold_rate: float
    created_at: datetime
    closed_at: datetime | None
    n_items: int
    n_gold: int
    n_answers: int
    items_complete: int


@dataclass(frozen=True)
class CampaignItemRow:
    """An item to show a rater. It has no gold answer: the page must not be able to give it away."""

    id: int
    campaign_id: int
    kind: str
    image_id: str | None
    left_image_id: str | None
    right_image_id: str | None
    is_gold: bool  # for the app's bookkeeping only; never shown to the rater


@dataclass(frozen=True)
class CampaignAnswerRow:
    """One answer with the item's gold answer (None for a normal item), for the admins' reports."""

    item_id: int
    rater_id: int
    answer: str
    seconds: float
    created_at: datetime
    gold_answer: str | None
    image_ids: tuple[str, ...]  # the vote item's image, or the pair item's left and right images


@dataclass(frozen=True)
class ArenaBattleRow:
    """A battle with the model version behind each side; ``outcome`` is None until its rater judged it."""

    id: int
    rater_id: int
    left_image_id: str
    right_image_id: str
    model_a: str  # the left image's model version (feedback.images.model_version)
    model_b: str  # the right image's
    outcome: str | None
    created_at: datetime


class FeedbackStore:
    """Sessions and transactions over the feedback database, plus the image files."""

    def __init__(
        self,
        url: str,
        image_dir: str | Path,
        keys_dir: str | Path | None = None,
        *,
        synchronous: str = "NORMAL",
        ip_hash_days: int = IP_HASH_DAYS,
    ) -> None:
        """``keys_dir`` holds the install secret and the IP-hash key (:mod:`feedback.keys`); None puts it beside a
        SQLite file, else beside the image folder. Keys are made when first needed, not here. ``synchronous``:
        SQLite's durability (:mod:`feedback.engine`). ``ip_hash_days``: how long a rater's IP hash is kept (0: none
        is stored)."""
        if ip_hash_days < 0:
            raise ValueError(f"ip_hash_days must be 0 or more, not {ip_hash_days}.")
        self.url = url
        self.keys = install_keys(url, image_dir, keys_dir)  # refuses a keys folder inside the served images first
        self.ip_hash_days = ip_hash_days
        self._ip_hashes_checked: date | None = None  # the UTC day forget_ip_hashes last ran
        self._engine = make_engine(url, synchronous)
        migrate.upgrade(self._engine)
        self._session = sessionmaker(writer(self._engine), expire_on_commit=False)
        self._read = sessionmaker(self._engine, expire_on_commit=False)
        self.images = ImageFiles(image_dir)
        self._votes = Batches(self._commit_votes, _VOTE_BATCH)  # group commit
        self._known_raters: dict[str, tuple[int, str | None]] = {}  # anon id → rater id and account, seen here
        logger.info("feedback store ready on %s", make_url(url).render_as_string(hide_password=True))

    @property
    def install_secret(self) -> bytes:
        """This install's fixed secret, for keyed hashes that must match across restarts (rater tokens and ids)."""
        return self.keys.install_secret

    def close(self) -> None:
        """Release every pooled connection (a Postgres database cannot be dropped while they live)."""
        self._engine.dispose()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- writes -------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction. A database that stays locked past its timeout raises :class:`FeedbackBusy`, so the
        person who clicked reads that nothing was saved; every other database error stays a fault."""
        try:
            with self._session.begin() as s:
                yield s
        except OperationalError as error:
            if not _is_busy(error):
                raise
            logger.warning("write refused, the database is busy: %s", error.orig)
            raise FeedbackBusy(
                "The feedback database is busy, so nothing was saved; please try again in a moment."
            ) from error

    def database_reachable(self) -> bool:
        """Whether a read goes through now (the health check); a failure is logged with its cause."""
        try:
            with self._read() as s:
                s.execute(select(1))
            return True
        except OperationalError as error:
            logger.warning("health: the feedback database is unreachable: %s", error.orig)
            return False

    def check_images_writable(self) -> None:
        """Raise ImagesNotSaved when the image folder takes no files now, so that a request fails before the model
        spends its time on images that could not be kept."""
        try:
            self.images.probe()
        except OSError as error:
            logger.exception("the image folder %s takes no files", self.images.root)
            raise ImagesNotSaved(_IMAGES_NOT_SAVED) from error

    def rater(self, anon_id: str, ip: str | None = None, account: str | None = None) -> int:
        """The id of the rater with this anonymous id, created on first sight.

        Only an HMAC of the IP under the day's key is kept (:mod:`feedback.keys`): it links one
        machine's clicks within one UTC day only, and cannot be reversed once the day's key is gone.
        ``account``: the account the person signed in with (where the host offers sign-in), recorded with the
        rater; a later sign-in with another account replaces it.
        """
        if not anon_id or len(anon_id) > MAX_ANON_ID_CHARS:
            raise FeedbackError("Your session id is missing or malformed; reload the page.")
        if account is not None and not 0 < len(account) <= MAX_ACCOUNT_CHARS:
            raise FeedbackError("The signed-in account name is empty or too long; sign in again.")
        found = self._known_raters.get(anon_id) or self._find_rater(anon_id)
        if found is not None:
            rater_id, known_account = found
            if account is not None and account != known_account:
                with self._write() as s:
                    s.execute(update(Rater).where(Rater.id == rater_id).values(account=account))
                logger.info("rater %d signed in", rater_id)
            self._remember_rater(anon_id, rater_id, account or known_account)
            return rater_id
        if self._ip_hashes_checked != datetime.now(UTC).date():
            self.forget_ip_hashes()
        try:
            with self._write() as s:
                ip_hash = self._hash_ip(ip) if self.ip_hash_days else None
                rater = Rater(anon_id=anon_id, ip_hash=ip_hash, account=account)
                s.add(rater)
                s.flush()
                logger.info("new rater %d%s", rater.id, " (signed in)" if account else "")
            self._remember_rater(anon_id, rater.id, account)
            return rater.id
        except IntegrityError:  # another request created it first
            if self._find_rater(anon_id) is None:
                raise
            return self.rater(anon_id, ip, account)  # now found: its account is brought up to date

    def forget_ip_hashes(self, now: datetime | None = None) -> int:
        """Clear the IP hashes of raters first seen ``ip_hash_days`` or more ago, the retention rule; the number
        cleared. The app runs it at start-up, and the store once a UTC day, before it stores a new rater's hash."""
        now = now or datetime.now(UTC)
        with self._write() as s:
            cleared = s.execute(
                update(Rater)
                .where(Rater.ip_hash.is_not(None), Rater.created_at <= now - timedelta(days=self.ip_hash_days))
                .values(ip_hash=None)
            ).rowcount
        self._ip_hashes_checked = now.date()
        if cleared:
            logger.info("cleared the IP hashes of %d raters seen first %d+ days ago", cleared, self.ip_hash_days)
        return cleared

    def record_generation(
        self, rater_id: int, provenance: dict[str, Any], images: list[PILImage.Image]
    ) -> GenerationRecord:
        """Store the images (content-addressed, with provenance in the PNG) and their generation row.

        Files are written before the row; if the transaction fails they stay as harmless orphans
        that the next equal image reuses. A folder that refuses the files stores nothing.
        """
        if not images:
            raise ValueError("record_generation needs at least one image")
        missing = [key for key in REQUIRED_PROVENANCE if provenance.get(key) is None]
        if missing:
            raise ValueError(f"provenance is missing {', '.join(missing)}")
        columns = {key: provenance.get(key) for key in PROVENANCE_KEYS}
        for key, kind in _PROVENANCE_TYPES.items():  # numpy scalars and friends become plain Python
            columns[key] = kind(columns[key])
        extra = json.loads(json.dumps({k: v for k, v in provenance.items() if k not in PROVENANCE_KEYS}, default=str))
        batch = {**columns, **extra}
        try:
            stored = [self.images.save(image, image_provenance(batch, i)) for i, image in enumerate(images)]
        except OSError as error:
            logger.exception("could not write images into %s", self.images.root)
            raise ImagesNotSaved(_IMAGES_NOT_SAVED) from error

        generation = Generation(id=str(uuid.uuid4()), rater_id=rater_id, extra=extra, **columns)
        rows = [
            Image(
                id=str(uuid.uuid4()),
                batch_index=index,
                sha256=file.sha256,
                path=file.relpath,
                width=file.width,
                height=file.height,
            )
            for index, file in enumerate(stored)
        ]
        generation.images = rows
        with self._write() as s:
            self._require_rater(s, rater_id)
            s.add(generation)
        logger.info("generation %s: %d image(s) by rater %d", generation.id, len(rows), rater_id)
        return GenerationRecord(
            id=generation.id,
            image_ids=[row.id for row in rows],
            paths=[self.images.path(file.relpath) for file in stored],
        )

    def vote(self, rater_id: int, image_id: str, value: int, comment: str | None = None) -> VoteRecord:
        """Set the rater's vote on an image: +1 👍, -1 👎, 0 takes it back.

        A change of value or comment replaces the current vote and is appended to the history;
        repeating the current state changes nothing. Votes that arrive together (the server's request
        threads) share one transaction (:mod:`feedback.batches`); each call returns once its own
        vote is committed.
        """
        if isinstance(value, bool) or value not in (-1, 0, 1):
            raise FeedbackError("A vote is 👍 (+1) or 👎 (-1); 0 takes your vote back.")
        return self._votes.submit(VoteRequest(rater_id, image_id, value, _clean_comment(comment)))

    def _commit_votes(self, batch: list[VoteRequest]) -> list[VoteRecord | FeedbackError]:
        """One transaction for a batch of votes, in their order; a vote on an unknown rater or image is refused
        alone. Postgres: a batch whose first vote on an image lost the insert to another process is retried, and
        then sees and updates that row."""
        for _ in range(_VOTE_ATTEMPTS - 1):
            try:
                return self._commit_votes_once(batch)
            except IntegrityError:
                logger.warning("a batch of %d votes raced another writer; retrying", len(batch))
        return self._commit_votes_once(batch)

    def _commit_votes_once(self, batch: list[VoteRequest]) -> list[VoteRecord | FeedbackError]:
        keys = sorted({(v.rater_id, v.image_id) for v in batch})
        with self._write() as s:
            connection = s.connection()
            raters = set(connection.scalars(_BATCH_RATERS, {"ids": sorted({v.rater_id for v in batch})}))
            images = set(connection.scalars(_BATCH_IMAGES, {"ids": sorted({v.image_id for v in batch})}))
            stored: dict[tuple[int, str], tuple[int, str | None] | None] = {
                (row.rater_id, row.image_id): (row.value, row.comment)
                for row in connection.execute(_BATCH_VOTES, {"keys": keys})
            }
            state = dict(stored)  # each key's vote after the batch's votes so far; None: no vote
            outcomes: list[VoteRecord | FeedbackError] = []
            history: list[dict[str, Any]] = []
            for v in batch:
                if v.rater_id not in raters:
                    outcomes.append(FeedbackError(_UNKNOWN_RATER))
                    continue
                if v.image_id not in images:
                    outcomes.append(FeedbackError(_UNKNOWN_IMAGE))
                    continue
                key = (v.rater_id, v.image_id)
                current = state.get(key)
                changed = not (current is None and v.value == 0) and current != (v.value, v.comment)
                if changed:
                    state[key] = (v.value, v.comment) if v.value else None
                    history.append(
                        {"rater_id": v.rater_id, "image_id": v.image_id, "value": v.value, "comment": v.comment}
                    )
                previous = current[0] if current else 0
                outcomes.append(
                    VoteRecord(v.rater_id, v.image_id, v.value, previous, v.comment if v.value else None, changed)
                )
            # Rows written in key order too (inserts of the same new keys by two Postgres processes wait in order).
            final = sorted((key, vote) for key, vote in state.items() if vote != stored.get(key))
            rows = [{"r": r, "i": i, "v": vote[0], "c": vote[1]} for (r, i), vote in final if vote is not None]
            if added := [row for row in rows if (row["r"], row["i"]) not in stored]:
                connection.execute(_ADD_VOTES, added)
            if changed_rows := [row for row in rows if (row["r"], row["i"]) in stored]:
                connection.execute(_CHANGE_VOTES, changed_rows)
            if taken_back := [{"r": r, "i": i} for (r, i), vote in final if vote is None]:
                connection.execute(_TAKE_BACK_VOTES, taken_back)
            if history:
                connection.execute(_ADD_EVENTS, history)
        logger.debug("committed %d votes, %d of them changes", len(batch), len(history))
        return outcomes

    @staticmethod
    def _set_vote(s: Session, rater_id: int, image_id: str, value: int, comment: str | None) -> VoteRecord:
        """Set the vote inside the caller's transaction (checked rater and image), appending to the history."""
        current = s.scalars(
            select(Vote).where(Vote.rater_id == rater_id, Vote.image_id == image_id).with_for_update()
        ).one_or_none()
        previous = current.value if current else 0
        if current is None and value == 0:
            changed = False
        elif current is not None and current.value == value and current.comment == comment:
            changed = False
        else:
            changed = True
            if value == 0:
                s.delete(current)
            elif current is None:
                s.add(Vote(rater_id=rater_id, image_id=image_id, value=value, comment=comment))
            else:
                current.value, current.comment, current.updated_at = value, comment, func.now()
            s.add(VoteEvent(rater_id=rater_id, image_id=image_id, value=value, comment=comment))
        return VoteRecord(rater_id, image_id, value, previous, comment if value else None, changed)

    def compare(self, rater_id: int, left_image_id: str, right_image_id: str, outcome: str) -> int:
        """Record a side-by-side judgement; ``outcome`` is left, right, tie or both_bad. Returns the row's id.

        A later judgement of the same two images by the same rater, in either order, replaces the earlier one.
        """
        if outcome not in COMPARISON_OUTCOMES:
            raise FeedbackError("Pick the left image, the right image, a tie, or 'both bad'.")
        if left_image_id == right_image_id:
            raise FeedbackError("A comparison needs two different images.")
        with self._write() as s:
            self._require_rater(s, rater_id)
            self._require_images(s, [left_image_id, right_image_id])
            comparison_id = self._set_comparison(s, rater_id, left_image_id, right_image_id, outcome)
        logger.info("rater %d compared %s vs %s: %s", rater_id, left_image_id, right_image_id, outcome)
        return comparison_id

    @staticmethod
    def _set_comparison(s: Session, rater_id: int, left_image_id: str, right_image_id: str, outcome: str) -> int:
        """Set the rater's comparison of two images inside the caller's transaction (checked rater, images and
        outcome); returns its id.

        One row per rater and pair: a repeat updates the outcome (seen from the row's sides when the images come
        the other way round) and the time. Locking the rater's row first makes a double click on Postgres wait
        for the first click's row instead of adding a second one.
        """
        s.execute(select(Rater.id).where(Rater.id == rater_id).with_for_update(key_share=True))
        pair = or_(
            and_(Comparison.left_image_id == left_image_id, Comparison.right_image_id == right_image_id),
            and_(Comparison.left_image_id == right_image_id, Comparison.right_image_id == left_image_id),
        )
        current = s.scalars(
            select(Comparison).where(Comparison.rater_id == rater_id, pair).order_by(Comparison.id.desc()).limit(1)
        ).first()
        if current is None:
            current = Comparison(
                rater_id=rater_id, left_image_id=left_image_id, right_image_id=right_image_id, outcome=outcome
            )
            s.add(current)
        else:
            current.outcome = _sided(outcome, swapped=current.left_image_id != left_image_id)
            current.created_at = func.now()
        s.flush()
        return current.id

    # -- campaigns ----------------------------------------------------------------------------

    def create_campaign(
        self,
        name: str,
        kind: str,
        guidelines: str,
        answers_wanted: int,
        gold_rate: float,
        items: list[CampaignItemSpec],
    ) -> int:
        """Create a campaign of pre-generated items (served in this order among equals); returns its id.

        Everything is checked before anything is written, so a refused campaign leaves nothing behind.
        """
        name = name.strip() if isinstance(name, str) else ""
        if not name:
            raise FeedbackError("The campaign name must not be empty.")
        if len(name) > MAX_CAMPAIGN_NAME_CHARS:
            raise FeedbackError(
                f"The campaign name can be at most {MAX_CAMPAIGN_NAME_CHARS} characters (yours has {len(name)})."
            )
        if kind not in CAMPAIGN_KINDS:
            raise FeedbackError(f"The campaign kind must be one of {', '.join(CAMPAIGN_KINDS)}, not {kind!r}.")
        wanted = _number(answers_wanted)
        if wanted is None or not wanted.is_integer() or not 1 <= wanted <= MAX_ANSWERS_WANTED:
            raise FeedbackError(
                f"answers_wanted must be a whole number from 1 to {MAX_ANSWERS_WANTED}, not {answers_wanted!r}."
            )
        rate = _number(gold_rate)
        if rate is None or not 0 <= rate < 1:
            raise FeedbackError(f"gold_rate must be at least 0 and below 1, not {gold_rate!r}.")
        image_ids = _check_campaign_items(kind, items)
        with self._write() as s:
            found: set[str] = set()
            for chunk in _chunks(sorted(image_ids)):
                found.update(s.scalars(select(Image.id).where(Image.id.in_(chunk))))
            if missing := [image_id for image_id in image_ids if image_id not in found]:
                raise FeedbackError(f"The items name {len(missing)} image(s) that do not exist, {missing[0]!r} first.")
            if s.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
                raise FeedbackError(f"A campaign named {name!r} exists already; choose another name.")
            campaign = Campaign(
                name=name, kind=kind, guidelines=guidelines or "", answers_wanted=int(wanted), gold_rate=rate
            )
            s.add(campaign)
            try:
                s.flush()
            except IntegrityError:  # created by someone else since the check above
                raise FeedbackError(f"A campaign named {name!r} exists already; choose another name.") from None
            s.add_all(
                CampaignItem(
                    campaign_id=campaign.id,
                    image_id=spec.image_id,
                    left_image_id=spec.left_image_id,
                    right_image_id=spec.right_image_id,
                    gold_answer=spec.gold_answer,
                    position=position,
                )
                for position, spec in enumerate(items)
            )
        n_gold = sum(spec.gold_answer is not None for spec in items)
        logger.info("campaign %d %r: %d %s items (%d gold)", campaign.id, name, len(items), kind, n_gold)
        return campaign.id

    def campaigns(self, include_closed: bool = False) -> list[CampaignInfo]:
        """The campaigns with their progress, oldest first; closed ones only when asked for."""
        query = select(Campaign).order_by(Campaign.id)
        if not include_closed:
            query = query.where(Campaign.closed_at.is_(None))
        with self._read() as s:
            return self._campaign_infos(s, list(s.scalars(query)))

    def campaign(self, name: str) -> CampaignInfo:
        """One campaign by name, open or closed."""
        with self._read() as s:
            return self._campaign_infos(s, [self._campaign_named(s, name)])[0]

    def close_campaign(self, name: str) -> None:
        """Stop serving a campaign and refuse further answers; closing a closed campaign changes nothing."""
        with self._write() as s:
            campaign = self._campaign_named(s, name)
            if campaign.closed_at is None:
                campaign.closed_at = func.now()
                logger.info("campaign %d %r closed", campaign.id, campaign.name)

    def next_campaign_item(self, campaign_id: int, rater_id: int, rng: random.Random) -> CampaignItemRow | None:
        """The next item for this rater, or None when they answered every item or the campaign is closed.

        With probability ``gold_rate`` a gold item the rater has not answered; otherwise the unanswered normal item
        with the fewest answers (ties by position), items with k answers already only once the rater has answered
        every item that still needs answers, so nobody sits idle while the campaign is open.
        """
        with self._read() as s:
            campaign = s.get(Campaign, campaign_id)
            if campaign is None:
                raise FeedbackError("That campaign does not exist (any more).")
            if campaign.closed_at is not None:
                return None
            wants_gold = rng.random() < campaign.gold_rate
            answered = select(CampaignAnswer.item_id).where(
                CampaignAnswer.campaign_id == campaign_id, CampaignAnswer.rater_id == rater_id
            )
            unanswered = (CampaignItem.campaign_id == campaign_id, CampaignItem.id.not_in(answered))
            gold = list(
                s.scalars(
                    select(CampaignItem.id)
                    .where(*unanswered, CampaignItem.gold_answer.is_not(None))
                    .order_by(CampaignItem.position)
                )
            )
            counts = (
                select(CampaignAnswer.item_id, func.count().label("n"))
                .where(CampaignAnswer.campaign_id == campaign_id)
                .group_by(CampaignAnswer.item_id)
                .subquery()
            )
            n = func.coalesce(counts.c.n, 0)
            item = s.scalars(
                select(CampaignItem)
                .outerjoin(counts, counts.c.item_id == CampaignItem.id)
                .where(*unanswered, CampaignItem.gold_answer.is_(None))
                .order_by(case((n >= campaign.answers_wanted, 1), else_=0), n, CampaignItem.position)
                .limit(1)
            ).first()
            if gold and (wants_gold or item is None):
                item = s.get_one(CampaignItem, rng.choice(gold))
            if item is None:
                return None
            return _campaign_item_row(item, campaign.kind)

    def answer_campaign_item(self, item_id: int, rater_id: int, answer: str, seconds: float) -> None:
        """Store a rater's one answer to an item and, in the same transaction, the vote or comparison it is.

        ``answer`` is "1" / "-1" for a vote item and a comparison outcome for a pair item; ``seconds`` is the
        time the rater spent on the item.
        """
        if isinstance(answer, int) and not isinstance(answer, bool):  # a vote value, as the gallery sends it
            answer = str(answer)
        spent = _number(seconds)
        if spent is None or spent < 0:
            raise FeedbackError(f"seconds must be the time spent on the item, 0 or more, not {seconds!r}.")
        for attempt in range(_VOTE_ATTEMPTS):
            try:
                return self._answer_once(item_id, rater_id, answer, spent)
            except IntegrityError:
                # Postgres: this rater's answer (a double click) or vote on the image landed first.
                if self._has_answered(item_id, rater_id):
                    raise FeedbackError("You have already answered this item.") from None
                if attempt == _VOTE_ATTEMPTS - 1:
                    raise
                logger.warning("answer by rater %d on item %d raced; retrying", rater_id, item_id)

    def _answer_once(self, item_id: int, rater_id: int, answer: str, seconds: float) -> None:
        with self._write() as s:
            self._require_rater(s, rater_id)
            found = s.execute(select(CampaignItem, Campaign).join(Campaign).where(CampaignItem.id == item_id)).first()
            if found is None:
                raise FeedbackError("That campaign item does not exist (any more).")
            item, campaign = found
            if campaign.closed_at is not None:
                raise FeedbackError(f"The campaign {campaign.name!r} is closed and takes no more answers.")
            if answer not in (allowed := CAMPAIGN_ANSWERS[campaign.kind]):
                raise FeedbackError(f"The answer to a {campaign.kind} item must be one of {', '.join(allowed)}.")
            if s.scalar(
                select(CampaignAnswer.id).where(CampaignAnswer.item_id == item_id, CampaignAnswer.rater_id == rater_id)
            ):
                raise FeedbackError("You have already answered this item.")
            s.add(
                CampaignAnswer(
                    campaign_id=campaign.id, item_id=item_id, rater_id=rater_id, answer=answer, seconds=seconds
                )
            )
            if campaign.kind == "vote":
                self._set_vote(s, rater_id, item.image_id, int(answer), None)
            else:
                self._set_comparison(s, rater_id, item.left_image_id, item.right_image_id, answer)
            s.flush()
        logger.info("rater %d answered item %d of campaign %d: %s", rater_id, item_id, campaign.id, answer)

    def campaign_items(self, campaign_id: int) -> list[CampaignItemRow]:
        """Every item of a campaign in position order, for reports (gold items marked, their answers not shown)."""
        with self._read() as s:
            campaign = s.get(Campaign, campaign_id)
            if campaign is None:
                raise FeedbackError("That campaign does not exist (any more).")
            items = s.scalars(
                select(CampaignItem).where(CampaignItem.campaign_id == campaign_id).order_by(CampaignItem.position)
            )
            return [_campaign_item_row(item, campaign.kind) for item in items]

    def campaign_answer_count(self, campaign_id: int, rater_id: int) -> int:
        """How many items of a campaign this rater has answered: the Rate tab's progress, read on every answer."""
        with self._read() as s:
            query = select(func.count()).where(
                CampaignAnswer.campaign_id == campaign_id, CampaignAnswer.rater_id == rater_id
            )
            return s.scalar(query) or 0

    def campaign_answers(self, campaign_id: int) -> list[CampaignAnswerRow]:
        """Every answer of a campaign, oldest first, with the item's gold answer and images: for admins' reports."""
        with self._read() as s:
            if s.get(Campaign, campaign_id) is None:
                raise FeedbackError("That campaign does not exist (any more).")
            rows = s.execute(
                select(
                    CampaignAnswer.item_id,
                    CampaignAnswer.rater_id,
                    CampaignAnswer.answer,
                    CampaignAnswer.seconds,
                    CampaignAnswer.created_at,
                    CampaignItem.gold_answer,
                    CampaignItem.image_id,
                    CampaignItem.left_image_id,
                    CampaignItem.right_image_id,
                )
                .join(CampaignItem, CampaignItem.id == CampaignAnswer.item_id)
                .where(CampaignAnswer.campaign_id == campaign_id)
                .order_by(CampaignAnswer.id)
            ).all()
        return [
            CampaignAnswerRow(
                item_id, rater_id, answer, seconds, created_at, gold, (image,) if image else (left, right)
            )
            for item_id, rater_id, answer, seconds, created_at, gold, image, left, right in rows
        ]

    # -- reads --------------------------------------------------------------------------------

    # -- arena --------------------------------------------------------------------------------

    def start_battle(self, rater_id: int, left_image_id: str, right_image_id: str) -> int:
        """Store a battle as it is shown to ``rater_id``: images of two model versions, one prompt, seed and
        settings. Returns its id, which the judgement must name."""
        if left_image_id == right_image_id:
            raise FeedbackError("An arena battle needs two different images.")
        with self._write() as s:
            self._require_rater(s, rater_id)
            versions = s.execute(
                select(Generation.model_name, Generation.model_hash)
                .join(Image)
                .where(Image.id.in_([left_image_id, right_image_id]))
            ).all()
            if len(versions) != 2:
                raise FeedbackError("That image does not exist (any more); start a new battle.")
            if versions[0] == versions[1]:
                raise FeedbackError("An arena battle needs images of two different model versions.")
            battle = ArenaBattle(rater_id=rater_id, left_image_id=left_image_id, right_image_id=right_image_id)
            s.add(battle)
            s.flush()
            return battle.id

    def judge_battle(self, battle_id: int, rater_id: int, outcome: str) -> ArenaBattleRow:
        """Record the rater's one judgement of a battle shown to them (also as a comparison); returns the battle
        with both model versions, which the page reveals only now."""
        if outcome not in COMPARISON_OUTCOMES:
            raise FeedbackError("Pick model A, model B, a tie, or 'both bad'.")
        with self._write() as s:
            self._require_rater(s, rater_id)
            battle = s.get(ArenaBattle, battle_id)
            if battle is None:
                raise FeedbackError("That arena battle does not exist; start a new battle.")
            if battle.rater_id != rater_id:
                raise FeedbackError("That arena battle was shown to another rater; start your own.")
            comparison_id = self._set_comparison(s, rater_id, battle.left_image_id, battle.right_image_id, outcome)
            if s.scalar(
                select(ArenaBattle.id).where(ArenaBattle.comparison_id == comparison_id, ArenaBattle.id != battle_id)
            ):  # the same two images in an earlier battle: a pair is judged once (the update above rolls back)
                raise FeedbackError("You have already judged these two images in another battle; start a new one.")
            # Guarded on "not judged yet", so two racing clicks cannot both count (the loser's comparison rolls back).
            claimed = s.execute(
                update(ArenaBattle)
                .where(ArenaBattle.id == battle_id, ArenaBattle.comparison_id.is_(None))
                .values(comparison_id=comparison_id)
            ).rowcount
            if not claimed:
                raise FeedbackError("You have already judged this battle; start a new one.")
        logger.info("rater %d judged arena battle %d: %s", rater_id, battle_id, outcome)
        return self.arena_battles(battle_id=battle_id, judged_only=False)[0]

    def arena_battles(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        judged_only: bool = True,
        battle_id: int | None = None,
    ) -> list[ArenaBattleRow]:
        """Battles in the order they were shown, with each side's model version and the outcome when judged.

        ``since`` (inclusive) and ``until`` (exclusive) apply to when the battle was shown.
        """
        left_image, right_image = aliased(Image), aliased(Image)
        left_gen, right_gen = aliased(Generation), aliased(Generation)
        query = (
            select(
                ArenaBattle.id,
                ArenaBattle.rater_id,
                ArenaBattle.left_image_id,
                ArenaBattle.right_image_id,
                left_gen.model_name,
                left_gen.model_hash,
                right_gen.model_name,
                right_gen.model_hash,
                Comparison.outcome,
                ArenaBattle.created_at,
                Comparison.left_image_id,
            )
            .join(left_image, left_image.id == ArenaBattle.left_image_id)
            .join(left_gen, left_gen.id == left_image.generation_id)
            .join(right_image, right_image.id == ArenaBattle.right_image_id)
            .join(right_gen, right_gen.id == right_image.generation_id)
            .outerjoin(Comparison, Comparison.id == ArenaBattle.comparison_id)
            .order_by(ArenaBattle.id)
        )
        if judged_only:
            query = query.where(ArenaBattle.comparison_id.is_not(None))
        if battle_id is not None:
            query = query.where(ArenaBattle.id == battle_id)
        if since is not None:
            query = query.where(ArenaBattle.created_at >= since)
        if until is not None:
            query = query.where(ArenaBattle.created_at < until)
        with self._read() as s:
            rows = s.execute(query).all()
        return [
            ArenaBattleRow(
                id=row[0],
                rater_id=row[1],
                left_image_id=row[2],
                right_image_id=row[3],
                model_a=model_version(row[4], row[5]),
                model_b=model_version(row[6], row[7]),
                outcome=None if row[8] is None else _sided(row[8], swapped=row[10] != row[2]),  # as shown
                created_at=row[9],
            )
            for row in rows
        ]

    def image_path(self, image_id: str) -> Path:
        """The file of an image."""
        with self._read() as s:
            relpath = s.scalar(select(Image.path).where(Image.id == image_id))
        if relpath is None:
            raise FeedbackError("That image does not exist (any more).")
        return self.images.path(relpath)

    def current_votes(self, rater_id: int, image_ids: list[str]) -> dict[str, int]:
        """The rater's current vote on each image: +1, -1, or 0 for none."""
        votes = dict.fromkeys(image_ids, 0)
        with self._read() as s:
            for chunk in _chunks(list(votes)):
                rows = s.execute(
                    select(Vote.image_id, Vote.value).where(Vote.rater_id == rater_id, Vote.image_id.in_(chunk))
                )
                votes.update(rows.tuples().all())
        return votes

    def rater_accounts(self, rater_ids: list[int]) -> dict[int, str]:
        """The signed-in account of each of these raters that has one (the admin's dashboard)."""
        found: dict[int, str] = {}
        with self._read() as s:
            for chunk in _chunks(rater_ids):
                query = select(Rater.id, Rater.account).where(Rater.id.in_(chunk), Rater.account.is_not(None))
                found.update((rater_id, account) for rater_id, account in s.execute(query))
        return found

    def vote_history(self, rater_id: int, image_id: str) -> list[int]:
        """Every value the rater gave this image, oldest first (0 = taken back)."""
        with self._read() as s:
            return list(
                s.scalars(
                    select(VoteEvent.value)
                    .where(VoteEvent.rater_id == rater_id, VoteEvent.image_id == image_id)
                    .order_by(VoteEvent.id)
                )
            )

    def dashboard(self) -> DashboardData:
        """Vote counts per day, like-rate per model version and per category, and totals."""
        likes = func.coalesce(func.sum(case((Vote.value == 1, 1), else_=0)), 0).label("likes")
        dislikes = func.coalesce(func.sum(case((Vote.value == -1, 1), else_=0)), 0).label("dislikes")
        day = func.date(Vote.updated_at).label("day")
        category = func.coalesce(Generation.category, "(none)").label("category")

        def voted(*columns: Any) -> Select:
            return select(*columns).select_from(Vote).join(Image, Image.id == Vote.image_id).join(Generation)

        with self._read() as s:
            per_day = s.execute(select(day, likes, dislikes).group_by(day).order_by(day)).all()
            per_model = s.execute(
                voted(Generation.model_name, Generation.model_hash, likes, dislikes)
                .group_by(Generation.model_name, Generation.model_hash)
                .order_by(func.min(Generation.created_at))
            ).all()
            per_category = s.execute(voted(category, likes, dislikes).group_by(category).order_by(category)).all()
            raters = union(select(Vote.rater_id), select(Comparison.rater_id)).subquery()
            totals = {
                "n_votes": s.scalar(select(func.count()).select_from(Vote)) or 0,
                "n_images": s.scalar(select(func.count()).select_from(Image)) or 0,
                "n_raters": s.scalar(select(func.count()).select_from(raters)) or 0,
                "n_comparisons": s.scalar(select(func.count()).select_from(Comparison)) or 0,
            }
        votes_per_day = pd.DataFrame(per_day, columns=["day", "likes", "dislikes"])
        votes_per_day["day"] = pd.to_datetime(votes_per_day["day"].astype(str))
        return DashboardData(
            votes_per_day=votes_per_day.astype({"likes": int, "dislikes": int}),
            by_model=_with_like_rate(
                pd.DataFrame(per_model, columns=["model_name", "model_hash", "likes", "dislikes"])
            ),
            by_category=_with_like_rate(pd.DataFrame(per_category, columns=["category", "likes", "dislikes"])),
            totals=totals,
        )

    def preference_rows(
        self,
        *,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        min_votes: int = 0,
        with_images: bool = True,
        with_events: bool = True,
        campaign: str | None = None,
    ) -> PreferenceRows:
        """Current votes, comparisons and vote events for export, with the images they refer to.

        ``model`` keeps feedback on images of that model (name or full weights hash); a comparison
        needs both images from it. ``since`` (inclusive) and ``until`` (exclusive) apply to when
        the vote was last set, the comparison made, or the event happened. ``min_votes`` keeps
        only images judged at least that often in the filtered feedback, counting each current
        vote and each comparison the image appears in (0 keeps everything, including the history
        of votes that were taken back). ``with_images=False`` skips the images' provenance and
        ``with_events=False`` the vote history, for readers that need only current judgements:
        both grow with every click, so a dashboard refresh should not pay for them. ``campaign`` keeps
        votes and comparisons on the images of that campaign's normal items (gold items are checks, not data).

        Everything comes back in memory; an export of any size streams through :meth:`feedback_reader` instead.
        """
        with self._read() as s:
            selects = self._feedback_selects(
                s, model=model, since=since, until=until, min_votes=min_votes, campaign=campaign
            )
            vote_rows = [VoteRow(*row) for row in s.execute(selects.votes.order_by(Vote.id))]
            comparison_rows = [ComparisonRow(*row) for row in s.execute(selects.comparisons.order_by(Comparison.id))]
            event_rows = (
                [VoteEventRow(*row) for row in s.execute(selects.events.order_by(VoteEvent.id))] if with_events else []
            )
            wanted = {row.image_id for row in vote_rows} | {row.image_id for row in event_rows}
            wanted |= {image_id for row in comparison_rows for image_id in (row.left_image_id, row.right_image_id)}
            images = self._image_rows(s, sorted(wanted)) if with_images else {}
            items = self._item_keys(s, sorted(wanted))
        logger.info(
            "preference rows: %d votes, %d comparisons, %d events, %d images",
            len(vote_rows),
            len(comparison_rows),
            len(event_rows),
            len(images),
        )
        return PreferenceRows(
            votes=vote_rows, comparisons=comparison_rows, events=event_rows, images=images, items=items
        )

    @contextmanager
    def feedback_reader(
        self,
        *,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        min_votes: int = 0,
        campaign: str | None = None,
        without_raters: Collection[int] = (),
        chunk_size: int = READ_CHUNK_ROWS,
    ) -> Iterator[FeedbackReader]:
        """The feedback :meth:`preference_rows` selects (same filters), less that of ``without_raters``, streamed.

        Every query of the reader runs in one read transaction (one snapshot: on Postgres at REPEATABLE READ), and
        rows come from the database ``chunk_size`` at a time, so an export holds one chunk, not the whole store.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        with self._read() as s:
            if self._engine.dialect.name == "postgresql":
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            selects = self._feedback_selects(
                s,
                model=model,
                since=since,
                until=until,
                min_votes=min_votes,
                campaign=campaign,
                without_raters=without_raters,
            )
            yield FeedbackReader(s, selects, self.images, chunk_size)

    def _feedback_selects(
        self,
        s: Session,
        *,
        model: str | None,
        since: datetime | None,
        until: datetime | None,
        min_votes: int,
        campaign: str | None,
        without_raters: Collection[int] = (),
    ) -> _FeedbackSelects:
        """The filtered votes, comparisons and vote events (the filters of :meth:`preference_rows`), unordered."""

        def filtered(query: Select, when: Any, *generations: Any) -> Select:
            """``query`` within the time window, on images of the chosen model."""
            if since is not None:
                query = query.where(when >= since)
            if until is not None:
                query = query.where(when < until)
            if model is not None:
                query = query.where(*(or_(g.model_name == model, g.model_hash == model) for g in generations))
            return query

        left, right = aliased(Image), aliased(Image)
        left_gen, right_gen = aliased(Generation), aliased(Generation)
        vote_query = (
            select(*(getattr(Vote, field.name) for field in fields(VoteRow)))
            .join(Image, Image.id == Vote.image_id)
            .join(Generation, Generation.id == Image.generation_id)
        )
        comparison_query = (
            select(*(getattr(Comparison, field.name) for field in fields(ComparisonRow)))
            .join(left, left.id == Comparison.left_image_id)
            .join(left_gen, left_gen.id == left.generation_id)
            .join(right, right.id == Comparison.right_image_id)
            .join(right_gen, right_gen.id == right.generation_id)
        )
        event_query = (
            select(*(getattr(VoteEvent, field.name) for field in fields(VoteEventRow)))
            .join(Image, Image.id == VoteEvent.image_id)
            .join(Generation, Generation.id == Image.generation_id)
        )
        if campaign is not None:
            campaign_id = self._campaign_named(s, campaign).id
            data_items = (CampaignItem.campaign_id == campaign_id, CampaignItem.gold_answer.is_(None))
            item_images = select(CampaignItem.image_id).where(*data_items, CampaignItem.image_id.is_not(None))
            vote_query = vote_query.where(Vote.image_id.in_(item_images))
            event_query = event_query.where(VoteEvent.image_id.in_(item_images))
            left_id, right_id = Comparison.left_image_id, Comparison.right_image_id
            comparison_query = comparison_query.where(
                select(CampaignItem.id)
                .where(
                    *data_items,
                    or_(
                        and_(CampaignItem.left_image_id == left_id, CampaignItem.right_image_id == right_id),
                        and_(CampaignItem.left_image_id == right_id, CampaignItem.right_image_id == left_id),
                    ),
                )
                .exists()
            )
        vote_query = filtered(vote_query, Vote.updated_at, Generation)
        comparison_query = filtered(comparison_query, Comparison.created_at, left_gen, right_gen)
        event_query = filtered(event_query, VoteEvent.created_at, Generation)
        if min_votes > 0:  # an image's judgements: its current votes and the comparisons it is in, as filtered
            judgements = union_all(
                vote_query.with_only_columns(Vote.image_id.label("image_id"), maintain_column_froms=True),
                comparison_query.with_only_columns(
                    Comparison.left_image_id.label("image_id"), maintain_column_froms=True
                ),
                comparison_query.with_only_columns(
                    Comparison.right_image_id.label("image_id"), maintain_column_froms=True
                ),
            ).subquery()
            judged = select(judgements.c.image_id).group_by(judgements.c.image_id).having(func.count() >= min_votes)
            vote_query = vote_query.where(Vote.image_id.in_(judged))
            comparison_query = comparison_query.where(
                Comparison.left_image_id.in_(judged), Comparison.right_image_id.in_(judged)
            )
            event_query = event_query.where(VoteEvent.image_id.in_(judged))
        if without_raters:
            raters = sorted(set(without_raters))
            vote_query = vote_query.where(*(Vote.rater_id.not_in(chunk) for chunk in _chunks(raters)))
            comparison_query = comparison_query.where(
                *(Comparison.rater_id.not_in(chunk) for chunk in _chunks(raters))
            )
            event_query = event_query.where(*(VoteEvent.rater_id.not_in(chunk) for chunk in _chunks(raters)))
        return _FeedbackSelects(
            votes=vote_query,
            comparisons=comparison_query,
            events=event_query,
            images=(Image, Generation),
            compared_images=((left, left_gen), (right, right_gen)),
        )

    # -- helpers ------------------------------------------------------------------------------

    def _image_rows(self, s: Session, image_ids: list[str]) -> dict[str, ImageRow]:
        rows: dict[str, ImageRow] = {}
        columns = _image_columns(Image, Generation)
        for chunk in _chunks(image_ids):
            query = select(*columns).join(Generation, Generation.id == Image.generation_id).where(Image.id.in_(chunk))
            for values in s.execute(query):
                image = _image_row(self.images, values)
                rows[image.id] = image
        return rows

    @staticmethod
    def _item_keys(s: Session, image_ids: list[str]) -> dict[str, str]:
        """Image id -> sha256 of the image's content and of the text it was generated from."""
        keys: dict[str, str] = {}
        texts = ("prompt", "enhanced_prompt", "model_prompt")
        columns = (Image.id, Image.sha256, *(getattr(Generation, key) for key in texts))
        for chunk in _chunks(image_ids):
            for image_id, sha256, *values in s.execute(select(*columns).join(Generation).where(Image.id.in_(chunk))):
                text = generated_from(dict(zip(texts, values)))
                keys[image_id] = hashlib.sha256(f"{sha256}\n{text}".encode()).hexdigest()
        return keys

    @staticmethod
    def _campaign_named(s: Session, name: str) -> Campaign:
        campaign = s.scalars(select(Campaign).where(Campaign.name == name)).one_or_none()
        if campaign is None:
            raise FeedbackError(f"There is no campaign named {name!r}.")
        return campaign

    @staticmethod
    def _campaign_infos(s: Session, campaigns: list[Campaign]) -> list[CampaignInfo]:
        """Each campaign with its item, gold, answer and complete-item counts, in one query for all of them."""
        ids = [campaign.id for campaign in campaigns]
        counts = (
            select(CampaignAnswer.item_id, func.count().label("n"))
            .where(CampaignAnswer.campaign_id.in_(ids))
            .group_by(CampaignAnswer.item_id)
            .subquery()
        )
        n = func.coalesce(counts.c.n, 0)
        is_gold = CampaignItem.gold_answer.is_not(None)
        stats = {
            campaign_id: [int(value or 0) for value in values]
            for campaign_id, *values in s.execute(
                select(
                    CampaignItem.campaign_id,
                    func.count(),
                    func.sum(case((is_gold, 1), else_=0)),
                    func.sum(n),
                    func.sum(case((and_(~is_gold, n >= Campaign.answers_wanted), 1), else_=0)),
                )
                .join(Campaign, Campaign.id == CampaignItem.campaign_id)
                .outerjoin(counts, counts.c.item_id == CampaignItem.id)
                .where(CampaignItem.campaign_id.in_(ids))
                .group_by(CampaignItem.campaign_id)
            )
        }
        return [
            CampaignInfo(
                c.id, c.name, c.kind, c.guidelines, c.answers_wanted, c.gold_rate, c.created_at, c.closed_at,
                *stats.get(c.id, [0, 0, 0, 0]),
            )
            for c in campaigns
        ]  # fmt: skip

    def _has_answered(self, item_id: int, rater_id: int) -> bool:
        with self._read() as s:
            query = select(CampaignAnswer.id).where(
                CampaignAnswer.item_id == item_id, CampaignAnswer.rater_id == rater_id
            )
            return s.scalar(query) is not None

    def _remember_rater(self, anon_id: str, rater_id: int, account: str | None) -> None:
        """Keep a rater's id for the next request (raters are never deleted, so it stays right; a full cache starts
        over rather than grow)."""
        if len(self._known_raters) >= _KNOWN_RATERS:
            self._known_raters.clear()
        self._known_raters[anon_id] = (rater_id, account)

    def _find_rater(self, anon_id: str) -> tuple[int, str | None] | None:
        """The rater's id and signed-in account, or None for an id never seen."""
        with self._read() as s:
            row = s.execute(select(Rater.id, Rater.account).where(Rater.anon_id == anon_id)).first()
        return None if row is None else (row.id, row.account)

    @staticmethod
    def _require_rater(s: Session, rater_id: int) -> None:
        if s.get(Rater, rater_id) is None:
            raise FeedbackError(_UNKNOWN_RATER)

    @staticmethod
    def _require_images(s: Session, image_ids: list[str]) -> None:
        found = set(s.scalars(select(Image.id).where(Image.id.in_(image_ids))))
        if found != set(image_ids):
            raise FeedbackError(_UNKNOWN_IMAGE)

    def _hash_ip(self, ip: str | None) -> str | None:
        """HMAC of the address under today's (UTC) IP key, which is replaced when the day changes."""
        if not ip:
            return None
        return hmac.new(self.keys.ip_key(datetime.now(UTC).date()), ip.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _FeedbackSelects:
    """The filtered feedback queries (columns of VoteRow, ComparisonRow, VoteEventRow), with the image and generation
    entities each is joined to, so that a reader can add the images' columns."""

    votes: Select
    comparisons: Select
    events: Select
    images: tuple[Any, Any]  # (Image, Generation) of votes and events
    compared_images: tuple[tuple[Any, Any], tuple[Any, Any]]  # (image, generation) aliases of left and right


class FeedbackReader:
    """The feedback one export reads, in one read transaction, streamed: each method runs one query and yields its
    rows as the database sends them, ``chunk_size`` at a time, so memory holds a chunk whatever the store's size.

    Made by :meth:`FeedbackStore.feedback_reader`; valid inside its ``with`` block only. Two of its streams may be
    read side by side (a merge by rater).
    """

    def __init__(self, session: Session, selects: _FeedbackSelects, images: ImageFiles, chunk_size: int) -> None:
        self._session, self._selects, self._images, self._chunk_size = session, selects, images, chunk_size

    def votes(self, *, by_rater: bool = False) -> Iterator[tuple[VoteRow, ImageRow]]:
        """Current votes with their images, in the order they were first cast; ``by_rater``: grouped by rater."""
        image, generation = self._selects.images
        query = self._selects.votes.add_columns(*_image_columns(image, generation))
        order = (Vote.rater_id, Vote.id) if by_rater else (Vote.id,)
        width = len(fields(VoteRow))
        for row in self._stream(query.order_by(*order)):
            yield VoteRow(*row[:width]), _image_row(self._images, row[width:])

    def comparisons(self) -> Iterator[tuple[ComparisonRow, ImageRow, ImageRow]]:
        """Comparisons with their left and right images, in the order they were made (their ids)."""
        (left, left_gen), (right, right_gen) = self._selects.compared_images
        image_columns = _image_columns(left, left_gen) + _image_columns(right, right_gen)
        query = self._selects.comparisons.add_columns(*image_columns).order_by(Comparison.id)
        width, image_width = len(fields(ComparisonRow)), len(image_columns) // 2
        for row in self._stream(query):
            images = row[width:]
            yield (
                ComparisonRow(*row[:width]),
                _image_row(self._images, images[:image_width]),
                _image_row(self._images, images[image_width:]),
            )

    def compared_pairs(self) -> Iterator[tuple[int, str, str]]:
        """(rater, left image, right image) of every comparison, grouped by rater: no images, for a merge by rater."""
        query = self._selects.comparisons.with_only_columns(
            Comparison.rater_id, Comparison.left_image_id, Comparison.right_image_id, maintain_column_froms=True
        )
        for row in self._stream(query.order_by(Comparison.rater_id, Comparison.id)):
            yield row[0], row[1], row[2]

    def repeated_comparisons(self) -> dict[tuple[int, frozenset[str]], tuple[int, ComparisonRow]]:
        """(rater, the two images) -> (id of the first, the latest) for each pair a rater compared more than once.

        The store has kept one row per rater and pair since December 2026; older databases may hold repeats.
        """
        compared = self._selects.comparisons.subquery()
        left, right = compared.c.left_image_id, compared.c.right_image_id
        low, high = case((left < right, left), else_=right), case((left < right, right), else_=left)
        groups = (
            select(func.min(compared.c.id).label("first"), func.max(compared.c.id).label("latest"))
            .group_by(compared.c.rater_id, low, high)
            .having(func.count() > 1)
            .subquery()
        )
        columns = (getattr(Comparison, field.name) for field in fields(ComparisonRow))
        query = select(groups.c.first, *columns).join(Comparison, Comparison.id == groups.c.latest)
        repeated = {}
        for first, *values in self._session.execute(query):
            latest = ComparisonRow(*values)
            repeated[(latest.rater_id, frozenset((latest.left_image_id, latest.right_image_id)))] = (first, latest)
        return repeated

    def events(self) -> Iterator[tuple[VoteEventRow, ImageRow]]:
        """Every vote event (changes and take-backs too) with its image, in order."""
        image, generation = self._selects.images
        query = self._selects.events.add_columns(*_image_columns(image, generation)).order_by(VoteEvent.id)
        width = len(fields(VoteEventRow))
        for row in self._stream(query):
            yield VoteEventRow(*row[:width]), _image_row(self._images, row[width:])

    def voted_images(self) -> int:
        """How many distinct images the votes are on."""
        votes = self._selects.votes.subquery()
        return self._session.scalar(select(func.count(distinct(votes.c.image_id)))) or 0

    def _stream(self, query: Select) -> Iterator[Row[Any]]:
        # yield_per: SQLite steps its cursor, psycopg opens a server-side cursor; chunk_size rows at a time
        yield from self._session.execute(query.execution_options(yield_per=self._chunk_size))


def _image_columns(image: Any, generation: Any) -> list[Any]:
    """The columns :func:`_image_row` reads, of ``image`` and its ``generation`` (entities or aliases)."""
    return [
        image.id,
        image.generation_id,
        image.batch_index,
        image.sha256,
        image.path,
        image.width,
        image.height,
        generation.created_at,
        *(getattr(generation, key) for key in PROVENANCE_KEYS),
        generation.extra,
    ]


def _image_row(files: ImageFiles, values: Any) -> ImageRow:
    """An :class:`ImageRow` from the values of :func:`_image_columns`."""
    image_id, generation_id, batch_index, sha256, relpath, width, height, created_at, *rest = values
    provenance = dict(zip(PROVENANCE_KEYS, rest[: len(PROVENANCE_KEYS)], strict=True))
    provenance["extra"] = extra = rest[len(PROVENANCE_KEYS)]
    if extra.get("seeds"):  # the image's own seed regenerates it alone
        provenance["seed"] = extra["seeds"][batch_index]
    return ImageRow(
        id=image_id,
        generation_id=generation_id,
        batch_index=batch_index,
        sha256=sha256,
        file=relpath,
        path=files.path(relpath),
        width=width,
        height=height,
        generated_at=created_at,
        provenance=provenance,
    )


def _check_campaign_items(kind: str, items: list[CampaignItemSpec]) -> list[str]:
    """Refuse items of the wrong shape, bad gold answers, repeats, or no normal item; returns the images named."""
    if not items:
        raise FeedbackError("A campaign needs at least one item in items.")
    seen: dict[frozenset[str], int] = {}
    image_ids: dict[str, None] = {}  # in order, once each
    for number, spec in enumerate(items, start=1):
        if kind == "vote":
            if not spec.image_id or spec.left_image_id or spec.right_image_id:
                raise FeedbackError(
                    f"Item {number} of a vote campaign needs an image_id and no left_image_id or right_image_id."
                )
            images = (spec.image_id,)
        else:
            if spec.image_id or not spec.left_image_id or not spec.right_image_id:
                raise FeedbackError(
                    f"Item {number} of a pair campaign needs a left_image_id and a right_image_id and no image_id."
                )
            if spec.left_image_id == spec.right_image_id:
                raise FeedbackError(f"Item {number} needs two different images in left_image_id and right_image_id.")
            images = (spec.left_image_id, spec.right_image_id)
        if spec.gold_answer is not None and spec.gold_answer not in CAMPAIGN_ANSWERS[kind]:
            raise FeedbackError(
                f"Item {number}'s gold_answer must be one of {', '.join(CAMPAIGN_ANSWERS[kind])} or None, "
                f"not {spec.gold_answer!r}."
            )
        key = frozenset(images)
        if key in seen:
            raise FeedbackError(f"Item {number} shows the same image(s) as item {seen[key]}; each item must differ.")
        seen[key] = number
        image_ids.update(dict.fromkeys(images))
    if all(spec.gold_answer is not None for spec in items):
        raise FeedbackError("A campaign needs at least one item without a gold_answer: gold items only check raters.")
    return list(image_ids)


def _campaign_item_row(item: CampaignItem, kind: str) -> CampaignItemRow:
    return CampaignItemRow(
        id=item.id,
        campaign_id=item.campaign_id,
        kind=kind,
        image_id=item.image_id,
        left_image_id=item.left_image_id,
        right_image_id=item.right_image_id,
        is_gold=item.gold_answer is not None,
    )


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None for anything else (bools included: True is not a count)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _with_like_rate(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({"likes": int, "dislikes": int})
    frame["votes"] = frame["likes"] + frame["dislikes"]
    frame["like_rate"] = (frame["likes"] / frame["votes"]).astype(float)
    return frame


def _clean_comment(comment: str | None) -> str | None:
    if comment is None:
        return None
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise FeedbackError(f"Comments can be at most {MAX_COMMENT_CHARS} characters (yours has {len(comment)}).")
    return comment or None


def _chunks(items: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _sided(outcome: str, swapped: bool) -> str:
    """A comparison outcome as seen with the two images the other way round when ``swapped`` (ties stay ties)."""
    return _SWAPPED.get(outcome, outcome) if swapped else outcome


def _is_busy(error: OperationalError) -> bool:
    """Whether the database refused because another writer held its lock past the timeout: SQLite's busy or
    locked (extended codes keep those in the low byte), or Postgres's lock_timeout."""
    cause = error.orig
    code = getattr(cause, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return getattr(cause, "sqlstate", None) == _PG_LOCK_NOT_AVAILABLE
