"""The fixed held-out split: which (emoji, background, position) combinations train never shows.

Rule: for an (emoji, background) pair with ``crc32("emoji|background") % 4 == 0`` (about a quarter
of pairs), exactly one position is reserved, ``POSITIONS[(crc32 // 4) % 5]``. So about 5% of all
combinations are held out, every emoji and every colour still appears in training, and every
(emoji, background) pair keeps at least four trainable positions. The rule depends only on the
names, so it does not change when the curriculum grows. Caption templates and synonyms reserved
for the held-out split live in ``captions.py``.
"""

import zlib
from functools import cache

from model.data.vocab import BACKGROUNDS, POSITIONS


def _pair_hash(emoji: str, background: str) -> int:
    return zlib.crc32(f"{emoji}|{background}".encode())


def reserved_position(emoji: str, background: str) -> str | None:
    """The one position held out for this (emoji, background) pair, or None."""
    h = _pair_hash(emoji, background)
    return POSITIONS[(h // 4) % len(POSITIONS)] if h % 4 == 0 else None


def is_reserved(emoji: str, background: str, position: str) -> bool:
    """True if this combination may only appear in the held-out split."""
    return reserved_position(emoji, background) == position


@cache
def reserved_combinations(names: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """All reserved (emoji, background, position) triples among ``names``."""
    triples = []
    for name in names:
        for background in BACKGROUNDS:
            position = reserved_position(name, background)
            if position is not None:
                triples.append((name, background, position))
    return tuple(triples)
