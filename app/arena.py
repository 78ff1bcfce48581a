"""The arena: two model versions, drawn anonymously, draw the rater's prompt with one seed and one set of settings.

As in Chatbot Arena and GenAI-Arena, the rater judges before knowing which version made which image, and the
pairs of versions compared least so far are drawn first, so every pair gathers battles at the same pace. Each
judgement is a comparison too, so exports carry it with ``model_0``/``model_1``; the leaderboard
(``feedback.leaderboard``) turns the battles into Bradley-Terry ratings.
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from app.dashboard import version_labels
from app.generation import GenerationRequest, ProgressCallback
from app.versions import ModelVersions
from feedback.leaderboard import Leaderboard, Pair, leaderboard, least_compared_pair, pair_key
from feedback.store import ArenaBattleRow, FeedbackStore
from model.pipeline.limits import MAX_IMAGES, MAX_SEED

LEADERBOARD_BOOTSTRAP = 1000  # resamples of the battles for each rating's 95% interval


@dataclass(frozen=True)
class ArenaRound:
    """A battle as shown: which images sit left and right, and what both were generated from."""

    battle_id: int
    left_image_id: str
    right_image_id: str
    left_path: Path
    right_path: Path
    seed: int
    text: str  # what both models read
    warnings: list[str]


class ArenaService:
    """Draws the pair, runs both versions, stores the battle; judges it and ranks the versions."""

    def __init__(
        self,
        versions: ModelVersions,
        store: FeedbackStore,
        rng: random.Random | None = None,
        n_bootstrap: int = LEADERBOARD_BOOTSTRAP,
    ) -> None:
        self.versions = versions
        self.store = store
        self.rng = rng or random.SystemRandom()
        self.n_bootstrap = n_bootstrap

    @property
    def is_open(self) -> bool:
        """A battle needs two versions."""
        return len(self.versions.labels) >= 2

    def pair_counts(self) -> Counter[Pair]:
        """Judged battles per pair of the versions served now."""
        served = set(self.versions.labels)
        return Counter(
            pair_key(b.model_a, b.model_b) for b in self.store.arena_battles() if {b.model_a, b.model_b} <= served
        )

    def start(self, request: GenerationRequest, rater_id: int, progress: ProgressCallback | None = None) -> ArenaRound:
        """Generate one image with each of two versions (least-compared pair, random sides) and store the battle."""
        if not self.is_open:
            raise ValueError("The arena needs two model versions; this server serves one.")
        left, right = least_compared_pair(self.versions.labels, self.pair_counts(), self.rng)
        # One seed for both sides, drawn like the Generate tab draws one, so a rater can type it back in.
        seed = secrets.randbelow(MAX_SEED - MAX_IMAGES + 2) if request.seed is None else request.seed
        request = replace(request, seed=seed, num_images=1)
        stored = []
        for side, label in enumerate((left, right)):

            def on_step(step: int, total: int, side: int = side) -> None:
                if progress is not None:
                    progress(side * total + step, 2 * total)

            result = self.versions.service(label).run(request, progress=on_step)
            record = self.store.record_generation(rater_id, result.provenance, result.images)
            stored.append((record.image_ids[0], record.paths[0], result))
        (left_id, left_path, result), (right_id, right_path, _) = stored
        battle_id = self.store.start_battle(rater_id, left_id, right_id)
        return ArenaRound(
            battle_id=battle_id,
            left_image_id=left_id,
            right_image_id=right_id,
            left_path=left_path,
            right_path=right_path,
            seed=seed,
            text=request.model_prompt,
            warnings=result.warnings,
        )

    def judge(self, battle_id: int, rater_id: int, outcome: str) -> ArenaBattleRow:
        """Store the judgement; the returned battle names both versions, to be revealed now."""
        return self.store.judge_battle(battle_id, rater_id, outcome)

    def leaderboard(self) -> Leaderboard:
        """Bradley-Terry ratings with bootstrap intervals from every judged battle."""
        return leaderboard(self.store.arena_battles(), n_bootstrap=self.n_bootstrap)

    def like_rates(self) -> pd.DataFrame:
        """👍 share per version label (model, likes, dislikes, like_rate), for beside the ratings."""
        by_model = self.store.dashboard().by_model
        return by_model.assign(model=version_labels(by_model))[["model", "likes", "dislikes", "like_rate"]]

    def board(self) -> dict[str, Any]:
        """The ``/leaderboard`` answer: versions with lineage, ratings with like-rates, win rates, battle counts."""
        board = self.leaderboard().to_json()
        rates = self.like_rates().set_index("model")
        for row in board["ratings"]:
            rate = rates["like_rate"].get(row["model"])
            row["like_rate"] = None if rate is None or pd.isna(rate) else float(rate)
        return {"versions": [v.to_dict() for v in self.versions.describe()], **board}
