"""The result cards' 👍/👎 and comments, sent by the browser straight to ``POST /api/vote``.

A Gradio event is a queue join and then an event stream: on two cores a click waited about 0.8 s for its
acknowledgement (p99 1.15 s), though the vote is one small write. The light route (``app.vote_route``)
answers in one request with the same signed rater cookie, checks and answer as Gradio's ``/vote``.

The page keeps each card's vote by image id, so a click and a comment always go to the image the card
shows, and a new run's cards start unvoted. Clicks on one image are sent in order (a quick second click
takes the first back, as on the server's toggle). While a new run generates, the earlier cards are dimmed
(``#results.stale``) and a click that still reaches them (the keyboard) is refused in the card's note.
"""

from __future__ import annotations

import json

from app.messages import MESSAGES, say_in
from app.vote_route import VOTE_PATH

NOTE_KEYS = ("vote_first", "comment_saved", "vote_not_sent", "cards_stale")


def _texts() -> str:
    """The notes the script may show, in every language the demo speaks, as a JS object literal."""
    return json.dumps({lang: {key: say_in(lang, key) for key in NOTE_KEYS} for lang in MESSAGES})


# Runs once when the page loads (with the keyboard shortcuts, app.ui.PAGE_SCRIPT): defines window.raphaelCards,
# which the cards' buttons, comment boxes and the run that fills them call. Each function returns the card's note.
CARD_VOTES = f"""
(() => {{
  const texts = {_texts()};
  const lang = (navigator.languages || [navigator.language || ""])
    .map((code) => code.toLowerCase().split("-")[0]).find((code) => code in texts) || "en";
  const text = texts[lang];
  const votes = new Map();  // image id → this page's vote on it: 1 or -1 (none: not voted)
  const queues = new Map();  // image id → its last request, so that clicks apply in order
  const root = (window.gradio_config && window.gradio_config.root) || location.href.split(/[?#]/)[0];
  const endpoint = new URL("{VOTE_PATH.lstrip("/")}", root.replace(/\\/?$/, "/"));

  function paint(index, value) {{
    for (const [id, own] of [["like-" + index, 1], ["dislike-" + index, -1]]) {{
      const button = document.getElementById(id);
      if (!button) continue;
      button.classList.toggle("selected", value === own);
      button.classList.toggle("primary", value === own);
      button.classList.toggle("secondary", value !== own);
    }}
  }}

  async function send(imageId, value, comment) {{
    let answer;
    try {{
      answer = await fetch(endpoint, {{
        method: "POST",
        credentials: "same-origin",
        headers: {{"Content-Type": "application/json"}},
        body: JSON.stringify({{image_id: imageId, value: value, comment: comment || ""}}),
      }});
    }} catch (err) {{
      throw new Error(text.vote_not_sent);
    }}
    const body = await answer.json().catch(() => ({{}}));
    if (!answer.ok) throw new Error(body.detail || text.vote_not_sent);
    return body;
  }}

  function inOrder(imageId, step) {{
    const next = (queues.get(imageId) || Promise.resolve()).then(step, step);
    queues.set(imageId, next);
    return next;
  }}

  const stale = () => document.getElementById("results")?.classList.contains("stale");

  // A click or comment on a card: nothing on an empty card, refused on a dimmed one, else ``step`` in the
  // image's order; the card's note is what ``step`` returns, or the sentence of its refusal.
  function onCard(imageId, step) {{
    if (!imageId) return "";
    if (stale()) return text.cards_stale;
    return inOrder(imageId, () => step().catch((err) => err.message));
  }}

  window.raphaelCards = {{
    vote: (index, value, imageId, comment) => onCard(imageId, async () => {{
      const answer = await send(imageId, votes.get(imageId) === value ? 0 : value, comment);
      if (answer.value) votes.set(imageId, answer.value); else votes.delete(imageId);
      paint(index, answer.value);
      return "";
    }}),
    comment: (index, imageId, comment) => onCard(imageId, async () => {{
      if (!votes.get(imageId)) return text.vote_first;
      await send(imageId, votes.get(imageId), comment);
      return text.comment_saved;
    }}),
    shown: (imageIds) => imageIds.forEach((imageId, index) => paint(index, votes.get(imageId) || 0)),
  }};
}})();
"""


def vote_script(index: int, value: int) -> str:
    """The click handler of card ``index``'s 👍 (``value`` 1) or 👎 (-1): its inputs are the card's image id and
    comment, its output the card's note."""
    return f"(imageId, comment) => window.raphaelCards.vote({index}, {value}, imageId, comment)"


def comment_script(index: int) -> str:
    """The comment box's Enter handler of card ``index``: same inputs and output as ``vote_script``."""
    return f"(imageId, comment) => window.raphaelCards.comment({index}, imageId, comment)"


# After a run fills the cards (inputs: every card's image id): paint each card's buttons from the page's votes.
CARDS_SHOWN = "(...imageIds) => window.raphaelCards.shown(imageIds)"
