"""Prompt category for the dashboard: which emoji family a prompt is about.

The dashboard shows like-rate per category, so each generation needs one. The first emoji a
prompt names (``EmojiMentions``: by name, synonym, plural or character, the same reading that
checks prompts against a bundle's trained domain) decides its category in the emoji atlas;
prompts about none are "other".
"""

from __future__ import annotations

from functools import cached_property

from model.data.atlas import load_atlas
from model.prompts.trained_domain import EmojiMentions

OTHER = "other"


class PromptCategorizer:
    """Maps a prompt to the atlas category of the first emoji it names."""

    @cached_property
    def _mentions(self) -> EmojiMentions:
        return EmojiMentions()

    def category(self, prompt: str) -> str:
        """Return the category of the first emoji named in ``prompt``, else "other"."""
        mentions = self._mentions(prompt)
        return load_atlas().by_name[mentions[0].name].category if mentions else OTHER
