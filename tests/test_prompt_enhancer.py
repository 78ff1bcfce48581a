"""PromptEnhancer: reproducible from the seed, in the training captions' vocabulary, replaceable."""

import re

import pytest

from model.data.captions import BACKGROUND_PHRASES, COLOUR_WORDS, STYLE_PREFIXES, STYLE_SUFFIXES
from model.prompts.chinese import COLOURS as CHINESE_COLOURS
from model.prompts.chinese import in_english
from model.prompts.prompt_enhancer import DETAIL_WORDS, STYLE_TEMPLATES, EnhancedPrompt, Enhancer, PromptEnhancer


@pytest.fixture(scope="module")
def enhancer() -> PromptEnhancer:
    return PromptEnhancer()


def test_same_seed_same_text(enhancer: PromptEnhancer) -> None:
    first = enhancer.enhance("a cat and a rocket", seed=7)
    assert enhancer.enhance("a cat and a rocket", seed=7) == first
    assert PromptEnhancer().enhance("a cat and a rocket", seed=7) == first  # no hidden state between instances


def test_seed_varies_style_and_words(enhancer: PromptEnhancer) -> None:
    results = [enhancer.enhance("a cat", seed=seed) for seed in range(40)]
    assert len({r.text for r in results}) > 20
    assert {r.style for r in results} == set(enhancer.styles)


def test_output_uses_caption_phrasing(enhancer: PromptEnhancer) -> None:
    for seed in range(20):
        result = enhancer.enhance("two frogs", seed=seed)
        assert "two frogs" in result.text
        phrases = STYLE_SUFFIXES[result.style] + STYLE_PREFIXES.get(result.style, ())
        assert any(phrase in result.text for phrase in phrases), result


def test_chosen_style_is_used(enhancer: PromptEnhancer) -> None:
    result = enhancer.enhance("a heart", seed=3, style="pixel art")
    assert result.style == "pixel art"
    assert any(phrase in result.text for phrase in STYLE_SUFFIXES["pixel art"] + STYLE_PREFIXES["pixel art"])


def test_style_named_in_prompt_is_kept(enhancer: PromptEnhancer) -> None:
    for seed in range(10):
        result = enhancer.enhance("an apple on a blue background, in soft watercolour", seed=seed)
        assert result.style == "soft watercolour"
        assert result.text.startswith("an apple on a blue background, in soft watercolour")
        assert "background" not in result.text.removeprefix("an apple on a blue background")


def colours_in(text: str) -> set[str]:
    words = set(text.replace(",", " ").split())
    return {colour for colour, spellings in COLOUR_WORDS.items() if words & set(spellings)}


def test_background_added_only_when_missing(enhancer: PromptEnhancer) -> None:
    for seed in range(10):
        assert len(colours_in(enhancer.enhance("a cat", seed=seed).text)) == 1
        assert colours_in(enhancer.enhance("a cat on red", seed=seed).text) == {"red"}


@pytest.mark.parametrize(
    ("prompt", "seed", "style", "message"),
    [
        ("   ", 0, None, "enter a prompt"),
        ("a cat", -1, None, "seed of 0 or more"),
        ("a cat", 0, "cubism", "Unknown style"),
    ],
)
def test_bad_input_is_a_clear_value_error(
    enhancer: PromptEnhancer, prompt: str, seed: int, style: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        enhancer.enhance(prompt, seed=seed, style=style)


def test_templates_need_a_prompt_placeholder() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        PromptEnhancer(templates={"flat": ("flat picture",)})


def test_is_an_enhancer_and_can_be_replaced() -> None:
    class Echo:
        styles = ("plain",)

        def enhance(self, prompt: str, seed: int, style: str | None = None) -> EnhancedPrompt:
            return EnhancedPrompt(prompt, "plain")

    assert isinstance(PromptEnhancer(), Enhancer)
    assert isinstance(Echo(), Enhancer)


def test_word_swaps_keep_articles_capitals_and_whole_words() -> None:
    swaps = {"cycle": "bicycle", "cycles": "bicycles", "auto": "car", "soccer ball": "ball"}
    enhancer = PromptEnhancer(word_swaps=swaps)
    assert enhancer.swap_words("An auto and two CYCLES, a soccer ball") == "A car and two bicycles, a ball"
    assert enhancer.swap_words("a motorcycle and an autumn leaf") == "a motorcycle and an autumn leaf"
    assert "a car on the left" in enhancer.enhance("an auto on the left", seed=3).text
    assert PromptEnhancer().swap_words("an auto") == "an auto"  # no swaps without a trained domain


def test_plural_swaps_follow_the_count_before_a_word_that_is_its_own_plural() -> None:
    enhancer = PromptEnhancer(word_swaps={"sheep": "lamb"}, plural_swaps={"sheep": "lambs"})
    assert enhancer.swap_words("A sheep, 3 woolly white sheep, one sheep") == "A lamb, 3 woolly white lambs, one lamb"
    assert enhancer.swap_words("a pair of big sheep at the top") == "a pair of big lambs at the top"
    with pytest.raises(ValueError, match="word_swaps"):
        PromptEnhancer(plural_swaps={"sheep": "lambs"})


CHINESE = "蓝色背景上左边有一只猫"


def test_a_chinese_prompt_is_enhanced_from_its_translation(enhancer: PromptEnhancer) -> None:
    """The background it names stays the only one, whatever the style and seed."""
    for style in (None, *enhancer.styles):
        for seed in range(20):
            result = enhancer.enhance(CHINESE, seed=seed, style=style)
            assert "a cat on the left on a blue background" in result.text
            assert colours_in(result.text) == {"blue"}, result
    gold = enhancer.enhance("金色背景上有一只猫", seed=0).text  # a background whose colour the dictionary lacks
    assert colours_in(gold) == set() and "background" not in gold


def test_a_background_the_prompt_names_is_never_joined_by_another(enhancer: PromptEnhancer) -> None:
    """Every colour word (synonyms too), in every caption phrasing and in Chinese: no second colour, no second one."""
    backgrounds = re.compile(r"\b(background|backdrop|canvas)\b")
    prompts = {
        f"a cat {phrase.format(c=word)}": colour
        for colour, words in COLOUR_WORDS.items()
        for word in words
        for phrase in BACKGROUND_PHRASES
    }
    prompts |= {f"{word}背景上有一只猫": colour for colour, words in CHINESE_COLOURS.items() for word in words}
    for prompt, colour in prompts.items():
        english = in_english(prompt)
        for seed in range(20):
            text = enhancer.enhance(prompt, seed=seed).text
            assert colours_in(text) == {colour}, text
            assert len(backgrounds.findall(text)) == len(backgrounds.findall(english)), text


def test_a_style_the_prompt_names_wins_over_the_chosen_one(enhancer: PromptEnhancer) -> None:
    for seed in range(10):
        result = enhancer.enhance("an apple in pixel art", seed=seed, style="night")
        assert result.style == "pixel art" and not any(p in result.text for p in STYLE_SUFFIXES["night"])
        assert enhancer.enhance("一个苹果，像素风格", seed=seed, style="sticker").style == "pixel art"


def test_enhancer_phrases_name_no_colour() -> None:
    """The only colour an enhanced prompt gains is a background's ("with white sticker borders" is left out)."""
    phrases = [t.replace("{prompt}", "") for options in STYLE_TEMPLATES.values() for t in options]
    phrases += [word for words in DETAIL_WORDS.values() for word in words]
    assert all(colours_in(phrase) == set() for phrase in phrases)
    assert all(STYLE_TEMPLATES[style] for style in STYLE_SUFFIXES)
