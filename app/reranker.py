"""Best-of-n: a reward model learned from the raters' votes orders candidate images, and the page shows the best.

The reward model (``model.evaluation.reward``: frozen MiniLM prompt embedding and recognizer trunk, a small head fit
to exported votes) scores every candidate for the prompt the model read; the top ones are shown, best first, and
their provenance says so (``best_of``, the reward model's version and each shown image's score), so a rater and an
export always know that an image was picked, not drawn.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image

from feedback.images import model_version
from model.evaluation.reward import load_reward_model, ranked
from model.pipeline.identity import model_name, weights_hash

log = logging.getLogger(__name__)

NO_REWARD_MODEL = "Best of n needs a reward model, and this server has none; set best of to 1."


class Reranker:
    """A reward model loaded from ``folder`` (``python -m model.evaluation.reward train`` writes one)."""

    def __init__(self, folder: Path) -> None:
        self.model = load_reward_model(folder, flag="--reward-model")
        self.version = model_version(model_name(Path(folder)), weights_hash(Path(folder)))
        log.info("Reward model %s loaded for best-of-n", self.version)

    def rank(self, images: list[Image.Image], prompt: str) -> tuple[list[int], list[float]]:
        """Candidate indices best first (ties keep the earlier candidate first) and every candidate's score."""
        return ranked(self.model, images, prompt)
