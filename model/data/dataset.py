"""The emoji-scenes stream that the training script reads: (image, caption, ground truth).

Every sample is a pure function of ``(seed, split, index, bucket)``, so runs are reproducible
and resumable without storing data; sprites are cached per size, so after warm-up a sample
costs well under a millisecond at 32 px.
"""

import random

import numpy as np

from model.data.captions import make_caption
from model.data.config import SceneConfig
from model.data.scene import Scene, render_scene, sample_scene

__all__ = ["EmojiScenes", "SceneConfig"]


class EmojiScenes:
    """An endless, indexable, deterministic stream of captioned emoji scenes."""

    def __init__(self, config: SceneConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed

    def _rng(self, *key: object) -> random.Random:
        return random.Random(f"{self.seed}/{self.config.split}/" + "/".join(map(str, key)))

    def _describe(self, rng: random.Random, bucket: str | None) -> tuple[str, Scene]:
        scene = sample_scene(rng, self.config, bucket)  # rendering draws nothing from rng
        return make_caption(scene, rng, self.config.split, self.config.paraphrases), scene

    def _draw(self, rng: random.Random, bucket: str | None) -> tuple[np.ndarray, str, Scene]:
        caption, scene = self._describe(rng, bucket)
        return render_scene(scene), caption, scene

    def sample(self, index: int) -> tuple[np.ndarray, str, Scene]:
        """Sample ``index``: a uint8 (H, W, 3) image in a random bucket, its caption and its scene."""
        return self._draw(self._rng("sample", index), None)

    def describe(self, index: int) -> tuple[str, Scene]:
        """The caption and scene of sample ``index`` without rendering it, for callers that need no pixels."""
        return self._describe(self._rng("sample", index), None)

    def bucket_of(self, index: int) -> str:
        """The aspect bucket of batch ``index`` when the caller names none."""
        return self._rng("bucket", index).choice(self.config.bucket_names)

    def batch(
        self, index: int, batch_size: int, bucket: str | None = None, stream: str = "batch"
    ) -> tuple[np.ndarray, list[str], list[Scene]]:
        """Batch ``index``: ``batch_size`` scenes of one bucket, images stacked as (B, H, W, 3) uint8.

        With ``bucket=None`` the bucket is drawn deterministically from ``(seed, index)``. ``stream`` names an
        independent series of batches of the same seed (a replay of earlier scenes draws its own).
        """
        if bucket is None:
            bucket = self.bucket_of(index)
        drawn = [self._draw(self._rng(stream, index, bucket, i), bucket) for i in range(batch_size)]
        images, captions, scenes = zip(*drawn, strict=True)
        return np.stack(images), list(captions), list(scenes)
