"""Reading a prompt as the model will: Chinese translated into the training captions, warnings on the rest."""

from pathlib import Path

import pytest

from app.generation import GenerationRequest, GenerationService
from model.data.atlas import load_atlas
from model.data.captions import POSITION_PHRASES, SIZE_WORDS, STYLE_SUFFIXES, fix_articles
from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.data.styles import STYLES as STYLE_NAMES
from model.data.vocab import BACKGROUNDS, SIZES
from model.data.vocab import POSITIONS as POSITION_NAMES
from model.prompts.chinese import (
    COLOURS,
    EMOJI,
    FALSE_FRIENDS,
    POSITIONS,
    STYLES,
    in_english,
    is_chinese,
    translate_chinese,
)
from model.prompts.chinese import SIZES as SIZE_NAMES_ZH
from model.prompts.prompt_reader import EXAMPLE_EMOJI, read_prompt
from model.prompts.trained_domain import EmojiMentions, Mention, TrainedDomain

STAGE_2 = TrainedDomain(SceneConfig(num_emoji=30, max_objects=2, max_count=2, styles=("flat",)))
ASTRONAUT = "a photo of an astronaut riding a horse"
NO_OBJECT = "The model knows none of the objects in this prompt"


@pytest.mark.parametrize(
    ("chinese", "english"),
    [
        ("蓝色背景上左边有一只猫", "a cat on the left on a blue background"),
        ("两个苹果在右边，黄色背景", "two apples on the right on a yellow background"),
        ("一只狗在中间，红色背景", "a dog in the centre on a red background"),
        ("左边一只猫，右边一只狗，绿色背景", "a cat on the left and a dog on the right on a green background"),
        ("三颗星星在上面，黑色背景，像素风格", "three stars at the top on a black background, in pixel art style"),
        ("白色背景上底部有一辆小汽车", "a car at the bottom on a white background"),
        ("一个大苹果在左侧，橙色背景，水彩", "a large apple on the left on an orange background, in soft watercolour"),
        ("粉色背景，两只小蝴蝶在顶部，贴纸风格", "two small butterflies at the top on a pink background, as stickers"),
        ("夜晚，一枚火箭在右边，紫色背景", "a rocket on the right on a purple background, at night"),
        ("灰色背景上中央有一朵云，扁平风格", "a cloud in the centre on a gray background, in flat style"),
        ("🐸在左边，蓝底", "a frog on the left on a blue background"),  # an atlas emoji is a word too
        (
            "背景是黄色的，一辆自行车在下面，素描",
            "a bicycle at the bottom on a yellow background, as an outline sketch",
        ),
        ("一对企鹅，白色背景", "two penguins on a white background"),
        ("2个香蕉在右边", "two bananas on the right"),
        ("一只猫头鹰和一个西红柿", "an owl and a tomato"),  # longest words first: not a cat, not red
        ("两只猫，猫在左边", "two cats on the left"),  # the bare repeat is the same cats
        ("一张图片：一只猫 左边 一只狗 右边", "a cat on the left and a dog on the right"),
        ("四叶草在左边", "a clover on the left"),  # not the count four
    ],
)
def test_chinese_prompts_become_the_training_captions(chinese: str, english: str) -> None:
    translation = translate_chinese(chinese)
    assert translation is not None and translation.text == english and translation.left_out == ()
    assert read_prompt(chinese, STAGE_2).text_for_model == in_english(chinese) == english


def test_the_dictionary_speaks_the_domain_vocabulary() -> None:
    """Its keys are the project's own names, so a translation can only say what the captions say."""
    assert set(EMOJI) == set(load_atlas().names)  # every emoji of the atlas, none left out
    assert set(COLOURS) == set(BACKGROUNDS) and set(POSITIONS) == set(POSITION_NAMES)
    assert set(SIZE_NAMES_ZH) == set(SIZES) and set(STYLES) == set(STYLE_NAMES)


@pytest.mark.parametrize("name", list(EMOJI))
def test_every_emoji_word_translates_to_its_atlas_emoji(name: str) -> None:
    mentions = EmojiMentions()
    for word in EMOJI[name]:
        text = translate_chinese(word).text
        assert text == fix_articles(f"a {name}") and mentions(text) == [Mention(name, 1)], word
        assert translate_chinese(f"三个{word}").text == f"three {load_atlas().by_name[name].plural}", word


def test_every_colour_position_size_and_style_word_translates() -> None:
    for colour, words in COLOURS.items():
        for word in words:
            assert translate_chinese(f"{word}背景上有一只猫").text == fix_articles(f"a cat on a {colour} background")
    for position, words in POSITIONS.items():
        for word in words:
            assert translate_chinese(f"一只猫在{word}").text == f"a cat {POSITION_PHRASES[position][0]}", word
            assert translate_chinese(f"{word}有一只猫").text == f"a cat {POSITION_PHRASES[position][0]}", word
    for size, words in SIZE_NAMES_ZH.items():
        for word in words:
            assert translate_chinese(f"两个{word}苹果").text == f"two {SIZE_WORDS[size][0]} apples", word
    for style, words in STYLES.items():
        for word in words:
            assert translate_chinese(f"一只猫，{word}").text == f"a cat, {STYLE_SUFFIXES[style][0]}", word


def test_chinese_scene_descriptions_keep_their_ground_truth() -> None:
    """Scenes of the whole domain described in Chinese (varied words and orders) translate to their ground truth."""
    scenes = EmojiScenes(SceneConfig(), seed=7)
    mentions = EmojiMentions()
    for i in range(300):
        scene = scenes.describe(i)[1]
        words = [w[i % len(w)] for w in (COLOURS[scene.background], STYLES[scene.style])]
        parts = []
        for o in scene.objects:
            where, size, noun = POSITIONS[o.position][i % 3], SIZE_NAMES_ZH[o.size][0], EMOJI[o.emoji][i % 2 - 1]
            number = f"{'一两三'[o.count - 1]}个"
            # 的 after the size: 小猫 is one word (a kitten), 小的猫 a small cat
            parts.append(f"{where}有{number}{size}的{noun}" if i % 2 else f"{number}{size}的{noun}在{where}")
        chinese = f"{words[0]}背景上，{'，'.join(parts)}，{words[1]}"
        text = translate_chinese(chinese).text
        assert mentions(text) == [Mention(o.emoji, o.count) for o in scene.objects], (chinese, text)
        assert f"on {fix_articles(f'a {scene.background}')} background" in text, (chinese, text)
        assert text.endswith(STYLE_SUFFIXES[scene.style][0]), (chinese, text)
        for o in scene.objects:
            assert f"{SIZE_WORDS[o.size][0]} " in text and POSITION_PHRASES[o.position][0] in text, (chinese, text)


@pytest.mark.parametrize(
    ("chinese", "english"),
    [
        ("一只猫", "a cat"),
        ("两只猫", "two cats"),
        ("俩猫", "two cats"),
        ("三只猫", "three cats"),
        ("3只猫", "three cats"),
    ],
)
def test_counts_with_and_without_measure_words(chinese: str, english: str) -> None:
    assert translate_chinese(chinese).text == english


@pytest.mark.parametrize("word", FALSE_FRIENDS)
def test_false_friends_are_reported_whole_not_half_translated(word: str) -> None:
    """火鸡 is a turkey, not fire and a chicken."""
    translation = translate_chinese(word)
    assert (translation.text, translation.left_out) == ("", (word,))


def test_only_chinese_is_translated() -> None:
    assert translate_chinese("a cat on the left") is None and in_english("a cat") == "a cat"
    assert not is_chinese("青い背景の猫")  # Japanese shares Han characters but has kana
    assert is_chinese("一只猫")


def test_a_prompt_without_any_known_object_is_warned_about() -> None:
    for domain in (None, STAGE_2):
        (warning,) = read_prompt(ASTRONAUT, domain).warnings
        assert warning.startswith(NO_OBJECT) and all(f"'{name}'" in warning for name in EXAMPLE_EMOJI)
    assert set(EXAMPLE_EMOJI) <= set(STAGE_2.emoji)
    assert read_prompt("a unicorn on a red background").warnings == ()  # an emoji of the atlas: no domain, no note
    (note,) = read_prompt("a unicorn on a red background", STAGE_2).warnings
    assert "'unicorn'" in note and NO_OBJECT not in note


@pytest.mark.parametrize(
    ("prompt", "language", "quoted"),
    [
        ("青い背景の猫", "not Japanese", "'青い背景の猫'"),
        ("кошка на синем фоне", "not the Cyrillic script", "'кошка на синем фоне'"),
        ("파란 배경의 고양이", "not Korean", "'파란 배경의 고양이'"),
    ],
)
def test_a_language_the_text_encoder_cannot_read_is_named(prompt: str, language: str, quoted: str) -> None:
    language_note, object_note = read_prompt(prompt).warnings
    assert language in language_note and quoted in language_note
    assert object_note.startswith(NO_OBJECT)
    (note,) = read_prompt("a cat and a кошка on a red background", STAGE_2).warnings
    assert "'кошка'" in note  # the English around it is read as usual


def test_chinese_the_dictionary_cannot_read_is_named() -> None:
    read = read_prompt("蓝色背景上有一只猫在骑马", STAGE_2)
    assert read.text_for_model == "a cat on a blue background"
    (warning,) = read.warnings
    assert "'骑马'" in warning and "'a cat on a blue background'" in warning
    # A count that belongs to an unreadable word stays with it, so the warning quotes what was typed.
    astronaut = read_prompt("左边有一个宇航员", STAGE_2)
    untranslated, no_object = astronaut.warnings
    assert "'左边' and '一个宇航员'" in untranslated and "English text encoder" in untranslated
    assert astronaut.text_for_model == "左边有一个宇航员" and no_object.startswith(NO_OBJECT)
    assert translate_chinese("红色的苹果在蓝色背景上").left_out == ("红色",)  # scenes never recolour an emoji
    cute = translate_chinese("两只可爱的猫在左边")  # an unknown word describing the emoji keeps its count
    assert (cute.text, cute.left_out) == ("two cats on the left", ("可爱",))
    crowd = translate_chinese("三个宇航员和猫")  # one that stands alone takes its count with it
    assert (crowd.text, crowd.left_out) == ("a cat", ("三个宇航员",))


def test_the_app_translates_before_the_model_sees_the_prompt() -> None:
    typed = GenerationRequest(prompt="蓝色背景上左边有一只猫")
    assert typed.model_prompt == "a cat on the left on a blue background"
    enhanced = GenerationRequest(prompt="蓝色背景上左边有一只猫", enhanced_prompt="a cat on the left, on blue")
    assert enhanced.model_prompt == "a cat on the left, on blue"
    assert GenerationRequest(prompt="two cats").model_prompt == "two cats"


def test_the_app_warns_and_keeps_both_prompts(tiny_sd_dir: Path) -> None:
    """Any pipeline warns about what it cannot read; provenance keeps both prompts."""
    service = GenerationService(tiny_sd_dir, device="cpu", torch_threads=1)
    assert service.domain is None
    assert service.prompt_warnings(ASTRONAUT) == []  # Stable Diffusion draws astronauts: no emoji needed
    assert read_prompt(ASTRONAUT, draws_emoji=False).warnings == ()
    result = service.run(GenerationRequest(prompt="两个苹果在右边，黄色背景，宇航员", steps=1, num_images=1, seed=3))
    assert (result.provenance["prompt"], result.provenance["enhanced_prompt"]) == (
        "两个苹果在右边，黄色背景，宇航员",
        None,
    )
    assert result.provenance["model_prompt"] == "two apples on the right on a yellow background"
    (warning,) = result.warnings
    assert "'宇航员'" in warning
