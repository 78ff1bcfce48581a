"""The emoji-scenes generator: pixels match ground truth, splits hold, captions say what is drawn."""

import itertools
import json
import random
import re
from dataclasses import replace

import numpy as np
import pytest

from model.data.atlas import load_atlas
from model.data.captions import (
    COLOUR_WORDS,
    COUNT_WORDS,
    SIZE_WORDS,
    emoji_words,
    fix_articles,
    heldout_words,
    make_caption,
    pluralise,
    whole_words,
)
from model.data.dataset import EmojiScenes, SceneConfig
from model.data.paraphrases import PARAPHRASES
from model.data.scene import Scene, region_box, render_scene, sample_scene, without_objects
from model.data.splits import is_reserved
from model.data.styles import STYLES
from model.data.vocab import BACKGROUNDS, POSITIONS
from model.pipeline.buckets import ASPECT_BUCKETS, bucket_size


def _scenes(sample_size: int, n: int, seed: int = 0, split: str = "train") -> list[Scene]:
    rng = random.Random(seed)
    config = SceneConfig(sample_size=sample_size, split=split)
    return [sample_scene(rng, config) for _ in range(n)]


def test_atlas_has_at_least_100_distinct_emoji() -> None:
    atlas = load_atlas()
    assert len(atlas) >= 100
    assert len(set(atlas.names)) == len(atlas)
    sprite = atlas.sprite(0, 13)
    assert sprite.size == (13, 13) and sprite.mode == "RGBA"


@pytest.mark.parametrize("sample_size", [32, 64])
def test_ground_truth_matches_pixels(sample_size: int) -> None:
    config = SceneConfig(sample_size=sample_size)
    for scene in _scenes(sample_size, 120, seed=sample_size):
        image = render_scene(scene).astype(np.int16)
        bare = render_scene(without_objects(scene)).astype(np.int16)
        ink = np.abs(image - bare).max(-1) > 0
        inside = np.zeros_like(ink)
        assert 1 <= sum(o.count for o in scene.objects) <= config.max_instances
        for obj in scene.objects:
            assert obj.count == len(obj.boxes)
            rx0, ry0, rx1, ry1 = region_box(obj.position, scene.height, scene.width)
            for x0, y0, x1, y1 in obj.boxes:
                assert 0 <= x0 < x1 <= scene.width and 0 <= y0 < y1 <= scene.height
                assert rx0 <= x0 and x1 <= rx1 and ry0 <= y0 and y1 <= ry1, (obj, scene.bucket)
                assert ink[y0:y1, x0:x1].any(), f"{obj.emoji} invisible in {scene.style}"
                inside[y0:y1, x0:x1] = True
        assert not (ink & ~inside).any(), "pixels changed outside the ground-truth boxes"
        for a, b in itertools.combinations(scene.objects, 2):
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.bounds, b.bounds
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, "objects overlap"
        assert len({o.position for o in scene.objects}) == len(scene.objects)


def test_determinism() -> None:
    a, b, c = EmojiScenes(SceneConfig(), seed=1), EmojiScenes(SceneConfig(), seed=1), EmojiScenes(SceneConfig(), 2)
    for index in range(5):
        (ia, ca, sa), (ib, cb, sb) = a.sample(index), b.sample(index)
        assert ia.tobytes() == ib.tobytes() and ca == cb and sa == sb
    batch_a, batch_b, batch_c = a.batch(3, 8), b.batch(3, 8), c.batch(3, 8)
    assert batch_a[0].tobytes() == batch_b[0].tobytes() and batch_a[1] == batch_b[1]
    assert batch_a[1] != batch_c[1]
    assert a.sample(0)[1] != a.sample(1)[1]
    for index in range(20):  # describe() is sample() without the pixels
        _, caption, scene = a.sample(index)
        assert a.describe(index) == (caption, scene)


@pytest.mark.parametrize("sample_size", [32, 64])
@pytest.mark.parametrize("bucket", list(ASPECT_BUCKETS))
def test_every_bucket_has_its_size(bucket: str, sample_size: int) -> None:
    images, captions, scenes = EmojiScenes(SceneConfig(sample_size=sample_size)).batch(0, 3, bucket=bucket)
    height, width = bucket_size(bucket, sample_size)
    assert images.shape == (3, height, width, 3) and images.dtype == np.uint8
    assert len(captions) == len(scenes) == 3 and all(s.bucket == bucket for s in scenes)


def test_batch_picks_one_bucket_per_batch() -> None:
    data = EmojiScenes(SceneConfig(buckets=("16:9", "9:16")))
    buckets = {data.batch(i, 2)[2][0].bucket for i in range(12)}
    assert buckets == {"16:9", "9:16"}


def test_train_and_heldout_are_disjoint_on_reserved_combinations() -> None:
    train = EmojiScenes(SceneConfig(), seed=5)
    heldout = EmojiScenes(SceneConfig(split="heldout"), seed=5)
    held_synonyms = {info.name: info.synonyms[-1] for info in load_atlas().emoji if len(info.synonyms) >= 2}
    for index in range(400):
        _, caption, scene = train.sample(index)
        assert not any(is_reserved(o.emoji, scene.background, o.position) for o in scene.objects)
        for obj in scene.objects:
            if obj.emoji in held_synonyms:
                held = held_synonyms[obj.emoji]
                forms = "|".join(re.escape(w) for w in (held, pluralise(held)))
                assert not re.search(rf"\b({forms})\b", caption.lower()), caption
    for index in range(100):
        _, _, scene = heldout.sample(index)
        assert any(is_reserved(o.emoji, scene.background, o.position) for o in scene.objects)


@pytest.mark.parametrize(("split", "paraphrases"), [("train", False), ("train", True), ("heldout", False)])
def test_captions_mention_emoji_colour_and_count(split: str, paraphrases: bool) -> None:
    rng = random.Random(11)
    sizes = "|".join(w for words in SIZE_WORDS.values() for w in words)
    for scene in _scenes(32, 300, seed=7, split=split):
        caption = make_caption(scene, rng, split, paraphrases).lower()
        colours = "|".join(COLOUR_WORDS[scene.background])
        assert re.search(rf"\b({colours})\b", caption), caption
        for obj in scene.objects:
            nouns = "|".join(re.escape(w) for w in sorted(emoji_words(obj.emoji), key=len, reverse=True))
            counts = "|".join(re.escape(w) for w in (*COUNT_WORDS[obj.count], *(("an",) if obj.count == 1 else ())))
            assert re.search(rf"\b({counts}) (({sizes}) )?({nouns})\b", caption), (caption, obj)
        assert not re.search(r"\ba (orange|outline|8-bit)\b|\ban (red|blue|pixel|flat)\b", caption), caption


def test_paraphrases_name_only_their_emoji() -> None:
    """No paraphrase holds another emoji's word, a held-out synonym, or a colour, count, size or position word."""
    atlas = load_atlas()
    assert set(PARAPHRASES) == set(atlas.names[:30])  # every emoji the curriculum trains
    assert all(len(words) >= 3 for words in PARAPHRASES.values())
    reserved = {
        *(w for words in COLOUR_WORDS.values() for w in words),
        *(w for words in COUNT_WORDS.values() for w in words if w != "a"),
        *(w for words in SIZE_WORDS.values() for w in words),
        *POSITIONS,
        *(w for info in atlas.emoji for w in heldout_words(info.name)),
    }
    for name, words in PARAPHRASES.items():
        others = {
            w
            for info in atlas.emoji
            if info.name != name
            for w in (info.name, info.plural, *info.synonyms, *PARAPHRASES.get(info.name, ()))
        }
        forbidden = re.compile(whole_words(reserved | others | {pluralise(w) for w in others}))
        for word in words:
            assert not forbidden.search(word), (name, word, forbidden.search(word))
            assert not forbidden.search(pluralise(word)), (name, pluralise(word))


def test_paraphrases_reach_training_captions_only() -> None:
    """The held-out prompts and the default training stream never change; a paraphrasing stream uses them."""
    config = SceneConfig(num_emoji=30, max_objects=2, max_count=2, styles=("flat",))
    words = re.compile(whole_words({f for ws in PARAPHRASES.values() for w in ws for f in (w, pluralise(w))}))

    def captions(**changes: object) -> list[str]:
        scenes = EmojiScenes(replace(config, **changes), seed=3)
        return [scenes.describe(i)[0].lower() for i in range(300)]

    assert sum(bool(words.search(c)) for c in captions(paraphrases=True)) > 60  # about a third name one
    assert not any(words.search(c) for c in captions())
    assert captions(split="heldout", paraphrases=True) == captions(split="heldout")


def test_articles_follow_the_next_word() -> None:
    fixed = fix_articles("A orange canvas with a apple, an outline sketch")
    assert fixed == "An orange canvas with an apple, an outline sketch"
    assert fix_articles("a unicorn and a ufo on a blue background") == "a unicorn and a ufo on a blue background"


def test_background_colours_stay_distinct_in_every_style() -> None:
    for style in STYLES:
        colours = []
        for name in BACKGROUNDS:
            scene = Scene("1:1", 32, 32, name, style, [], seed=3)
            colours.append(np.median(render_scene(scene).reshape(-1, 3), axis=0))
        gaps = [np.linalg.norm(a - b) for a, b in itertools.combinations(colours, 2)]
        assert min(gaps) > 30, style


def test_scene_round_trips_through_json() -> None:
    for scene in _scenes(64, 20):
        assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


def test_object_weights_set_how_often_a_scene_asks_for_each_number_of_emoji() -> None:
    """Weights shift the draw; a second emoji that finds no room still leaves a one-emoji scene."""

    def share_of_pairs(weights: tuple[float, ...] | None) -> float:
        rng = random.Random(3)
        config = SceneConfig(num_emoji=30, max_objects=2, max_count=2, object_weights=weights)
        return sum(len(sample_scene(rng, config).objects) == 2 for _ in range(1000)) / 1000

    uniform, more_pairs, only_pairs = share_of_pairs(None), share_of_pairs((1.0, 3.0)), share_of_pairs((0.0, 1.0))
    assert 0.25 < uniform < 0.42 and uniform + 0.1 < more_pairs < only_pairs - 0.1
    assert share_of_pairs((1.0, 0.0)) == 0


@pytest.mark.parametrize("weights", [(1.0,), (1.0, -1.0, 1.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)])
def test_object_weights_must_fit_the_scene(weights: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="object_weights"):
        SceneConfig(max_objects=len(weights) if len(weights) > 1 else 3, object_weights=weights)
