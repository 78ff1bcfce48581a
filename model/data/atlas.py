"""Load the committed emoji atlas and hand out sprites at any size.

Everything downstream (scene rendering, captions, the recognizer) reads emoji from here, so the
system font is never needed at training or test time. Sprites are resized once per size with
LANCZOS (in premultiplied alpha, so edges keep their colour) and cached.
"""

import json
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import numpy as np
from PIL import Image

ASSETS = Path(__file__).resolve().parent / "assets"


@dataclass(frozen=True)
class EmojiInfo:
    """One atlas entry: the canonical name and the words captions may use for it."""

    index: int
    name: str
    char: str
    codepoints: tuple[str, ...]
    category: str
    synonyms: tuple[str, ...]
    plural: str


class EmojiAtlas:
    """The sprite sheet plus its index, with a per-size sprite cache."""

    def __init__(self, image: Image.Image, index: dict) -> None:
        self.sprite_size: int = index["sprite_size"]
        self.emoji: tuple[EmojiInfo, ...] = tuple(
            EmojiInfo(
                index=i,
                name=e["name"],
                char=e["char"],
                codepoints=tuple(e["codepoints"]),
                category=e["category"],
                synonyms=tuple(e["synonyms"]),
                plural=e["plural"],
            )
            for i, e in enumerate(index["emoji"])
        )
        s = self.sprite_size
        self._cells = [
            image.crop((c * s, r * s, (c + 1) * s, (r + 1) * s)) for r, c in (e["cell"] for e in index["emoji"])
        ]
        self._by_size: dict[tuple[int, int], Image.Image] = {}

    def __len__(self) -> int:
        return len(self.emoji)

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Canonical names in curriculum order."""
        return tuple(e.name for e in self.emoji)

    @cached_property
    def by_name(self) -> dict[str, EmojiInfo]:
        """Look-up from canonical name to entry."""
        return {e.name: e for e in self.emoji}

    def sprite(self, index: int, size: int) -> Image.Image:
        """RGBA sprite ``index`` as a ``size``x``size`` PIL image (cached; do not modify it)."""
        key = (index, size)
        if key not in self._by_size:
            cell = self._cells[index]
            self._by_size[key] = (
                cell if size == self.sprite_size else cell.resize((size, size), Image.Resampling.LANCZOS)
            )
        return self._by_size[key]

    def sprite_array(self, index: int, size: int) -> np.ndarray:
        """RGBA sprite as a float32 array in [0, 1] of shape ``(size, size, 4)``."""
        return np.asarray(self.sprite(index, size), dtype=np.float32) / 255.0


@cache
def load_atlas(assets: Path = ASSETS) -> EmojiAtlas:
    """Load ``emoji_atlas.png`` and ``emoji.json`` once per process."""
    index = json.loads((assets / "emoji.json").read_text(encoding="utf-8"))
    with Image.open(assets / "emoji_atlas.png") as image:
        return EmojiAtlas(image.convert("RGBA"), index)
