"""What a RAPHAEL-tiny bundle has been trained to draw, read from its ``training.json``.

The curriculum trains on a slice of the emoji-scenes domain: the first N emoji, at most k objects
and counts, some styles. A prompt outside the slice still runs, but the picture will be poor, so
the demo says so before a rater judges the model on what it never saw, and its examples stay
inside the slice. Bundles without a ``training.json`` (any other diffusers pipeline) have no domain.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from model.data.atlas import load_atlas
from model.data.captions import count_before, heldout_synonyms, pluralise, whole_words
from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.data.paraphrases import PARAPHRASES
from model.data.vocab import BACKGROUNDS, POSITIONS
from model.prompts.prompt_enhancer import PromptEnhancer

NUMBER_NAMES = {1: "one", 2: "two", 3: "three"}
VARIATION_SELECTOR = "\ufe0f"
DESCRIPTION: dict[str, dict] = {  # describe()'s wording per page language
    "en": {
        "text": "This model has learned scenes of **{objects}**{counts}, in **{styles}** style, on one of "
        "{n_backgrounds} background colours ({backgrounds}), at the {positions}. "
        "It knows **{n_emoji} emoji**: {emoji}.\n\n"
        "Anything else still runs, but expect a poor picture: it has not been trained on it yet.",
        "one": "one emoji",
        "many": "up to {n} different emoji",
        "counts": ", each up to {n} times",
        "numbers": NUMBER_NAMES,
        "sep": ", ",
        "or": "or",
    },
    "zh": {
        "text": "这个模型学会了画这样的场景：**{objects}**{counts}，风格为 **{styles}**，"
        "背景是 {n_backgrounds} 种颜色之一（{backgrounds}），位置为 {positions}。"
        "它认识 **{n_emoji} 个表情符号**：{emoji}。\n\n"
        "请用英文写提示词：上面的英文名称就是它学过的说法。也可以用中文写这些场景（如“蓝色背景上左边有一只猫”），"
        "中文会先译成这些英文说法。其他内容也能生成，但画面会很差：它还没有学过。",
        "one": "一个表情符号",
        "many": "至多{n}种不同的表情符号",
        "counts": "，每种至多{n}个",
        "numbers": {1: "一", 2: "两", 3: "三"},
        "sep": "、",
        "or": "或",
    },
}


@dataclass(frozen=True)
class Mention:
    """One emoji a prompt names, and how many of it the prompt asks for."""

    name: str
    count: int


class EmojiMentions:
    """Finds every atlas emoji a prompt names (by name, synonym, paraphrase, plural or character), in order."""

    def __init__(self) -> None:
        self.forms: dict[str, tuple[str, bool]] = {}  # lower-case phrase -> (emoji name, is plural)
        for info in load_atlas().by_name.values():
            for word in (info.name, *info.synonyms, *PARAPHRASES.get(info.name, ())):
                self.forms.setdefault(word.lower(), (info.name, False))
                self.forms.setdefault(pluralise(word).lower(), (info.name, True))
            self.forms.setdefault(info.plural.lower(), (info.name, True))
            self.forms.setdefault(info.char.replace(VARIATION_SELECTOR, ""), (info.name, False))
        chars = [re.escape(f) for f in self.forms if not f.isascii()]
        self._pattern = re.compile("|".join([whole_words(f for f in self.forms if f.isascii()), *chars]))

    def __call__(self, prompt: str) -> list[Mention]:
        text = prompt.replace(VARIATION_SELECTOR, "").lower()  # users type the emoji variation selector or not
        mentions = []
        for match in self._pattern.finditer(text):
            name, plural = self.forms[match.group(0)]
            count = count_before(text[: match.start()]) or (2 if plural else 1)
            mentions.append(Mention(name, count))
        return mentions


@dataclass(frozen=True)
class TrainedDomain:
    """The slice of emoji scenes a bundle was trained on (its training run's data settings)."""

    config: SceneConfig

    @classmethod
    def from_bundle(cls, model_dir: str | Path) -> TrainedDomain | None:
        """The domain recorded in ``model_dir/training.json`` by ``model.training.bundle``, or None."""
        path = Path(model_dir) / "training.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8")).get("data")
        if not data:
            return None

        def names(key: str) -> tuple[str, ...] | None:
            return tuple(data[key].split(",")) if data.get(key) else None

        return cls(
            SceneConfig(
                sample_size=data.get("sample_size", 32),
                num_emoji=data.get("num_emoji"),
                max_objects=data.get("max_objects", 3),
                max_count=data.get("max_count", 3),
                styles=names("styles"),
                buckets=names("buckets"),
                paraphrases=bool(data.get("paraphrases")),
            )
        )

    @property
    def styles(self) -> tuple[str, ...]:
        return self.config.style_names

    @cached_property
    def emoji(self) -> tuple[str, ...]:
        """The trained emoji names, in curriculum order."""
        return load_atlas().names[: self.config.num_emoji]

    @cached_property
    def _mentions(self) -> EmojiMentions:
        return EmojiMentions()

    @cached_property
    def _styles_named(self) -> PromptEnhancer:
        return PromptEnhancer()  # its detect_style reads the style a prompt names

    def describe(self, language: str = "en") -> str:
        """A short markdown account of what the model has learned, for the demo page, in ``en`` or ``zh``.

        Emoji, styles, colours and positions keep their English names in every language: they are
        the words the model's (English) text encoder was trained on, so they are what to type (a Chinese prompt
        in the domain's words is translated into them, see ``model.prompts.chinese``).
        """
        words = DESCRIPTION[language]
        by_name = load_atlas().by_name
        c = self.config

        def in_words(names: list[str] | tuple[str, ...]) -> str:
            return listed(list(names), quote="", last=words["or"], sep=words["sep"])

        objects = words["one"] if c.max_objects == 1 else words["many"].format(n=words["numbers"][c.max_objects])
        return words["text"].format(
            objects=objects,
            counts="" if c.max_count == 1 else words["counts"].format(n=words["numbers"][c.max_count]),
            styles=in_words(self.styles),
            n_backgrounds=len(BACKGROUNDS),
            backgrounds=in_words(list(BACKGROUNDS)),
            positions=in_words(list(POSITIONS)),
            n_emoji=len(self.emoji),
            emoji=words["sep"].join(f"{by_name[name].char} {name}" for name in self.emoji),
        )

    def notes(self, prompt: str) -> list[str]:
        """What in ``prompt`` lies outside the trained slice, one message each; empty when inside it."""
        c = self.config
        mentions = self._mentions(prompt)
        notes = []
        unknown = list(dict.fromkeys(m.name for m in mentions if m.name not in self.emoji))
        if unknown:
            known = len(self.emoji)
            notes.append(f"This model has not learned to draw {listed(unknown)} yet (it knows {known} emoji).")
        distinct = list(dict.fromkeys(m.name for m in mentions))
        if len(distinct) > c.max_objects:
            notes.append(
                f"This model has learned {_number(c.max_objects)} kind{'s' if c.max_objects > 1 else ''} of emoji "
                "per scene so far, "
                f"so {listed(distinct)} together are beyond it."
            )
        many = list(dict.fromkeys(m.name for m in mentions if m.count > c.max_count))
        if many:
            notes.append(
                f"This model has learned at most {_number(c.max_count)} of each emoji so far, "
                f"so more than that of {listed(many)} is beyond it."
            )
        style = self._styles_named.detect_style(prompt)
        if style is not None and style not in self.styles:
            notes.append(f"This model has learned {' and '.join(self.styles)} style only so far, not {style}.")
        return notes

    @cached_property
    def _untrained_words(self) -> re.Pattern[str]:
        """The word forms that name a trained emoji but that training captions never used (held out)."""
        return re.compile(whole_words(self.word_swaps) or r"(?!)")  # (?!) matches nothing

    @cached_property
    def word_swaps(self) -> dict[str, str]:
        """Each held-out word form of a trained emoji -> its trained name in the same number ("cycles" -> "bicycles").

        The prompt enhancer makes these swaps, so that a prompt uses only words the model learned. A word whose
        plural is itself ("spacecraft") gets the singular here; ``plural_swaps`` has its plural.
        """
        forms = {}
        for name in self.emoji:
            for word in heldout_synonyms(name):
                forms[pluralise(word)] = load_atlas().by_name[name].plural
                forms[word] = name
        return forms

    @cached_property
    def plural_swaps(self) -> dict[str, str]:
        """Held-out words that are their own plural -> the trained plural, for the enhancer to use after a count.

        "two shiny spacecraft" -> "two shiny rockets", where the word alone gives "rocket".
        """
        return {
            word: load_atlas().by_name[name].plural
            for word, name in self.word_swaps.items()
            if pluralise(word) == word
        }

    def enhancer(self) -> PromptEnhancer:
        """The prompt enhancer for this model: its styles drawn, held-out words swapped for trained ones."""
        return PromptEnhancer(auto_styles=self.styles, word_swaps=self.word_swaps, plural_swaps=self.plural_swaps)

    def word_notes(self, prompt: str) -> list[str]:
        """A note when ``prompt`` names a trained emoji by a word training never used ("cycle", not "bicycle").

        The model reads such a word only through the frozen text encoder, and draws its emoji far less
        reliably than by a trained word (see the model card), so a rater should know before judging.
        """
        found = list(dict.fromkeys(self._untrained_words.findall(prompt.lower())))
        if not found:
            return []
        names = list(dict.fromkeys(m.name for word in found for m in self._mentions(word)))
        return [
            f"This model never saw {listed(found, last='or')} in training; it learned {listed(names)}, "
            "which it draws more reliably (enhancing the prompt swaps it in)."
        ]

    def example_prompts(self, n: int, seed: int = 0, pool: int = 600) -> list[str]:
        """``n`` held-out prompts of the trained slice: phrasings and combinations training never showed.

        They are shared out over the slice's object counts, one emoji first, so the page shows both
        what the model does best and its range; each starts with a different emoji. The shortest of
        a fixed ``pool`` of captions, so Gradio's example labels show as much as they can, and a
        smaller ``n`` gives a prefix of each count's picks.
        """
        scenes = EmojiScenes(replace(self.config, split="heldout"), seed=seed)
        by_objects: dict[int, list[tuple[str, str]]] = {}  # objects -> (caption, first emoji), in pool order
        for i in range(pool):
            caption, scene = scenes.describe(i)
            by_objects.setdefault(len(scene.objects), []).append((caption, scene.objects[0].emoji))
        counts = sorted(by_objects)
        prompts: list[str] = []
        for rank, objects in enumerate(counts):
            quota = n // len(counts) + (rank < n % len(counts))
            if quota == 0:
                break
            first_emoji: dict[str, str] = {}
            for caption, emoji in sorted(by_objects[objects], key=lambda pick: len(pick[0])):  # stable: ties by index
                first_emoji.setdefault(emoji, caption)
                if len(first_emoji) == quota:
                    break
            prompts += first_emoji.values()
        return prompts


def listed(names: list[str], quote: str = "'", last: str = "and", sep: str = ", ") -> str:
    """``names`` quoted and joined as a list ('a', 'b' and 'c'), so every note and warning reads alike."""
    quoted = [f"{quote}{name}{quote}" for name in names]
    return quoted[0] if len(quoted) == 1 else f"{sep.join(quoted[:-1])} {last} {quoted[-1]}"


def _number(n: int) -> str:
    return NUMBER_NAMES.get(n, str(n))
