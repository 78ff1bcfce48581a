"""Replay: a share of every batch drawn from an earlier stage's scenes, so a stage that widens the domain keeps the
slice the shipped weights already draw well.

The whole domain holds the earlier slice (the first 30 emoji, flat style, up to two objects) as a few percent of
its scenes, too few to keep it sharp; replaying a fixed share of slice scenes in each batch is the usual guard
against forgetting what an earlier stage taught. Each batch stays one aspect bucket (the main stream's), and
stays a pure function of the run's seed and the batch index, so a resumed run sees the same scenes.
"""

import numpy as np

from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.data.scene import Scene

REPLAY_STREAM = "replay"  # the replayed scenes' own series of the seed, apart from the main batches'


def replay_count(share: float, batch_size: int) -> int:
    """Scenes of a batch of ``batch_size`` taken from the replay: ``share`` of it, rounded, at least one."""
    return max(1, round(share * batch_size))


class ReplayMixture:
    """Batches of ``main`` whose last ``replay_count(share, B)`` scenes come from ``replay`` instead.

    ``config`` is the main stream's: the domain the run is trained for (the replayed slice lies inside it).
    """

    def __init__(self, main: EmojiScenes, replay: EmojiScenes, share: float) -> None:
        if not 0 < share < 1:
            raise ValueError(f"The replay share must be between 0 and 1 (exclusive), got {share}.")
        if missing := set(main.config.bucket_names) - set(replay.config.bucket_names):
            raise ValueError(f"The replayed scenes lack the aspect buckets {sorted(missing)} of the main scenes.")
        if replay.config.sample_size != main.config.sample_size:
            raise ValueError(
                f"The replayed scenes' sample_size {replay.config.sample_size} differs from the main scenes' "
                f"{main.config.sample_size}."
            )
        self.main, self.replay, self.share = main, replay, share

    @property
    def config(self) -> SceneConfig:
        return self.main.config

    def batch(self, index: int, batch_size: int) -> tuple[np.ndarray, list[str], list[Scene]]:
        """Batch ``index`` as ``EmojiScenes.batch`` gives it, (B, H, W, 3) uint8: main scenes, then replayed ones."""
        if batch_size < 2:
            raise ValueError(f"A replay needs batches of at least 2 scenes, got {batch_size}.")
        n_replay = min(replay_count(self.share, batch_size), batch_size - 1)
        bucket = self.main.bucket_of(index)
        images, captions, scenes = self.main.batch(index, batch_size - n_replay, bucket)
        old_images, old_captions, old_scenes = self.replay.batch(index, n_replay, bucket, stream=REPLAY_STREAM)
        return np.concatenate([images, old_images]), captions + old_captions, scenes + old_scenes
