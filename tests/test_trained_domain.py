"""The trained domain of a bundle: read from training.json, and prompts checked against it."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from app.i18n import EN, I18N, ZH, page_i18n
from model.data.atlas import load_atlas
from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.data.scene import Scene
from model.evaluation.evaluate import prompt_wording
from model.prompts.prompt_enhancer import PromptEnhancer
from model.prompts.trained_domain import EmojiMentions, Mention, TrainedDomain

ROOT = Path(__file__).resolve().parents[1]
STAGE_1 = TrainedDomain(SceneConfig(num_emoji=30, max_objects=1, max_count=1, styles=("flat",)))


def write_training_json(folder: Path, data: dict | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "training.json").write_text(json.dumps({"steps": 5, **({"data": data} if data else {})}))
    return folder


def test_the_bundled_checkpoint_records_its_domain() -> None:
    domain = TrainedDomain.from_bundle(ROOT / "model" / "checkpoints" / "raphael-tiny")
    assert domain is not None
    assert domain.emoji == load_atlas().names[: domain.config.num_emoji]
    assert "RAPHAEL" not in domain.describe() and f"{len(domain.emoji)} emoji" in domain.describe()


def test_the_domain_is_read_from_training_json(tmp_path: Path) -> None:
    data = {"sample_size": 32, "num_emoji": 12, "max_objects": 2, "max_count": 2, "styles": "flat,night"}
    domain = TrainedDomain.from_bundle(write_training_json(tmp_path / "bundle", data | {"paraphrases": True}))
    expected = SceneConfig(num_emoji=12, max_objects=2, max_count=2, styles=("flat", "night"), paraphrases=True)
    assert domain == TrainedDomain(expected)
    assert domain.styles == ("flat", "night") and len(domain.emoji) == 12
    assert "up to two different emoji" in domain.describe() and "each up to two times" in domain.describe()
    chinese = domain.describe("zh")
    assert "至多两种不同的表情符号" in chinese and "每种至多两个" in chinese and "12 个表情符号" in chinese
    assert "flat 或 night" in chinese and "🐱 cat" in chinese  # names stay English: they are what to type


def test_each_page_language_gets_the_description(tmp_path: Path) -> None:
    data = {"sample_size": 32, "num_emoji": 12, "max_objects": 1, "max_count": 1, "styles": "flat"}
    domain = TrainedDomain.from_bundle(write_training_json(tmp_path / "bundle", data))
    translations = page_i18n(domain).translations_dict
    assert translations["en"]["domain"] == domain.describe() and "one emoji" in domain.describe()
    assert translations["zh"]["domain"] == domain.describe("zh") and "一个表情符号" in domain.describe("zh")
    assert translations["en"]["title"] == EN["title"] and translations["zh"]["title"] == ZH["title"]
    assert page_i18n(None) is I18N and "domain" not in EN


def test_pipelines_without_a_recorded_domain_have_none(tmp_path: Path) -> None:
    assert TrainedDomain.from_bundle(tmp_path) is None  # any other diffusers pipeline
    assert TrainedDomain.from_bundle(write_training_json(tmp_path / "no-data", None)) is None


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a cat on a blue background", [Mention("cat", 1)]),
        ("a kitty and a 🍎", [Mention("cat", 1), Mention("apple", 1)]),
        ("two medium-sized frogs", [Mention("frog", 2)]),
        ("a pushbike and two storm clouds", [Mention("bicycle", 1), Mention("cloud", 2)]),  # paraphrases
        ("a pair of kitties", [Mention("cat", 2)]),
        ("3 stars at the top", [Mention("star", 3)]),
        ("frogs", [Mention("frog", 2)]),
        ("two cats and a dog", [Mention("cat", 2), Mention("dog", 1)]),
        ("a starry night with no emoji", []),
        ("\u2600 and \u2764\ufe0f", [Mention("sun", 1), Mention("heart", 1)]),  # with or without the selector
    ],
)
def test_mentions_name_each_emoji_and_its_count(prompt: str, expected: list[Mention]) -> None:
    assert EmojiMentions()(prompt) == expected


def test_mentions_recover_the_ground_truth_of_captions() -> None:
    """Every caption phrasing of the whole domain, both splits and paraphrases: the emoji and counts held."""
    mentions = EmojiMentions()
    for split, paraphrases in (("train", False), ("train", True), ("heldout", False)):
        scenes = EmojiScenes(SceneConfig(split=split, paraphrases=paraphrases), seed=3)
        for i in range(300):
            _, caption, scene = scenes.sample(i)
            found: dict[str, int] = {}
            for m in mentions(caption):
                found[m.name] = max(found.get(m.name, 0), m.count)
            assert found == {o.emoji: o.count for o in scene.objects}, caption


def inside(domain: TrainedDomain, scene: Scene) -> bool:
    c = domain.config
    return (
        all(o.emoji in domain.emoji and o.count <= c.max_count for o in scene.objects)
        and len(scene.objects) <= c.max_objects
        and scene.style in domain.styles
    )


def test_notes_are_empty_exactly_for_captions_inside_the_domain() -> None:
    """Captions of the whole domain: a note for each scene outside the trained slice, none inside it."""
    scenes = EmojiScenes(SceneConfig(split="heldout"), seed=5)
    outcomes = set()
    for i in range(300):
        _, caption, scene = scenes.sample(i)
        outcomes.add(inside(STAGE_1, scene))
        assert (STAGE_1.notes(caption) == []) == inside(STAGE_1, scene), caption
    assert outcomes == {True, False}


def test_each_note_says_what_lies_outside() -> None:
    assert STAGE_1.notes("a cat in the centre on a red background, in flat style") == []
    (unknown,) = STAGE_1.notes("a unicorn")
    assert "'unicorn'" in unknown and "30 emoji" in unknown
    (objects,) = STAGE_1.notes("an apple on the left and a rocket on the right")
    assert "'apple' and 'rocket'" in objects
    (count,) = STAGE_1.notes("a pair of kitties")
    assert "at most one of each" in count and "'cat'" in count
    (style,) = STAGE_1.notes("a heart in pixel art")
    assert "flat style only" in style and "pixel art" in style


def test_word_notes_name_the_words_training_never_used_and_what_it_learned() -> None:
    (note,) = STAGE_1.word_notes("Two CYCLES on the left")
    assert "never saw 'cycles' in training" in note and "it learned 'bicycle'" in note
    (note,) = STAGE_1.word_notes("a cycle, a jet and an auto")
    assert "'cycle', 'jet' or 'auto'" in note and "'bicycle', 'airplane' and 'car'" in note
    assert STAGE_1.word_notes("a bicycle, a bike, an automobile and a plane") == []  # trained words
    assert STAGE_1.word_notes("a unicorn") == []  # emoji outside the slice get notes(), not this
    assert TrainedDomain(SceneConfig(num_emoji=2)).word_notes("a cycle") == []  # not one of its emoji


def test_word_notes_agree_with_the_evaluation_wording() -> None:
    """Training captions never get the note; held-out ones exactly when the evaluation sees a held-out synonym."""
    stage_2 = TrainedDomain(SceneConfig(num_emoji=30, max_objects=2, max_count=2, styles=("flat",)))
    train = EmojiScenes(stage_2.config, seed=3)
    assert all(stage_2.word_notes(train.describe(i)[0]) == [] for i in range(300))
    heldout = EmojiScenes(replace(stage_2.config, split="heldout"), seed=3)
    wordings = set()
    for i in range(300):
        caption, scene = heldout.describe(i)
        wordings.add(wording := prompt_wording(caption, scene))
        assert bool(stage_2.word_notes(caption)) == (wording == "held-out synonym"), caption
    assert wordings == {"held-out synonym", "trained words"}


def test_the_enhancer_swaps_held_out_words_for_the_trained_ones() -> None:
    """Every held-out caption, enhanced with the domain's swaps, names the same emoji and counts in trained words."""
    stage_2 = TrainedDomain(SceneConfig(num_emoji=30, max_objects=2, max_count=2, styles=("flat",)))
    enhancer = stage_2.enhancer()
    assert enhancer.swap_words("A cycle and two jets") == "A bicycle and two airplanes"
    # "spacecraft" is its own plural: the count up to two words before it keeps the number
    assert enhancer.swap_words("a spacecraft, Two large spacecraft") == "a rocket, Two large rockets"
    assert enhancer.swap_words("a pair of spacecraft and 3 tiny spacecraft") == "a pair of rockets and 3 tiny rockets"
    assert enhancer.swap_words("two shiny spacecraft; Spacecraft") == "two shiny rockets; Rocket"
    assert enhancer.swap_words("two cats and a spacecraft") == "two cats and a rocket"
    mentions = EmojiMentions()
    assert mentions("two shiny spacecraft") == mentions("two shiny rockets") == [Mention("rocket", 2)]
    heldout = EmojiScenes(replace(stage_2.config, split="heldout"), seed=3)
    swapped = 0
    for i in range(300):
        caption = heldout.describe(i)[0]
        enhanced = enhancer.enhance(caption, seed=i).text
        assert stage_2.word_notes(enhanced) == [], enhanced
        assert mentions(enhanced) == mentions(caption), (caption, enhanced)
        swapped += bool(stage_2.word_notes(caption))
    assert swapped > 10


def test_examples_are_held_out_prompts_inside_the_domain() -> None:
    examples = STAGE_1.example_prompts(8)
    assert examples == STAGE_1.example_prompts(8)  # the page shows the same examples on every start
    # Gradio cuts example labels at 60 characters; "<prompt> · seed 7" shows whole
    assert len(examples) == 8 and all(len(prompt) <= 50 for prompt in examples)
    assert len({EmojiMentions()(prompt)[0].name for prompt in examples}) == 8  # eight different emoji
    assert all(STAGE_1.notes(prompt) == [] and STAGE_1.word_notes(prompt) == [] for prompt in examples)


def test_examples_show_every_object_count_the_domain_has() -> None:
    stage_2 = TrainedDomain(SceneConfig(num_emoji=30, max_objects=2, max_count=2, styles=("flat",)))
    examples = stage_2.example_prompts(5)
    objects = [len({m.name for m in EmojiMentions()(prompt)}) for prompt in examples]
    assert objects == [1, 1, 1, 2, 2]  # shared out, one emoji first
    assert all(stage_2.notes(prompt) == [] and stage_2.word_notes(prompt) == [] for prompt in examples)
    assert stage_2.example_prompts(1) == examples[:1]  # the browser test clicks the first


def test_auto_style_stays_in_the_trained_styles() -> None:
    enhancer = PromptEnhancer(auto_styles=STAGE_1.styles)
    assert {enhancer.enhance("a cat", seed).style for seed in range(40)} == {"flat"}
    assert enhancer.enhance("a cat", 0, style="night").style == "night"  # an explicit choice still wins
    assert set(enhancer.styles) > {"flat"}
    with pytest.raises(ValueError, match="Unknown auto style"):
        PromptEnhancer(auto_styles=("oil paint",))
