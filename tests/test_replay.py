"""Replay: a stage that widens the domain keeps a share of each batch on an earlier stage's slice."""

import json
from pathlib import Path

import numpy as np
import pytest

from model.data.atlas import load_atlas
from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.data.replay import ReplayMixture, replay_count
from model.training.bundle import bundle
from model.training.curriculum import load_curriculum
from model.training.train import main, parse_args, scene_stream
from tests.test_train import run_args

WHOLE = SceneConfig(max_objects=3, max_count=3)
SLICE = SceneConfig(num_emoji=30, max_objects=2, max_count=2, styles=("flat",), object_weights=(0.0, 1.0))


def test_a_batch_replays_its_share_of_the_earlier_slice_in_the_main_batch_bucket():
    main_scenes, replay = EmojiScenes(WHOLE, seed=10), EmojiScenes(SLICE, seed=10)
    mixture = ReplayMixture(main_scenes, replay, share=0.25)
    first_30 = set(load_atlas().names[:30])
    for index in range(6):
        images, captions, scenes = mixture.batch(index, 16)
        assert images.shape[0] == len(captions) == len(scenes) == 16
        bucket = main_scenes.bucket_of(index)
        assert {(s.width, s.height) for s in scenes} == {(images.shape[2], images.shape[1])}
        # the first 12 are the main stream's own batch, as a run without replay draws them
        own, own_captions, _ = main_scenes.batch(index, 12, bucket)
        np.testing.assert_array_equal(images[:12], own)
        assert captions[:12] == own_captions
        for scene in scenes[12:]:  # the last 4 are slice scenes: flat, at most two of the first 30 emoji, twice
            assert scene.style == "flat" and len(scene.objects) <= 2 and max(o.count for o in scene.objects) <= 2
            assert {o.emoji for o in scene.objects} <= first_30
    again = ReplayMixture(EmojiScenes(WHOLE, seed=10), EmojiScenes(SLICE, seed=10), share=0.25).batch(3, 16)
    np.testing.assert_array_equal(again[0], mixture.batch(3, 16)[0])  # a resumed run sees the same scenes


def test_the_replayed_scenes_are_not_the_slice_stages_own_batches():
    replay = EmojiScenes(SLICE, seed=2)
    mixture = ReplayMixture(EmojiScenes(WHOLE, seed=2), replay, share=0.5)
    _, captions, _ = mixture.batch(0, 8)
    bucket = EmojiScenes(WHOLE, seed=2).bucket_of(0)
    assert captions[4:] != replay.batch(0, 4, bucket)[1]  # a stream of its own, not a replay of stage 2's batch 0


@pytest.mark.parametrize(("share", "batch", "count"), [(0.25, 64, 16), (0.25, 8, 2), (0.01, 8, 1), (0.9, 4, 4)])
def test_replay_count_rounds_and_keeps_at_least_one(share: float, batch: int, count: int):
    assert replay_count(share, batch) == count


def test_a_mixture_that_cannot_hold_names_what_is_wrong():
    whole = EmojiScenes(WHOLE)
    with pytest.raises(ValueError, match="between 0 and 1"):
        ReplayMixture(whole, EmojiScenes(SLICE), share=1.0)
    with pytest.raises(ValueError, match="aspect buckets"):
        ReplayMixture(whole, EmojiScenes(SceneConfig(buckets=("1:1",))), share=0.2)
    with pytest.raises(ValueError, match="sample_size"):
        ReplayMixture(whole, EmojiScenes(SceneConfig(sample_size=64)), share=0.2)
    with pytest.raises(ValueError, match="at least 2"):
        ReplayMixture(whole, EmojiScenes(SLICE), share=0.2).batch(0, 1)


def test_a_curriculum_stage_replays_an_earlier_stage_scenes(tmp_path: Path):
    text = (
        "shipped = 1\n[stage.1]\nsteps = 5\ndata = { num_emoji = 30, styles = ['flat'] }\n"
        "[stage.2]\nafter = 1\nsteps = 5\ndata = { max_objects = 3 }\nreplay = { stage = 1, share = 0.25 }\n"
    )
    (tmp_path / "c.toml").write_text(text)
    stage = load_curriculum(tmp_path / "c.toml").stages[2]
    args = parse_args(stage.train_args())
    assert args.replay_share == 0.25 and json.loads(args.replay_scenes) == {"num_emoji": 30, "styles": ["flat"]}
    stream = scene_stream(args)
    assert isinstance(stream, ReplayMixture) and stream.config == stage.scene_config()
    assert stream.replay.config == SceneConfig(num_emoji=30, styles=("flat",))
    reworded = text.replace("share = 0.25 }", "share = 0.25, data = { paraphrases = true } }")
    (tmp_path / "c.toml").write_text(reworded)
    replay = load_curriculum(tmp_path / "c.toml").stages[2].replay
    assert replay.data == {"num_emoji": 30, "styles": ["flat"], "paraphrases": True}  # stage 1's, reworded


@pytest.mark.parametrize(
    ("replay", "message"),
    [
        ("{ stage = 3, share = 0.2 }", "listed before it"),
        ("{ stage = 1, share = 1.5 }", "between 0 and 1"),
        ("{ stage = 1 }", "takes 'stage', 'share'"),
        ("{ stage = 1, share = 0.2, data = { emoji = 3 } }", "unknown data keys"),
        ("{ stage = 1, share = 0.2, data = { max_count = 7 } }", "max_count"),
    ],
)
def test_a_wrong_replay_names_what_is_wrong(tmp_path: Path, replay: str, message: str):
    text = f"shipped = 1\n[stage.1]\nsteps = 5\n[stage.2]\nafter = 1\nsteps = 5\nreplay = {replay}\n"
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_curriculum(tmp_path / "c.toml")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--replay-share", "0.2"], "go together"),
        (["--replay-share", "0.2", "--replay-scenes", '{"emoji": 3}'], "Unknown scene settings"),
        (["--replay-share", "0.2", "--replay-scenes", "[30]"], "JSON object"),
    ],
)
def test_the_training_cli_refuses_a_replay_that_cannot_hold(
    flags: list[str], message: str, capsys: pytest.CaptureFixture
):
    with pytest.raises(SystemExit):
        parse_args(flags)
    assert message in capsys.readouterr().err


def test_a_run_with_replay_trains_and_records_it(tmp_path: Path):
    scenes = '{"num_emoji": 4, "max_objects": 1, "max_count": 1, "styles": ["flat"], "buckets": ["1:1"]}'
    main(run_args(tmp_path, 2, max_objects=2, replay_share=0.25, replay_scenes=scenes))
    record = json.loads((bundle(tmp_path / "run", tmp_path / "bundle") / "training.json").read_text())
    assert record["steps"] == 2 and record["data"]["max_objects"] == 2
    assert record["replay"] == {"share": 0.25, "data": json.loads(scenes)}
