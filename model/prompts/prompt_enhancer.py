"""Seeded, reproducible prompt expansion for the emoji-scenes domain.

RAPHAEL's public demo had a GPT-based "optimise prompt" button. We have no language model to
spare, so this enhancer fills A1111-style ``{prompt}`` templates with the phrasings the training
captions use (``model.data.captions``): a style phrase, a background colour when the prompt names
none, and a detail word. Given the model's word swaps, it also puts a word the model learned in place
of one it never saw ("a cycle" -> "a bicycle"). Every choice is drawn from the seed, so the same prompt,
seed and style always give the same text and a generation can be reproduced from its provenance.

It never contradicts the prompt: a Chinese prompt is enhanced from its English translation
(``model.prompts.chinese``), a background or style the prompt names is kept, and the only colour it adds
is a background's, so no phrase of its own ("with white sticker borders") names a colour.

Anything with ``styles`` and ``enhance(prompt, seed, style) -> EnhancedPrompt`` satisfies
:class:`Enhancer`, so a learned enhancer can replace this one without touching the app.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from model.data.captions import (
    BACKGROUND_PHRASES,
    COLOUR_WORDS,
    STYLE_PREFIXES,
    STYLE_SUFFIXES,
    STYLE_WORDS,
    count_before,
    indefinite_article,
    whole_words,
)
from model.prompts.chinese import translate_chinese

_COLOUR_WORDS = re.compile(whole_words(word for words in COLOUR_WORDS.values() for word in words), re.IGNORECASE)


def _style_templates() -> dict[str, tuple[str, ...]]:
    """Per style, A1111-style templates built from the caption phrasings: '{prompt}, in pixel art style'.

    Phrasings that name a colour are left out, so an enhanced prompt names no colour but its background's.
    """
    return {
        style: tuple(f"{{prompt}}, {suffix}" for suffix in STYLE_SUFFIXES[style] if not _COLOUR_WORDS.search(suffix))
        + tuple(f"{prefix} {{prompt}}" for prefix in STYLE_PREFIXES.get(style, ()) if not _COLOUR_WORDS.search(prefix))
        for style in STYLE_SUFFIXES
    }


STYLE_TEMPLATES: dict[str, tuple[str, ...]] = _style_templates()
DETAIL_WORDS: dict[str, tuple[str, ...]] = {
    "flat": ("clean shapes", "bold colours", "simple"),
    "outline sketch": ("thin lines", "hand drawn", "pale wash"),
    "pixel art": ("blocky", "retro", "crisp pixels"),
    "soft watercolour": ("pastel", "soft edges", "gentle washes"),
    "night": ("starry", "dim light", "quiet"),
    "sticker": ("thick border", "die-cut", "glossy"),
}
# Words that show a prompt already chose a style; the style's own word and phrases count too.
STYLE_HINTS: dict[str, tuple[str, ...]] = {
    "outline sketch": ("outline", "sketch", "line drawing", "pencil"),
    "pixel art": ("pixel", "8-bit"),
    "soft watercolour": ("watercolour", "watercolor"),
    "night": ("night", "starry"),
    "sticker": ("sticker", "stickers"),
}
_BACKGROUND_WORDS = re.compile(r"\b(background|backdrop|canvas)\b", re.IGNORECASE)


@dataclass(frozen=True)
class EnhancedPrompt:
    """The expanded prompt and the style it was written in."""

    text: str
    style: str


@runtime_checkable
class Enhancer(Protocol):
    """What the app needs from a prompt enhancer, template-based or learned."""

    @property
    def styles(self) -> tuple[str, ...]: ...

    def enhance(self, prompt: str, seed: int, style: str | None = None) -> EnhancedPrompt: ...


def _mentions(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.IGNORECASE) is not None


class PromptEnhancer:
    """Template enhancer: style phrase, background colour and detail words, all drawn from ``seed``."""

    def __init__(
        self,
        templates: dict[str, tuple[str, ...]] | None = None,
        details_per_prompt: int = 1,
        auto_styles: tuple[str, ...] | None = None,
        word_swaps: dict[str, str] | None = None,
        plural_swaps: dict[str, str] | None = None,
    ) -> None:
        """``auto_styles`` limits the styles drawn when none is asked for, e.g. to those a model was trained in;
        ``word_swaps`` maps lower-case words a model never learned to ones it did ("cycle" -> "bicycle");
        ``plural_swaps`` gives, for those of them that are their own plural, the swap after a count above one
        ("two spacecraft" -> "two rockets")."""
        self.templates = dict(STYLE_TEMPLATES if templates is None else templates)
        for name, options in self.templates.items():
            if not options or any("{prompt}" not in template for template in options):
                raise ValueError(f"Every template of style {name!r} needs a {{prompt}} placeholder.")
        self.details_per_prompt = details_per_prompt
        self.auto_styles = tuple(auto_styles or self.templates)
        unknown = set(self.auto_styles) - set(self.templates)
        if unknown:
            raise ValueError(f"Unknown auto style(s) {sorted(unknown)}; choose from {', '.join(self.templates)}.")
        self.word_swaps = {k.lower(): v for k, v in (word_swaps or {}).items()}
        self.plural_swaps = {k.lower(): v for k, v in (plural_swaps or {}).items()}
        unknown = set(self.plural_swaps) - set(self.word_swaps)
        if unknown:
            raise ValueError(f"plural_swaps {sorted(unknown)} need their singular swap in word_swaps too.")
        words = whole_words(self.word_swaps)
        # An article before the word is matched with it, so "an auto" becomes "a car", not "an car".
        self._swap_pattern = re.compile(rf"(?:\b(an?) )?({words})", re.IGNORECASE) if words else None

    @property
    def styles(self) -> tuple[str, ...]:
        return tuple(self.templates)

    def detect_style(self, prompt: str) -> str | None:
        """The style a prompt already names (by word, caption phrase or hint), if any."""
        for style in self.styles:
            phrases = (STYLE_WORDS.get(style, style), *STYLE_SUFFIXES.get(style, ()), *STYLE_HINTS.get(style, ()))
            if any(_mentions(prompt, phrase) for phrase in phrases):
                return style
        return None

    def swap_words(self, prompt: str) -> str:
        """``prompt`` with every word of ``word_swaps`` replaced, its article and capital letter kept in step."""
        if self._swap_pattern is None:
            return prompt

        def swap(match: re.Match[str]) -> str:
            article, typed = match.groups()
            word = typed.lower()
            counted = word in self.plural_swaps and not article and count_before(prompt[: match.start()])
            new = self.plural_swaps[word] if counted else self.word_swaps[word]
            if article:
                new = f"{indefinite_article(new)} {new}"
            capital = article[0].isupper() if article else typed[0].isupper() and not typed.isupper()
            return new[0].upper() + new[1:] if capital else new

        return self._swap_pattern.sub(swap, prompt)

    def enhance(self, prompt: str, seed: int, style: str | None = None) -> EnhancedPrompt:
        """Expand ``prompt`` (a Chinese one from its translation); a style the prompt names wins over ``style``,
        and ``style=None`` with none named draws an auto style from the seed."""
        prompt = " ".join(prompt.split())
        translation = translate_chinese(prompt)
        prompt = self.swap_words((translation.english if translation else prompt).rstrip(" ,.;"))
        if not prompt:
            raise ValueError("Please enter a prompt to enhance.")
        if seed < 0:
            raise ValueError(f"The enhancer needs a seed of 0 or more, got {seed}.")
        if style is not None and style not in self.templates:
            raise ValueError(f"Unknown style {style!r}; choose one of {', '.join(self.styles)}.")
        named = self.detect_style(prompt)
        rng = random.Random(seed)
        # Draw in a fixed order, whether or not a draw is used, so each choice depends on the seed alone.
        drawn_style = rng.choice(self.auto_styles)
        colour = rng.choice(sorted(COLOUR_WORDS))
        background = rng.choice(BACKGROUND_PHRASES).format(c=colour)
        style = named or style or drawn_style
        template = rng.choice(self.templates[style])
        pool = DETAIL_WORDS.get(style, ())
        details = rng.sample(pool, k=min(self.details_per_prompt, len(pool)))

        text = prompt
        named_background = translation is not None and translation.names_background  # 金色背景: no colour read
        if not (named_background or _BACKGROUND_WORDS.search(prompt) or _COLOUR_WORDS.search(prompt)):
            text = f"{text} {background}"
        if named != style:
            text = template.format(prompt=text)
        text += "".join(f", {word}" for word in details if not _mentions(text, word))
        return EnhancedPrompt(text=text, style=style)
