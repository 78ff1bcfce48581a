"""Inter-rater agreement: Krippendorff's α for votes and for comparisons, and each rater against the rest.

A preference dataset is only as trustworthy as its raters are consistent. Krippendorff's α
handles what a public demo produces: any number of raters, each judging a different subset, with
most items judged once. Only items judged by at least two raters carry information; α is 1 for
perfect agreement, 0 for agreement at chance level and negative below it. A bootstrap over items
gives its uncertainty.

Votes are nominal values (👍 / 👎) on an image. A comparison's item is the unordered pair of
images, so "left is better" on (A, B) and "right is better" on (B, A) agree; its values are
which image won, tie, or both bad. A rater who compared the same pair twice counts once, with
their latest judgement.

Each rater is also scored by how often their judgement matches the other raters' on the items
they share, next to what chance alone would give; raters who mostly disagree with everyone are
flagged for review, not dropped: a dataset builder decides what to do with them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass

import krippendorff
import numpy as np
import pandas as pd

from feedback.cli import add_filter_arguments, add_store_arguments, open_store
from feedback.store import PreferenceRows

logger = logging.getLogger(__name__)

# item -> {rater_id: value}; one value per rater and item
Ratings = Mapping[Hashable, Mapping[int, Hashable]]

RATER_COLUMNS = [
    "rater_id", "shared_images", "vote_agreement", "shared_pairs", "pair_agreement", "agreement", "chance", "flagged",
]  # fmt: skip


@dataclass(frozen=True)
class Alpha:
    """Krippendorff's α (nominal) with a bootstrap 95% interval; NaN where no item has two raters."""

    alpha: float
    low: float
    high: float
    items: int  # items judged by at least two raters
    ratings: int  # ratings on those items
    raters: int  # raters who rated at least one of those items


@dataclass(frozen=True)
class AgreementReport:
    votes: Alpha
    comparisons: Alpha
    raters: pd.DataFrame  # RATER_COLUMNS, one row per rater who shares an item with someone

    def to_dict(self) -> dict[str, object]:
        """Plain JSON values; NaN (nothing to measure) becomes None."""
        return {
            "votes": _finite(asdict(self.votes)),
            "comparisons": _finite(asdict(self.comparisons)),
            "raters": json.loads(self.raters.to_json(orient="records")),
        }


def vote_ratings(rows: PreferenceRows) -> dict[str, dict[int, int]]:
    """item -> {rater: +1/-1}, from the current votes; an item is one image shown for one text (``rows.items``)."""
    ratings: dict[str, dict[int, int]] = defaultdict(dict)
    for vote in sorted(rows.votes, key=lambda v: v.updated_at):  # a rater's latest vote on an item counts
        ratings[rows.items[vote.image_id]][vote.rater_id] = vote.value
    return ratings


def comparison_ratings(rows: PreferenceRows) -> dict[tuple[str, str], dict[int, str]]:
    """Sorted item pair -> {rater: "first" / "second" / "tie" / "both_bad"}, the latest per rater."""
    ratings: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
    for row in sorted(rows.comparisons, key=lambda c: (c.created_at, c.id)):
        left, right = rows.items[row.left_image_id], rows.items[row.right_image_id]
        pair = tuple(sorted((left, right)))
        value = row.outcome
        if value in ("left", "right"):
            winner = left if value == "left" else right
            value = "first" if winner == pair[0] else "second"
        ratings[pair][row.rater_id] = value
    return ratings


def krippendorff_alpha(ratings: Ratings, *, n_boot: int = 1000, seed: int = 0) -> Alpha:
    """Nominal α from the ``krippendorff`` package, with a percentile bootstrap over items.

    The package gets each pairable item's count per category (items × categories): the same
    numbers a raters × items matrix gives it, without a cell for every session that never rated
    the item. ``n_boot=0`` skips the interval (NaN).
    """
    pairable = [list(values.values()) for values in ratings.values() if len(values) >= 2]
    raters = {rater for values in ratings.values() if len(values) >= 2 for rater in values}
    if not pairable:
        return Alpha(float("nan"), float("nan"), float("nan"), 0, 0, 0)
    categories = sorted({value for values in pairable for value in values}, key=str)
    index = {category: i for i, category in enumerate(categories)}
    counts = np.array([np.bincount([index[v] for v in values], minlength=len(categories)) for values in pairable])

    rng = np.random.default_rng(seed)
    # Not scipy.stats.bootstrap: one resample whose items all got one value (α undefined, common with few items)
    # makes its whole interval NaN, and it refuses a single item; this loop drops such resamples instead.
    boot = np.array([_alpha(counts[rng.integers(len(counts), size=len(counts))]) for _ in range(n_boot)])
    boot = boot[~np.isnan(boot)]
    low, high = np.percentile(boot, [2.5, 97.5]) if boot.size else (float("nan"),) * 2
    return Alpha(_alpha(counts), float(low), float(high), len(pairable), sum(map(len, pairable)), len(raters))


def _alpha(value_counts: np.ndarray) -> float:
    """Nominal α of items × categories counts; NaN where all values are one category (the package refuses that)."""
    if np.count_nonzero(value_counts.sum(0)) < 2:
        return float("nan")
    return float(krippendorff.alpha(value_counts=value_counts, level_of_measurement="nominal"))


def rater_agreement(ratings: Ratings) -> pd.DataFrame:
    """Per rater: items shared with others, and the share of other raters' values that match theirs.

    ``chance`` is what a rater answering at random with the pool's value frequencies would score.
    """
    pool = pd.Series([v for values in ratings.values() if len(values) >= 2 for v in values.values()], dtype=object)
    chance = float((pool.value_counts(normalize=True) ** 2).sum()) if len(pool) else float("nan")
    matches: dict[int, list[float]] = defaultdict(list)
    for values in ratings.values():
        if len(values) < 2:
            continue
        for rater, value in values.items():
            others = [other for r, other in values.items() if r != rater]
            matches[rater].append(sum(other == value for other in others) / len(others))
    rows = [(rater, len(m), float(np.mean(m))) for rater, m in matches.items()]
    return pd.DataFrame(rows, columns=["rater_id", "shared", "agreement"]).assign(chance=chance)


def agreement(
    rows: PreferenceRows, *, min_shared: int = 5, flag_below: float = 0.5, n_boot: int = 1000, seed: int = 0
) -> AgreementReport:
    """α for votes and comparisons, and per-rater agreement with ``flagged`` raters.

    A rater is flagged when they share at least ``min_shared`` items with others and match the
    other raters on fewer than ``flag_below`` of them (votes and comparisons pooled).
    """
    votes, pairs = vote_ratings(rows), comparison_ratings(rows)
    by_vote = rater_agreement(votes).rename(columns={"shared": "shared_images", "agreement": "vote_agreement"})
    by_pair = rater_agreement(pairs).rename(columns={"shared": "shared_pairs", "agreement": "pair_agreement"})
    table = by_vote.merge(by_pair, on="rater_id", how="outer", suffixes=("_votes", "_pairs"))
    table[["shared_images", "shared_pairs"]] = table[["shared_images", "shared_pairs"]].fillna(0).astype(int)
    total = table["shared_images"] + table["shared_pairs"]

    def pooled(on_votes: str, on_pairs: str) -> pd.Series:
        """A rate over votes and comparisons together, each weighted by its shared items."""
        votes_part = table[on_votes].fillna(0) * table["shared_images"]
        return (votes_part + table[on_pairs].fillna(0) * table["shared_pairs"]) / total

    table["agreement"] = pooled("vote_agreement", "pair_agreement")
    table["chance"] = pooled("chance_votes", "chance_pairs")
    table["flagged"] = (total >= min_shared) & (table["agreement"] < flag_below)
    table = table[RATER_COLUMNS].sort_values(["flagged", "agreement"], ascending=[False, True], ignore_index=True)
    report = AgreementReport(
        votes=krippendorff_alpha(votes, n_boot=n_boot, seed=seed),
        comparisons=krippendorff_alpha(pairs, n_boot=n_boot, seed=seed),
        raters=table,
    )
    logger.info(
        "agreement: votes α=%.3f on %d images, comparisons α=%.3f on %d pairs, %d of %d raters flagged",
        report.votes.alpha,
        report.votes.items,
        report.comparisons.alpha,
        report.comparisons.items,
        int(table["flagged"].sum()),
        len(table),
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feedback.agreement",
        description="Inter-rater agreement of the collected feedback (Krippendorff's α, raters vs the rest), as JSON.",
    )
    add_store_arguments(parser)
    add_filter_arguments(parser)
    parser.add_argument("--min-shared", type=int, default=5, help="items a rater must share to be flagged (default 5)")
    parser.add_argument(
        "--flag-below", type=float, default=0.5, help="flag raters who match the others less often (default 0.5)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    with open_store(parser, args) as store:
        rows = store.preference_rows(
            model=args.model, since=args.since, until=args.until, with_images=False, with_events=False
        )
    report = agreement(rows, min_shared=args.min_shared, flag_below=args.flag_below)
    json.dump(report.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _finite(values: dict[str, float | int]) -> dict[str, float | int | None]:
    return {key: None if isinstance(value, float) and np.isnan(value) else value for key, value in values.items()}


if __name__ == "__main__":
    sys.exit(main())
