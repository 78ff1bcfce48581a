"""Prompt category for the dashboard: which emoji family a prompt is about.

The dashboard shows like-rate per category, so each generation needs one. The emoji-scenes data
ships a table of emoji (``model/data/assets/emoji.json``: name, char, plural, synonyms, category);
the first emoji a prompt mentions decides its category, and prompts about none are "other".
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from app.settings import ROOT

log = logging.getLogger(__name__)

EMOJI_TABLE = ROOT / "model" / "data" / "assets" / "emoji.json"
OTHER = "other"
VARIATION_SELECTOR = "\ufe0f"


def _normalise(text: str) -> str:
    """Lower-case and drop the emoji variation selector, which users type or omit at will."""
    return text.replace(VARIATION_SELECTOR, "").lower()


class PromptCategorizer:
    """Maps a prompt to the category of the first emoji it names (by name, synonym or character)."""

    def __init__(self, phrases: dict[str, str]) -> None:
        self.phrases = phrases
        words = sorted((p for p in phrases if p.isascii()), key=len, reverse=True)  # longest phrase wins
        chars = [p for p in phrases if not p.isascii()]
        alternatives = [rf"\b{re.escape(w)}\b" for w in words] + [re.escape(c) for c in chars]
        self._pattern = re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None

    @classmethod
    def from_file(cls, path: Path = EMOJI_TABLE) -> PromptCategorizer:
        """Load the emoji table; without it every prompt is "other" (logged once)."""
        if not path.exists():
            log.warning("No emoji table at %s; every prompt will be categorised as %r.", path, OTHER)
            return cls({})
        table = json.loads(path.read_text(encoding="utf-8"))
        phrases: dict[str, str] = {}
        for entry in table["emoji"] if isinstance(table, dict) else table:
            category = str(entry.get("category") or OTHER)
            for phrase in [entry.get("name"), entry.get("plural"), entry.get("char"), *entry.get("synonyms", [])]:
                if phrase:
                    phrases.setdefault(_normalise(str(phrase)), category)
        return cls(phrases)

    def category(self, prompt: str) -> str:
        """Return the category of the first emoji named in ``prompt``, else "other"."""
        match = self._pattern.search(_normalise(prompt)) if self._pattern else None
        return OTHER if match is None else self.phrases.get(match.group(0).lower(), OTHER)
