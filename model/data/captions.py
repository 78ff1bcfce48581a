"""Varied captions from scene ground truth.

A caption always names every object (the canonical name or a synonym, singular or plural),
its count (article, number word or digit), its position, the background colour and the style;
the phrasing varies with the template, word order, synonyms and optional size adjectives.

Held out (only ``split="heldout"`` produces them): the templates in ``HELDOUT_TEMPLATES`` and,
for every emoji with two or more synonyms, its last synonym. Training captions may also use the
extra words of ``PARAPHRASES`` (``paraphrases=True``); held-out captions never do.
"""

import random
import re
from collections.abc import Iterable

from model.data.atlas import load_atlas
from model.data.paraphrases import PARAPHRASES
from model.data.scene import Scene, SceneObject

COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",),
    "orange": ("orange",),
    "yellow": ("yellow",),
    "green": ("green",),
    "blue": ("blue",),
    "purple": ("purple", "violet"),
    "pink": ("pink",),
    "white": ("white",),
    "black": ("black",),
    "gray": ("gray", "grey"),
}

COUNT_WORDS: dict[int, tuple[str, ...]] = {
    1: ("a", "one", "a single"),
    2: ("two", "2", "a pair of"),
    3: ("three", "3"),
}

SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "medium-sized"),
    "large": ("large", "big"),
}

POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "on the left side", "at the left", "to the left"),
    "right": ("on the right", "on the right side", "at the right", "to the right"),
    "top": ("at the top", "in the upper half", "along the top", "up top"),
    "bottom": ("at the bottom", "in the lower half", "along the bottom", "down below"),
    "centre": ("in the centre", "in the center", "in the middle", "right in the middle"),
}

# Per style: the bare word, trailing phrases and leading phrases.
STYLE_WORDS: dict[str, str] = {
    "flat": "flat",
    "outline sketch": "outline sketch",
    "pixel art": "pixel art",
    "soft watercolour": "soft watercolour",
    "night": "night-time",
    "sticker": "sticker",
}
STYLE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "flat": ("in flat style", "in a flat emoji style", "with flat colours", "as flat icons"),
    "outline sketch": ("as an outline sketch", "in outline sketch style", "drawn as outlines", "as a line drawing"),
    "pixel art": ("in pixel art style", "as pixel art", "in 8-bit pixel art"),
    "soft watercolour": ("in soft watercolour", "as a soft watercolor painting", "painted in watercolour"),
    "night": ("at night", "on a starry night", "in a night-time style", "under a night sky"),
    "sticker": ("as stickers", "in sticker style", "with white sticker borders"),
}
STYLE_PREFIXES: dict[str, tuple[str, ...]] = {
    "flat": ("a flat illustration of", "a flat emoji picture of", "flat icons of"),
    "outline sketch": ("an outline sketch of", "a line drawing of", "a pencil sketch of"),
    "pixel art": ("pixel art of", "a pixel art image of", "an 8-bit picture of"),
    "soft watercolour": ("a soft watercolour of", "a watercolor painting of"),
    "night": ("a night scene with", "a starry night picture of"),
    "sticker": ("stickers of", "a sticker sheet with"),
}

BACKGROUND_PHRASES: tuple[str, ...] = (
    "on a {c} background",
    "against a {c} backdrop",
    "on {c}",
    "with a {c} background",
    "over a plain {c} background",
)

# {objects}: the object list; {bg}: a background phrase; {c}: the colour word;
# {style}: a trailing style phrase; {pre}: a leading style phrase; {word}: the bare style word.
TEMPLATES: tuple[str, ...] = (
    "{objects} {bg}, {style}",
    "{pre} {objects} {bg}",
    "{objects}, {c} background, {style}",
    "{c} background with {objects}, {style}",
    "an image of {objects} {bg}, {style}",
    "{pre} {objects}, {c} background",
    "a picture showing {objects} {bg} {style}",
    "{objects}. background: {c}. style: {word}",
    "emoji scene: {objects} {bg}, {style}",
    "{pre} {objects} against a {c} backdrop",
    "draw {objects} {bg}, {style}",
    "{word}: {objects} {bg}",
    "a {c} canvas with {objects}, {style}",
    "{objects} over {c}, {style}",
    "we see {objects} {bg}, {style}",
    "{word} illustration: {objects} {bg}",
    "{c} backdrop, {objects}, {word}",
    "show me {objects} {bg} {style}",
    "a {word} image of {objects} {bg}",
    "{objects} {style} {bg}",
    # held out
    "a {c} background and {objects}, {style}",
    "{objects}; {c} background; {word}",
    "render {objects} {bg}, {style}",
    "{pre} {objects} set against {c}",
)
HELDOUT_TEMPLATES: frozenset[int] = frozenset(range(20, 24))

_IRREGULAR = {
    "die": "dice",
    "game die": "game dice",
    "tuna": "tuna",
    "spacecraft": "spacecraft",
    "gateau": "gateaux",
    "autumn leaf": "autumn leaves",
    "ananas": "ananas",
    "trout": "trout",
    "goldfish": "goldfish",
    "devilfish": "devilfish",
    "aircraft": "aircraft",
    "chateau": "chateaux",
}


def pluralise(word: str) -> str:
    """English plural of a synonym (canonical plurals come from the atlas)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def indefinite_article(word: str) -> str:
    """ "a" or "an" before ``word``, by how it sounds ("an apple", "a ufo")."""
    return "an" if word[0] in "aeiou" and not word.startswith(("ufo", "uni", "eu")) else "a"


def fix_articles(text: str) -> str:
    """ "a orange background" -> "an orange background", wherever a template put "a" before a word."""
    return re.sub(r"\b([Aa]) (?=(\w+))", lambda m: f"{m.group(1)}{indefinite_article(m.group(2))[1:]} ", text)


def synonyms(name: str, split: str, paraphrases: bool = False) -> tuple[str, ...]:
    """Synonyms of emoji ``name`` usable in ``split`` (the last of two or more is held out).

    ``paraphrases`` adds the training-only words of ``PARAPHRASES`` to the "train" split.
    """
    words = load_atlas().by_name[name].synonyms
    if split != "train":
        return words
    return (*(words[:-1] if len(words) >= 2 else words), *(PARAPHRASES.get(name, ()) if paraphrases else ()))


def heldout_synonyms(name: str) -> tuple[str, ...]:
    """The synonyms of emoji ``name`` that only held-out captions use (see ``synonyms``)."""
    trained = set(synonyms(name, "train"))
    return tuple(w for w in synonyms(name, "heldout") if w not in trained)


def heldout_words(name: str) -> frozenset[str]:
    """The word forms for emoji ``name`` that only held-out captions use, singular and plural."""
    held = heldout_synonyms(name)
    return frozenset({*held, *map(pluralise, held)})


def whole_words(words: Iterable[str]) -> str:
    """A regex alternation of ``words`` as whole words, longest first, so "soccer ball" wins over "ball"."""
    return "|".join(rf"\b{re.escape(w)}\b" for w in sorted(words, key=len, reverse=True))


_COUNTS_ABOVE_ONE = {word: count for count, words in COUNT_WORDS.items() if count > 1 for word in words}
_COUNT_BEFORE = re.compile(rf"\b({'|'.join(map(re.escape, _COUNTS_ABOVE_ONE))})\s+(?:[\w-]+\s+){{0,2}}$", re.I)


def count_before(text: str) -> int | None:
    """The count above one that the end of ``text`` puts on the noun after it ("two large " -> 2), else None.

    Up to two words may stand between the count and the noun, as size words do in the captions ("a pair of
    tiny shiny"); the count of a noun that is its own plural ("spacecraft") can only be read this way.
    """
    match = _COUNT_BEFORE.search(text)
    return _COUNTS_ABOVE_ONE[match.group(1).lower()] if match else None


def emoji_words(name: str) -> frozenset[str]:
    """Every word form a caption may use for emoji ``name`` (any split, paraphrases too, singular and plural)."""
    info = load_atlas().by_name[name]
    words = (*info.synonyms, *PARAPHRASES.get(name, ()))
    return frozenset({name, info.plural, *words, *map(pluralise, words)})


def _noun_phrase(obj: SceneObject, rng: random.Random, split: str, paraphrases: bool) -> str:
    info = load_atlas().by_name[obj.emoji]
    options = synonyms(obj.emoji, split, paraphrases)
    use_synonym = options and rng.random() < 0.35
    word = rng.choice(options) if use_synonym else obj.emoji
    if obj.count > 1:
        word = pluralise(word) if use_synonym else info.plural
    if rng.random() < 0.3:
        word = f"{rng.choice(SIZE_WORDS[obj.size])} {word}"
    number = rng.choice(COUNT_WORDS[obj.count])
    if number == "a":
        number = indefinite_article(word)
    return f"{number} {word}"


def _object_phrase(obj: SceneObject, rng: random.Random, split: str, free: bool, paraphrases: bool) -> str:
    """One object's words; position-first orders only where the list stands free (not after "of")."""
    noun = _noun_phrase(obj, rng, split, paraphrases)
    where = rng.choice(POSITION_PHRASES[obj.position])
    order = rng.randrange(4) if free else rng.choice((0, 2))
    if order == 0:
        return f"{noun} {where}"
    if order == 1:
        return f"{where}, {noun}"
    if order == 2:
        return f"{noun} placed {where}"
    return f"{where} there {'is' if obj.count == 1 or noun.startswith('a pair') else 'are'} {noun}"


def _join(phrases: list[str], rng: random.Random) -> str:
    if len(phrases) == 1:
        return phrases[0]
    comma = "," if len(phrases) > 2 and rng.random() < 0.5 else ""
    return f"{', '.join(phrases[:-1])}{comma} and {phrases[-1]}"


def make_caption(scene: Scene, rng: random.Random, split: str = "train", paraphrases: bool = False) -> str:
    """A caption for ``scene`` using only the phrasings allowed in ``split`` (and ``PARAPHRASES`` if asked)."""
    pool = [i for i in range(len(TEMPLATES)) if (i in HELDOUT_TEMPLATES) == (split == "heldout")]
    template = TEMPLATES[rng.choice(pool)]
    lead = template.split("{objects}")[0]
    free = lead == "" or lead.endswith((": ", ", "))
    objects = list(scene.objects)
    rng.shuffle(objects)
    colour = rng.choice(COLOUR_WORDS[scene.background])
    caption = template.format(
        objects=_join([_object_phrase(o, rng, split, free, paraphrases) for o in objects], rng),
        bg=rng.choice(BACKGROUND_PHRASES).format(c=colour),
        c=colour,
        style=rng.choice(STYLE_SUFFIXES[scene.style]),
        pre=rng.choice(STYLE_PREFIXES[scene.style]),
        word=STYLE_WORDS[scene.style],
    )
    caption = fix_articles(caption)
    return caption[0].upper() + caption[1:] if rng.random() < 0.5 else caption
