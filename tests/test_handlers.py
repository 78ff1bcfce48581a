"""Event functions that need no server: which card a click was cast on."""

import pytest

from app.guard import InvalidInput
from app.handlers import Handlers

CARDS = [{"image_id": "new-0", "vote": 0}, {"image_id": "new-1", "vote": 1}]


def test_a_click_on_the_card_it_was_cast_on_is_taken():
    assert Handlers._card(1, CARDS, "new-1") == CARDS[1]


def test_a_click_on_a_card_that_has_since_changed_is_refused():
    """The page still showed the old image when the click left it: the vote must not land on the new one."""
    with pytest.raises(InvalidInput, match="changed to a new image"):
        Handlers._card(0, CARDS, "old-0")


def test_a_click_on_an_empty_card_is_refused():
    with pytest.raises(InvalidInput, match="generate first"):
        Handlers._card(2, CARDS, "")
