"""The scene recognizer: it learns from real scenes, and the shipped weights read real held-out scenes."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from model.data.dataset import EmojiScenes, SceneConfig
from model.evaluation.recognizer import (
    DEFAULT_DIR,
    WEIGHTS_NAME,
    Recognizer,
    evaluate,
    load_default,
    score,
    train_recognizer,
)

logger = logging.getLogger(__name__)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.slow
def test_tiny_training_lowers_the_loss_and_round_trips(tmp_path: Path) -> None:
    config = SceneConfig(num_emoji=4, max_objects=1, styles=("flat",), buckets=("1:1",))
    result = train_recognizer(
        config, steps=40, batch_size=32, out_dir=tmp_path, seed=0, eval_every=1000, eval_scenes=64
    )
    losses = result["losses"]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert not (tmp_path / "train_state.pt").exists()
    images, _, scenes = EmojiScenes(config, seed=3).batch(0, 8)
    trained, loaded = Recognizer.load(tmp_path), Recognizer.load(tmp_path)
    assert trained.predict(images) == loaded.predict(images)
    assert set(score(images, scenes, loaded)["accuracy"]) == {
        "identity",
        "count",
        "background",
        "position",
        "composition",
    }


requires_weights = pytest.mark.skipif(
    not (DEFAULT_DIR / WEIGHTS_NAME).exists(), reason=f"no shipped recognizer weights at {DEFAULT_DIR}"
)


@requires_weights
def test_shipped_recognizer_reads_real_heldout_scenes() -> None:
    accuracy = evaluate(load_default(), SceneConfig(), 64)
    logger.info("shipped recognizer on 64 real held-out scenes: %s", accuracy)
    assert accuracy["composition"] >= 0.95, accuracy


@requires_weights
def test_score_rejects_images_that_do_not_match() -> None:
    images, _, scenes = EmojiScenes(SceneConfig(split="heldout"), seed=4).batch(0, 32, bucket="1:1")
    honest = score(images, scenes)["accuracy"]["composition"]
    shifted = score(images, scenes[1:] + scenes[:1])["accuracy"]["composition"]
    assert shifted < 0.2 < honest
