"""Input validation, rate limits and anonymous rater identity.

Everything a browser or an API client sends passes through here before it reaches the model or
the store, so that bad input always comes back as one clear sentence (``InvalidInput``) and never
as a traceback. Raters are anonymous: a rater is a keyed hash of the signed rater token
(``app.rater_tokens``), and the IP goes only to the store, which keeps nothing but a keyed hash of it.
Limits count per rater and per IP address, the IP first, so that no new rater is created for a
client that is already over its address's limit.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.generation import GenerationRequest
from app.reranker import NO_REWARD_MODEL
from app.settings import Settings
from feedback.models import COMPARISON_OUTCOMES
from model.pipeline.limits import MAX_SEED

_IMAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# C0 control characters other than tab and newline: PostgreSQL rejects NUL, and none of them mean anything here.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class InvalidInput(ValueError):
    """Bad input from a user or client; the message is shown to them as is."""


class RateLimited(InvalidInput):
    """Over a rate limit; the message says how long to wait."""


@dataclass(frozen=True)
class RaterIdentity:
    """Who is rating, as far as an anonymous demo can tell: hashed session, and the IP for the store to hash."""

    anon_id: str
    ip: str | None


class RateLimiter:
    """Sliding-window limit of ``limit`` events per ``window_s`` seconds for each key."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, what: str) -> None:
        """Count one event for ``key``; raise InvalidInput when the window is full."""
        now = time.monotonic()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and now - events[0] >= self.window_s:
                events.popleft()
            if len(events) >= self.limit:
                wait = self.window_s - (now - events[0])
                raise RateLimited(f"Too many {what}; please wait {wait:.0f} s and try again.")
            events.append(now)
            if len(self._events) > 10_000:  # forget idle sessions so memory stays bounded
                self._events = {k: v for k, v in self._events.items() if v and now - v[-1] < self.window_s}


def clean_text(value: Any, field: str, limit: int, required: bool = False) -> str:
    """Strip whitespace and control characters; enforce a length limit with a message naming the field."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"The {field} must be text.")
    text = _CONTROL.sub("", value).strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry and no database stores
        raise InvalidInput(f"The {field} contains characters that are not valid text.") from None
    if required and not text:
        raise InvalidInput(f"Please enter a {field}.")
    if len(text) > limit:
        raise InvalidInput(f"The {field} is {len(text)} characters long; the limit is {limit}.")
    return text


def whole_number(value: Any, field: str, low: int, high: int) -> int:
    """Accept ints and integral floats (JSON clients send 50.0) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise InvalidInput(f"The {field} must be a whole number from {low} to {high}.")
    whole = isinstance(value, int) or value.is_integer()  # no float(): an int past 1e308 would overflow
    if not whole or not low <= value <= high:
        got = f" (got {value:g})" if abs(value) < 1e15 else ""  # a 300-digit number is not worth repeating
        raise InvalidInput(f"The {field} must be a whole number from {low} to {high}{got}.")
    return int(value)


def choice(value: Any, field: str, options: Sequence[str]) -> str:
    """Check that ``value`` is one of ``options``."""
    if not isinstance(value, str) or value not in options:  # the value itself is not echoed: it may be anything
        raise InvalidInput(f"Unknown {field}; choose one of {', '.join(options)}.")
    return value


class Guard:
    """Validates every public input against the limits in ``Settings``."""

    def __init__(
        self, settings: Settings, samplers: Sequence[str], aspects: Sequence[str], key: bytes | None = None
    ) -> None:
        """``key`` keys rater tokens; pass the install's secret so a rater outlives a restart."""
        self.settings = settings
        self.samplers = tuple(samplers)
        self.aspects = tuple(aspects)
        self.limiters = {
            "generations": (
                RateLimiter(settings.generations_per_minute_per_ip),
                RateLimiter(settings.generations_per_minute),
            ),
            "votes": (RateLimiter(settings.votes_per_minute_per_ip), RateLimiter(settings.votes_per_minute)),
        }
        self._key = key or secrets.token_bytes(32)

    def prompt(self, value: Any) -> str:
        return clean_text(value, "prompt", self.settings.max_prompt_chars, required=True)

    @staticmethod
    def seed(value: Any) -> int | None:
        """A seed from 0 to ``MAX_SEED``, or -1 (returned as None) for a random one."""
        seed = whole_number(value, "seed", -1, MAX_SEED)
        return None if seed == -1 else seed

    def generation(
        self,
        prompt: Any,
        negative_prompt: Any,
        enhanced_prompt: Any,
        steps: Any,
        cfg: Any,
        seed: Any,
        num_images: Any,
        aspect: Any,
        sampler: Any,
        best_of: Any = 1,
    ) -> GenerationRequest:
        """Validate a generation request; the enhanced prompt, when given, is what the model sees."""
        s = self.settings
        steps, num_images = (
            whole_number(steps, "number of steps", s.min_steps, s.max_steps),
            whole_number(num_images, "number of images", 1, s.max_images),
        )
        best_of = whole_number(best_of, "best of", 1, s.max_best_of)
        if best_of > 1 and s.reward_model is None:
            raise InvalidInput(NO_REWARD_MODEL)
        if steps * num_images * best_of > s.max_image_steps:
            drawn = f"{num_images} images" + (f" × best of {best_of}" if best_of > 1 else "")
            raise InvalidInput(
                f"{steps} steps × {drawn} is more work than one request may ask for "
                f"(at most {s.max_image_steps} image-steps); lower the number of steps or of images."
            )
        if isinstance(cfg, bool) or not isinstance(cfg, int | float) or not s.min_cfg <= cfg <= s.max_cfg:
            raise InvalidInput(f"The CFG scale must be a number from {s.min_cfg:g} to {s.max_cfg:g}.")
        return GenerationRequest(
            prompt=self.prompt(prompt),
            negative_prompt=clean_text(negative_prompt, "negative prompt", s.max_prompt_chars),
            enhanced_prompt=clean_text(enhanced_prompt, "enhanced prompt", s.max_prompt_chars) or None,
            steps=steps,
            cfg=float(cfg),
            seed=self.seed(seed),
            num_images=num_images,
            aspect=choice(aspect, "aspect ratio", self.aspects),
            sampler=choice(sampler, "sampler", self.samplers),
            best_of=best_of,
        )

    def vote(self, image_id: Any, value: Any, comment: Any) -> tuple[str, int, str | None]:
        """Validate a 👍/👎 vote: +1, -1, or 0 to undo, with an optional comment."""
        vote = whole_number(value, "vote", -1, 1)
        return self.image_id(image_id), vote, clean_text(comment, "comment", self.settings.max_comment_chars) or None

    def comparison(self, left: Any, right: Any, outcome: Any) -> tuple[str, str, str]:
        """Validate a pairwise judgement between two different images."""
        left_id, right_id = self.image_id(left), self.image_id(right)
        if left_id == right_id:
            raise InvalidInput("A comparison needs two different images.")
        return left_id, right_id, choice(outcome, "outcome", COMPARISON_OUTCOMES)

    @staticmethod
    def image_id(value: Any) -> str:
        """Check the shape of an image id; whether it exists is the store's question."""
        if not isinstance(value, str) or not _IMAGE_ID.match(value.strip()):
            raise InvalidInput("This image id is not valid; use an id returned by /generate.")
        return value.strip()

    def hit(self, action: str, ip: str | None, rater: int | None = None) -> None:
        """Count one of ``action`` ("generations" or "votes") against the IP's limit, or the rater's when given."""
        by_ip, by_rater = self.limiters[action]
        if rater is None:
            by_ip.hit(ip or "unknown", f"{action} from your network")
        else:
            by_rater.hit(str(rater), f"{action} from this browser")

    def admin(self, key: Any) -> bool:
        """Whether ``key`` is the host's admin key (none set: nobody is admin); constant-time."""
        admin = self.settings.admin_key
        if not admin or not isinstance(key, str):
            return False
        return hmac.compare_digest(key.encode(errors="replace"), admin.encode())

    def rater(self, token: str | None, ip: str | None) -> RaterIdentity:
        """Key the signed rater token so that the database never holds a live one."""
        if not token:
            raise InvalidInput(
                "This request carries no valid rater token: reload the page (API clients: get one from "
                "/rater_token and send it as the raphael_rater cookie)."
            )
        anon_id = hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()[:32]
        return RaterIdentity(anon_id=anon_id, ip=ip)
