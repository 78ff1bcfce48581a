"""Rating campaigns: a fixed set of pre-generated items rated under one set of guidelines, with gold checks.

Modelled on Argilla's image-preference campaigns. A campaign holds single images (👍/👎, kind
``vote``) or image pairs (kind ``pair``), markdown guidelines, and k answers wanted per item.
:meth:`FeedbackStore.next_campaign_item` serves each rater the item with the fewest answers that
they have not answered, so answers spread evenly and reach k everywhere before any item gets more;
gold items, whose answer is known, are mixed in at the campaign's gold rate and look like any other
item to the rater. Every answer is also stored as the vote or comparison it is, so exports and
agreement read it like the rest of the feedback (``preference_rows(campaign=...)`` keeps the
campaign's own items, gold items left out: they are checks, not data).

The report says how far the campaign got, how much the raters agree (Krippendorff's α over the
normal items, as :mod:`feedback.agreement` computes it) and which raters to distrust: those who
fail the gold items, who answer faster than anyone can look at an image, or who press the same
button whatever they see. Those raters are flagged with the reasons, and ``feedback.export
--campaign`` leaves them out. The store runs the SQL; this module only reads what it returns.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from feedback.agreement import Alpha, krippendorff_alpha
from feedback.cli import add_store_arguments, open_store
from feedback.store import CampaignAnswerRow, CampaignInfo, FeedbackError, FeedbackStore

logger = logging.getLogger(__name__)

GOLD_MIN_ACCURACY = 0.7  # flag a rater who gets fewer gold items right than this ...
GOLD_MIN_ANSWERS = 3  # ... once they answered at least this many
TOO_FAST_SECONDS = 1.0  # flag a rater whose median time per item is below this
SAME_BUTTON_SHARE = 0.95  # flag a rater who gives one answer at least this often ...
SAME_BUTTON_MIN_ANSWERS = 10  # ... in at least this many answers
# The codes in a rater's ``reasons`` (comma-separated), and what each means.
FLAG_REASONS = {
    "low_gold_accuracy": (f"got fewer than {GOLD_MIN_ACCURACY:.0%} of at least {GOLD_MIN_ANSWERS} gold items right"),
    "too_fast": f"took a median of less than {TOO_FAST_SECONDS:g} s per item",
    "same_button": f"gave one answer to at least {SAME_BUTTON_SHARE:.0%} of at least {SAME_BUTTON_MIN_ANSWERS} items",
}
ITEM_COLUMNS = ["item_id", "answers", "wanted"]
RATER_COLUMNS = [
    "rater_id", "answers", "gold_answered", "gold_correct", "gold_accuracy", "median_seconds", "same_button_share",
    "flagged", "reasons",
]  # fmt: skip


@dataclass(frozen=True)
class CampaignItemSpec:
    """One item to create: ``image_id`` for a vote campaign, ``left_image_id`` and ``right_image_id`` for a pair
    campaign; ``gold_answer`` ("1"/"-1", or a comparison outcome) makes it a gold item."""

    image_id: str | None = None
    left_image_id: str | None = None
    right_image_id: str | None = None
    gold_answer: str | None = None


@dataclass(frozen=True)
class CampaignReport:
    """Progress, agreement and rater checks of one campaign, for its admins."""

    campaign: CampaignInfo
    items: pd.DataFrame  # ITEM_COLUMNS, one row per normal (non-gold) item in position order
    alpha: Alpha  # over the normal items' answers
    raters: pd.DataFrame  # RATER_COLUMNS, flagged raters first

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; NaN (nothing to measure) becomes None, times ISO 8601."""
        return {
            "campaign": _info(self.campaign),
            "alpha": {key: _none_if_nan(value) for key, value in asdict(self.alpha).items()},
            "items": json.loads(self.items.to_json(orient="records")),
            "raters": json.loads(self.raters.to_json(orient="records")),
        }


def campaign_report(store: FeedbackStore, name: str, n_boot: int = 200) -> CampaignReport:
    """The report of the campaign called ``name``; ``n_boot=0`` skips α's interval (NaN)."""
    info = store.campaign(name)
    answers = store.campaign_answers(info.id)
    normal = [item.id for item in store.campaign_items(info.id) if not item.is_gold]
    per_item = Counter(answer.item_id for answer in answers)
    items = pd.DataFrame(
        {"item_id": normal, "answers": [per_item[i] for i in normal], "wanted": info.answers_wanted},
        columns=ITEM_COLUMNS,
    ).astype(int)

    ratings: dict[int, dict[int, str]] = defaultdict(dict)
    for answer in answers:
        if answer.gold_answer is None:
            ratings[answer.item_id][answer.rater_id] = answer.answer
    alpha = krippendorff_alpha(ratings, n_boot=n_boot)
    raters = rater_checks(answers)
    report = CampaignReport(campaign=info, items=items, alpha=alpha, raters=raters)
    logger.info(
        "campaign %r: %d of %d items complete, α=%.3f on %d items, %d of %d raters flagged",
        name,
        info.items_complete,
        len(normal),
        alpha.alpha,
        alpha.items,
        int(raters["flagged"].sum()),
        len(raters),
    )
    return report


def rater_checks(answers: list[CampaignAnswerRow]) -> pd.DataFrame:
    """Per rater: gold accuracy, median seconds per item, share of their most common answer, and the flags.

    Every answer counts for time and same-button share, the gold items' answers for accuracy.
    """
    by_rater: dict[int, list[CampaignAnswerRow]] = defaultdict(list)
    for answer in answers:
        by_rater[answer.rater_id].append(answer)
    rows = []
    for rater_id, given in sorted(by_rater.items()):
        gold = [a for a in given if a.gold_answer is not None]
        correct = sum(a.answer == a.gold_answer for a in gold)
        gold_accuracy = correct / len(gold) if gold else math.nan
        median_seconds = float(np.median([a.seconds for a in given]))
        same_button = Counter(a.answer for a in given).most_common(1)[0][1] / len(given)
        reasons = [
            code
            for code, failed in {
                "low_gold_accuracy": len(gold) >= GOLD_MIN_ANSWERS and gold_accuracy < GOLD_MIN_ACCURACY,
                "too_fast": median_seconds < TOO_FAST_SECONDS,
                "same_button": len(given) >= SAME_BUTTON_MIN_ANSWERS and same_button >= SAME_BUTTON_SHARE,
            }.items()
            if failed
        ]
        rows.append(
            (rater_id, len(given), len(gold), correct, gold_accuracy, median_seconds, same_button, bool(reasons),
             ", ".join(reasons))
        )  # fmt: skip
    table = pd.DataFrame(rows, columns=RATER_COLUMNS)
    table = table.astype({"rater_id": int, "answers": int, "gold_answered": int, "gold_correct": int})
    table = table.astype({"gold_accuracy": float, "median_seconds": float, "same_button_share": float})
    table = table.astype({"flagged": bool, "reasons": str})
    return table.sort_values(["flagged", "rater_id"], ascending=[False, True], ignore_index=True)


def flag_counts(raters: pd.DataFrame) -> dict[str, int]:
    """How many raters each reason flags (a rater may count under several)."""
    given = [set(reasons.split(", ")) for reasons in raters.loc[raters["flagged"], "reasons"]]
    return {code: sum(code in reasons for reasons in given) for code in FLAG_REASONS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feedback.campaigns",
        description="Rating campaigns: list them, show one's report (answers per item, α, rater checks) as JSON, "
        "or close one. Campaigns are created in the app, which generates their images.",
        epilog="flag reasons: " + "; ".join(f"{code}: {text}" for code, text in FLAG_REASONS.items()),
    )
    add_store_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the open campaigns and their progress, as JSON")
    listing.add_argument("--all", action="store_true", help="closed campaigns too")
    show = commands.add_parser("show", help="one campaign's report, as JSON")
    show.add_argument("name")
    show.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for α's interval (default 200)")
    close = commands.add_parser("close", help="stop serving a campaign and refuse further answers")
    close.add_argument("name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")

    with open_store(parser, args) as store:
        try:
            if args.command == "list":
                result: Any = [_info(info) for info in store.campaigns(include_closed=args.all)]
            elif args.command == "show":
                result = campaign_report(store, args.name, n_boot=args.n_boot).to_dict()
            else:
                store.close_campaign(args.name)
                result = _info(store.campaign(args.name))
        except FeedbackError as error:
            parser.error(str(error))
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def _info(info: CampaignInfo) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in asdict(info).items()}


def _none_if_nan(value: float | int) -> float | int | None:
    return None if isinstance(value, float) and math.isnan(value) else value


if __name__ == "__main__":
    sys.exit(main())
