"""Simulated raters: people with a hidden, measurable taste who use the real app through ``gradio_client``.

``make next-version`` registers a version when composition did not fall; that alone does not show that what the
raters wanted reached the model. A simulated rater's taste is a number computed from the image (and the scene its
prompt asks for), so whether tuning moved the model towards it can be measured, not guessed. The raters click
through the public API like a person at the page: one ``gradio_client.Client`` with its own rater cookie is one
rater, who stays the same rater across server restarts (as a browser does).

Two tastes:

- ``LargerEmoji``: the share of the image the emoji cover (``emoji_area``), something no prompt asks for. The
  bundled model's images vary in it from seed to seed (measured on 16 prompts, 4 seeds each, 25 steps: a
  standard deviation of 11% of the prompt's mean area), while the brightness of the named background barely moves
  (0.4%, half a grey level), so a background taste would ask raters to see what is not there.
- ``Correctness``: the recognizer reads the image as the scene its prompt asks for, the taste every real rater
  has; the prompts come with their scenes, so the truth is known.

Noise: a rater answers as the taste says with probability ``accuracy`` (0.8 to 0.9 for most raters) and otherwise
gives one of the other answers; a random clicker (``accuracy=None``) picks any answer, which is what the agreement
check (``feedback.agreement``) must catch before the export.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from app.rater_cookie import COOKIE
from feedback.models import COMPARISON_OUTCOMES
from model.data.captions import SIZE_WORDS
from model.data.scene import Scene
from model.evaluation.recognizer import Recognizer, load_default, score
from model.pipeline.samplers import DEFAULT_SAMPLER

log = logging.getLogger(__name__)

# A pixel belongs to an emoji when one of its channels differs from the backdrop by more than this (of 255): the
# model paints a named background within a few levels of its colour, and the domain's sprites stand far from it.
FOREGROUND_DISTANCE = 48
# Two images whose emoji areas are within 10% of each other look the same size (about the Weber fraction of area).
SIZE_TIE_RATIO = 0.9
_SIZE_WORD = re.compile(r"\b(" + "|".join(w for words in SIZE_WORDS.values() for w in words) + r")\b", re.I)
_WAIT = re.compile(r"please wait (\d+) s")
VOTES = (1, -1)


def emoji_area(image: np.ndarray) -> float:
    """Share of the pixels of a uint8 (H, W, 3) image that differ from its backdrop, the median of its 1-px frame.

    The frame's median is the backdrop the model actually painted, which need not be the colour the prompt named.
    Nearest-neighbour enlargement (how the app serves arena images) leaves the share unchanged.
    """
    pixels = image.astype(np.float32)  # (H, W, 3)
    frame = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])  # (2H + 2W, 3)
    distance = np.abs(pixels - np.median(frame, axis=0)).max(axis=-1)  # (H, W)
    return float((distance > FOREGROUND_DISTANCE).mean())


def native(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A served image at the model's own size: the app enlarges small images by a whole factor (nearest
    neighbour) for display, so every block's centre pixel is the model's pixel."""
    factor = image.shape[0] // height
    if factor < 1 or image.shape[:2] != (height * factor, width * factor):
        raise ValueError(
            f"A served image of {image.shape[1]}x{image.shape[0]} px is no enlargement of {width}x{height}."
        )
    return image[factor // 2 :: factor, factor // 2 :: factor]


def load_rgb(path: str | Path) -> np.ndarray:
    """A downloaded image as uint8 (H, W, 3)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


class Taste(Protocol):
    """A hidden preference over images of one prompt, measurable from the pixels and the prompt's scene."""

    name: str

    def fits(self, prompt: str) -> bool:
        """Whether a rater with this taste is shown ``prompt`` (a taste must not fight what the prompt asks)."""
        ...

    def score(self, images: Sequence[np.ndarray], scene: Scene) -> list[float]:
        """The taste's measure of each image of one prompt (one size); higher is better."""
        ...

    def likes(self, scores: Sequence[float]) -> list[bool]:
        """Which images of one page earn a 👍."""
        ...

    def outcome(self, left: float, right: float) -> str:
        """The pairwise answer (one of ``COMPARISON_OUTCOMES``) for two images' scores."""
        ...


class LargerEmoji:
    """Prefers larger emoji: score = ``emoji_area``.

    👍 for the images of a page above the page's median area: how large an emoji should be is relative to the
    prompt (two objects cover more than one), so a rater judges the page's images against each other. In a pair
    the larger wins, unless the two are within ``SIZE_TIE_RATIO`` of each other (a tie). Prompts that name a size
    are not shown, so the taste is one the prompt does not ask for.
    """

    name = "size"

    def fits(self, prompt: str) -> bool:
        return _SIZE_WORD.search(prompt) is None

    def score(self, images: Sequence[np.ndarray], scene: Scene) -> list[float]:
        return [emoji_area(image) for image in images]

    def likes(self, scores: Sequence[float]) -> list[bool]:
        median = float(np.median(scores))
        return [value > median for value in scores]

    def outcome(self, left: float, right: float) -> str:
        if min(left, right) >= SIZE_TIE_RATIO * max(left, right):
            return "tie"
        return "left" if left > right else "right"


class Correctness:
    """Prefers images that show what the prompt asks: score = the share of the recognizer's four checks
    (identity, count, background, position) the image passes against the prompt's scene.

    👍 only when all four pass (composition). In a pair the image passing more checks wins; two correct images
    tie and two equally wrong ones are both bad.
    """

    name = "correctness"

    def __init__(self, recognizer: Recognizer | None = None) -> None:
        self.recognizer = recognizer or load_default()

    def fits(self, prompt: str) -> bool:
        return True

    def score(self, images: Sequence[np.ndarray], scene: Scene) -> list[float]:
        result = score(np.stack(images), [scene] * len(images), self.recognizer)
        checks = ("identity", "count", "background", "position")
        return [float(np.mean([result[check][i] for check in checks])) for i in range(len(images))]

    def likes(self, scores: Sequence[float]) -> list[bool]:
        return [value == 1.0 for value in scores]

    def outcome(self, left: float, right: float) -> str:
        if left == right:
            return "tie" if left == 1.0 else "both_bad"
        return "left" if left > right else "right"


TASTES = {"size": LargerEmoji, "correctness": Correctness}


def make_taste(name: str) -> Taste:
    """The taste called ``name`` (a key of ``TASTES``)."""
    if name not in TASTES:
        raise ValueError(f"Unknown taste {name!r}; choose one of {', '.join(TASTES)}.")
    return TASTES[name]()


def accuracies(k: int, low: float = 0.8, high: float = 0.9) -> list[float]:
    """``k`` agreement rates spread evenly inside ``[low, high]`` (one rater gets the middle), so a panel has
    better and worse raters as a real one does."""
    return [low + (high - low) * (i + 0.5) / k for i in range(k)]


@dataclass
class Judge:
    """What a rater answers: the taste's answer with probability ``accuracy``, else one of the other answers;
    ``accuracy=None`` clicks at random."""

    taste: Taste
    accuracy: float | None
    rng: random.Random

    def votes(self, scores: Sequence[float]) -> list[int]:
        """👍 (1) or 👎 (-1) for each image of one page."""
        if self.accuracy is None:
            return [self.rng.choice(VOTES) for _ in scores]
        return [(1 if liked else -1) * self._keep_or_flip() for liked in self.taste.likes(scores)]

    def pair(self, left: float, right: float) -> str:
        """The answer to "which is better?" for two images' scores."""
        if self.accuracy is None:
            return self.rng.choice(COMPARISON_OUTCOMES)
        truth = self.taste.outcome(left, right)
        if self.rng.random() < self.accuracy:
            return truth
        return self.rng.choice([outcome for outcome in COMPARISON_OUTCOMES if outcome != truth])

    def _keep_or_flip(self) -> int:
        return 1 if self.rng.random() < self.accuracy else -1


@dataclass(frozen=True)
class Page:
    """One ``/generate`` answer as every rater of a run sees it (they share one taste, so one measurement)."""

    prompt: str
    scene: Scene
    image_ids: list[str]
    images: list[np.ndarray]  # uint8 (H, W, 3) at the model's size
    scores: list[float]  # the taste's hidden measure of each image


@dataclass(frozen=True)
class Battle:
    """One judged arena battle: what was drawn, what the rater answered, and which version sat on which side."""

    battle_id: int
    prompt: str
    outcome: str
    model_a: str  # left
    model_b: str  # right
    score_a: float
    score_b: float


@dataclass
class SimulatedRater:
    """A rater with a ``Judge``, using the app through a ``gradio_client.Client`` of its own.

    ``token`` is the rater cookie, signed by the server on the first connection (``/rater_token``): the app keys it
    into the same rater id after a restart, so one simulated person is one rater in the store across rounds.
    """

    name: str
    judge: Judge
    token: str | None = None
    cast: Counter[str] = field(default_factory=Counter)  # votes, comparisons, generations and battles sent
    _client: Client | None = field(default=None, repr=False)

    def connect(self, url: str, downloads: Path) -> None:
        """Open a session on the server at ``url``; served images are downloaded under ``downloads``."""
        folder = downloads / self.name
        folder.mkdir(parents=True, exist_ok=True)
        if self.token is None:
            issuer = Client(url, verbose=False)
            self.token = issuer.predict(api_name="/rater_token")["token"]
            issuer.close()
        self._client = Client(
            url, verbose=False, headers={"Cookie": f"{COOKIE}={self.token}"}, download_files=str(folder)
        )

    def disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def predict(self, *args: Any, api_name: str) -> Any:
        """Call an endpoint; when the app says this session is over its rate limit, wait as told and retry once."""
        if self._client is None:
            raise RuntimeError(f"{self.name} is not connected to a server.")
        try:
            return self._client.predict(*args, api_name=api_name)
        except AppError as err:
            wait = _WAIT.search(str(err))
            if wait is None:
                raise
            log.info("%s waits %s s for the app's rate limit", self.name, wait.group(1))
            time.sleep(int(wait.group(1)) + 1)
            return self._client.predict(*args, api_name=api_name)

    def generate(self, prompt: str, scene: Scene, *, images: int, steps: int, cfg: float, seed: int) -> Page:
        """Draw ``images`` images of ``prompt`` at its scene's aspect through ``/generate`` and measure them."""
        gallery, summary, _ = self.predict(
            prompt, "", "", steps, cfg, seed, images, scene.bucket, DEFAULT_SAMPLER, api_name="/generate"
        )
        self.cast["generations"] += 1
        pixels = [load_rgb(item["image"]) for item in gallery]
        return Page(
            prompt=prompt,
            scene=scene,
            image_ids=[image["image_id"] for image in summary["images"]],
            images=pixels,
            scores=self.judge.taste.score(pixels, scene),
        )

    def rate(self, page: Page) -> None:
        """👍/👎 on every image of the page, then every pair of them (``/vote``, ``/compare``)."""
        for image_id, value in zip(page.image_ids, self.judge.votes(page.scores), strict=True):
            self.predict(image_id, value, "", api_name="/vote")
            self.cast["votes"] += 1
        for i, j in combinations(range(len(page.image_ids)), 2):
            outcome = self.judge.pair(page.scores[i], page.scores[j])
            self.predict(page.image_ids[i], page.image_ids[j], outcome, api_name="/compare")
            self.cast["comparisons"] += 1

    def battle(self, prompt: str, scene: Scene, *, steps: int, cfg: float) -> Battle:
        """Start an arena battle on ``prompt`` (``/arena``), judge the two anonymous images, and send the answer
        (``/arena_vote``), which reveals the versions."""
        left, right, shown = self.predict(prompt, "", steps, cfg, scene.bucket, DEFAULT_SAMPLER, api_name="/arena")
        pixels = [native(load_rgb(path), scene.height, scene.width) for path in (left, right)]
        score_a, score_b = self.judge.taste.score(pixels, scene)
        outcome = self.judge.pair(score_a, score_b)
        judged = self.predict(shown["battle_id"], outcome, api_name="/arena_vote")
        self.cast["battles"] += 1
        return Battle(shown["battle_id"], prompt, outcome, judged["model_a"], judged["model_b"], score_a, score_b)
