"""What the model reads of a prompt, and a warning for each part of it that it cannot read.

The text encoder is an English MiniLM and the model has learned emoji scenes only. A prompt in another script,
or one naming nothing the model draws, still runs, but the picture has nothing to do with it ("an astronaut
riding a horse" drew frogs), so the demo says why before a rater judges the model on it. A Chinese prompt is
translated first (``model.prompts.chinese``), so the model sees the English captions it was trained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from model.prompts.chinese import ChineseTranslation, script, translate_chinese
from model.prompts.trained_domain import EmojiMentions, TrainedDomain, listed

EXAMPLE_EMOJI = ("cat", "rocket")  # named in the warning on a prompt without an emoji
# Script (``chinese.script``) -> the language to name; kana first: Japanese mixes them with Han characters.
LANGUAGES = {
    "HIRAGANA": "Japanese",
    "KATAKANA": "Japanese",
    "KATAKANA-HIRAGANA": "Japanese",
    "HANGUL": "Korean",
    "CJK": "Chinese",
}
_WORD = re.compile(r"[^\W\d_]+")  # a run of letters, in any script


@dataclass(frozen=True)
class ReadPrompt:
    """The text the model is given for a prompt, and what a rater should know about the rest."""

    text_for_model: str
    warnings: tuple[str, ...]


@cache
def _mentions() -> EmojiMentions:
    return EmojiMentions()


def read_prompt(prompt: str, domain: TrainedDomain | None = None, draws_emoji: bool = True) -> ReadPrompt:
    """Read ``prompt`` as the model will: Chinese translated, then warnings on what it cannot follow.

    ``draws_emoji``: the model draws emoji scenes only (RAPHAEL-tiny), so a prompt naming no emoji is warned
    about; another pipeline (Stable Diffusion) draws an astronaut well. Without a ``domain`` (no
    ``training.json``) nothing more is checked; with one, its notes on what lies outside the trained slice follow.
    """
    translation = translate_chinese(prompt)
    text = translation.english if translation else prompt
    warnings = [*_untranslated(translation), *_unreadable_scripts(text, skip_chinese=translation is not None)]
    if draws_emoji and not _mentions()(text):
        warnings.append(
            "The model knows none of the objects in this prompt; it draws emoji such as "
            f"{listed(list(EXAMPLE_EMOJI), last='or')}, so the picture will not show what you asked for."
        )
    if domain is not None:
        warnings += [*domain.notes(text), *domain.word_notes(text)]
    return ReadPrompt(text, tuple(warnings))


def _untranslated(translation: ChineseTranslation | None) -> list[str]:
    """A warning naming the parts of a Chinese prompt the dictionary could not use, and what the model gets instead."""
    if translation is None or not translation.left_out:
        return []
    words = listed(list(translation.left_out))
    start = f"The model reads Chinese through a dictionary of its scene words, which could not use {words}"
    if translation.text:
        return [f"{start}, so it draws from the translation '{translation.text}'."]
    return [f"{start}, and its English text encoder cannot read Chinese, so the picture will not follow the prompt."]


def _unreadable_scripts(text: str, skip_chinese: bool) -> list[str]:
    """A warning per language the English text encoder cannot read, quoting its runs of words.

    ``skip_chinese``: the Chinese of a Chinese prompt has its own warning from the dictionary.
    """
    runs: dict[str, list[tuple[int, int]]] = {}  # language -> (start, end) of runs of its words
    last = None
    for word in _WORD.finditer(text):
        scripts = {script(c) for c in word[0]} - {"LATIN"}
        language = next((LANGUAGES[s] for s in LANGUAGES if s in scripts), None)
        if language is None and scripts:
            language = f"the {min(scripts).title()} script"
        if language is None or (skip_chinese and language == "Chinese"):
            last = None
            continue
        if last == language:
            runs[language][-1] = (runs[language][-1][0], word.end())
        else:
            runs.setdefault(language, []).append(word.span())
        last = language
    return [
        f"The model's text encoder reads English, not {language}: it cannot read "
        f"{listed([text[start:end] for start, end in spans])}, so the picture will not follow that part."
        for language, spans in runs.items()
    ]
