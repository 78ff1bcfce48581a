"""An arena leaderboard of model versions from anonymous side-by-side battles, with bootstrap intervals.

Raters judge two images without knowing which model version made which (as in Chatbot Arena and
GenAI-Arena), so each judgement is a battle between two versions. A Bradley-Terry model turns the
battles into one strength per version, fitted by maximum likelihood and shown on an Elo-like scale
(1000 for the average version, +400 points for 10:1 odds of winning). A tie or a "both bad" answer
says the two versions were alike, so it counts as half a win to each side, as Chatbot Arena does.

The order in which versions happened to meet does not matter to a Bradley-Terry fit (unlike online
Elo updates); the uncertainty comes from which battles happened to be judged, so the 95% intervals
resample the battles with replacement and refit. The fit only sees how often each model beat and
tied each other model, so a resample draws those counts from one multinomial instead of copying
battle rows, and Newton's method fits all resamples at once.

A tiny L2 penalty (a wide Gaussian prior on the strengths) keeps a version that won or lost every
battle at a finite rating. It also sets the anchor: the likelihood ignores a common shift of all
strengths, and the penalty is smallest when they sum to zero.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.special import expit

from feedback.cli import add_store_arguments, open_store, timestamp
from feedback.models import COMPARISON_OUTCOMES

# A pair of models as a key of pair counts: the two names sorted, so (a, b) and (b, a) are one pair.
Pair = tuple[str, str]

RATING_COLUMNS = ["rank", "model", "rating", "lower", "upper", "battles", "wins", "ties", "losses"]
L2_PENALTY = 1e-2  # λ in λ/2 · Σβ² beside the summed log-likelihood: a N(0, 10²) prior on β, ±1737 points at 1 sd
ELO_SCALE = 400 / np.log(10)  # rating points per unit of β: 400 · log10(e)
ELO_MEAN = 1000.0
MAX_NEWTON_STEPS = 100  # the fits here take 5 to 10
NEWTON_TOLERANCE = 1e-14  # on the squared Newton decrement: β within about 1e-6 where the curvature is only λ
WINNER = {"left": 0, "right": 1}  # which side of a battle won; the other outcomes are ties
assert set(WINNER) < set(COMPARISON_OUTCOMES), "a winning outcome must be a comparison outcome"


class BattleLike(Protocol):
    """One judged battle: ``outcome`` "left" means ``model_a`` won, "right" that ``model_b`` won."""

    @property
    def model_a(self) -> str: ...

    @property
    def model_b(self) -> str: ...

    @property
    def outcome(self) -> str: ...


@dataclass(frozen=True)
class Leaderboard:
    """Ratings with 95% bootstrap intervals, and the head-to-head tables, rows and columns in rating order."""

    ratings: pd.DataFrame  # RATING_COLUMNS, one row per model, best first
    win_rate: pd.DataFrame  # model × opponent: share of their battles the row model won, ties half; NaN if never met
    pair_battles: pd.DataFrame  # model × opponent: battles between the two, 0 on the diagonal
    self_battles: int  # battles of a model against itself, left out: they say nothing about which is better

    def to_json(self) -> dict[str, object]:
        """Plain JSON values: ratings as records, the tables as {model: {opponent: value}}; NaN becomes None."""
        return {
            "ratings": json.loads(self.ratings.to_json(orient="records")),
            "win_rate": json.loads(self.win_rate.to_json(orient="index")),
            "pair_battles": json.loads(self.pair_battles.to_json(orient="index")),
            "self_battles": self.self_battles,
        }


def pair_key(model_a: str, model_b: str) -> Pair:
    """The key of the pair ``model_a``, ``model_b`` in pair counts: the two names sorted."""
    return (model_a, model_b) if model_a <= model_b else (model_b, model_a)


def leaderboard(battles: Iterable[BattleLike], n_bootstrap: int = 1000, seed: int = 0) -> Leaderboard:
    """Bradley-Terry ratings of the models in ``battles``, with percentile intervals from ``n_bootstrap`` resamples.

    ``n_bootstrap=0`` skips the intervals (NaN). A model enters the table by meeting another model, so with no
    such battle (none at all, or one model only) every frame is empty. Models that never meet, even through
    others, are rated on separate scales, each averaging 1000.
    """
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be 0 or more, got {n_bootstrap}.")
    models, won, tied, self_battles = _tally(battles)
    if not models:
        empty = pd.DataFrame(index=pd.Index([], name="model"), columns=pd.Index([], name="opponent"))
        return Leaderboard(pd.DataFrame(columns=RATING_COLUMNS), empty, empty.copy(), self_battles)

    score = won + tied / 2  # (M, M) the row model's wins over the column model, ties half
    beta = _fit(score[None])[0]  # (M,)
    lower, upper = np.full((2, len(models)), np.nan)  # (M,) each
    if n_bootstrap:
        # Every battle is one cell of (who won, or the tie) × pair: won's cells and tied's upper triangle.
        cells = np.stack([won, np.triu(tied)])  # (2, M, M)
        rng = np.random.default_rng(seed)
        resampled = rng.multinomial(cells.sum(), cells.ravel() / cells.sum(), size=n_bootstrap)  # (B, 2·M·M)
        resampled = resampled.reshape(n_bootstrap, *cells.shape)  # (B, 2, M, M)
        ties = resampled[:, 1] + resampled[:, 1].transpose(0, 2, 1)  # (B, M, M)
        boot = _fit(resampled[:, 0] + ties / 2)  # (B, M)
        lower, upper = np.percentile(ELO_MEAN + ELO_SCALE * boot, [2.5, 97.5], axis=0)  # (M,) each

    table = pd.DataFrame(
        {
            "model": models,
            "rating": ELO_MEAN + ELO_SCALE * beta,
            "lower": lower,
            "upper": upper,
            "battles": won.sum(1) + tied.sum(1) + won.sum(0),
            "wins": won.sum(1),
            "ties": tied.sum(1),
            "losses": won.sum(0),
        }
    )
    table = table.sort_values(["rating", "model"], ascending=[False, True], ignore_index=True)
    table.insert(0, "rank", table["rating"].rank(ascending=False, method="min").astype(int))
    order = table["model"].tolist()

    def square(values: np.ndarray) -> pd.DataFrame:
        """An (M, M) array as a model × opponent frame in rating order."""
        frame = pd.DataFrame(values, index=pd.Index(models, name="model"), columns=pd.Index(models, name="opponent"))
        return frame.loc[order, order]

    met = won + won.T + tied  # (M, M) battles per pair
    with np.errstate(invalid="ignore"):  # 0 / 0 where two models never met
        win_rate = square(score / met)
    return Leaderboard(table, win_rate, square(met), self_battles)


def least_compared_pair(models: Sequence[str], pair_counts: Mapping[Pair, int], rng: random.Random) -> Pair:
    """Two distinct ``models``, in random left/right order, from the pairs with the fewest battles so far.

    ``pair_counts`` is keyed by :func:`pair_key` (the two names sorted); a missing pair has had no battles,
    and pairs with a model outside ``models`` are ignored. Ties between pairs are broken with ``rng``.
    """
    names = sorted(set(models))  # sorted, so a seeded ``rng`` picks the same pair whatever the input order
    if len(names) < 2:
        raise ValueError(f"A pair needs at least two distinct models, got {len(names)}.")
    pairs = list(combinations(names, 2))  # each already sorted: its own pair_key
    fewest = min(pair_counts.get(pair, 0) for pair in pairs)
    left, right = rng.sample(rng.choice([pair for pair in pairs if pair_counts.get(pair, 0) == fewest]), 2)
    return left, right


def _tally(battles: Iterable[BattleLike]) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """Models (sorted by name), wins (M, M) of the row model over the column model, ties (M, M), self-battles.

    Ties are symmetric and count "tie" and "both_bad" alike.
    """
    wins: dict[tuple[str, str], int] = {}  # (winner, loser) -> battles
    ties: dict[Pair, int] = {}
    self_battles = 0
    for battle in battles:
        if battle.outcome not in COMPARISON_OUTCOMES:
            raise ValueError(f"Unknown outcome {battle.outcome!r}; expected one of {', '.join(COMPARISON_OUTCOMES)}.")
        sides = (battle.model_a, battle.model_b)
        if sides[0] == sides[1]:
            self_battles += 1
        elif battle.outcome in WINNER:
            winner = WINNER[battle.outcome]
            key = (sides[winner], sides[1 - winner])
            wins[key] = wins.get(key, 0) + 1
        else:
            key = pair_key(*sides)
            ties[key] = ties.get(key, 0) + 1
    models = sorted({model for pair in [*wins, *ties] for model in pair})
    index = {model: i for i, model in enumerate(models)}
    won = np.zeros((len(models), len(models)), dtype=np.int64)  # (M, M)
    tied = np.zeros_like(won)  # (M, M)
    for (winner, loser), count in wins.items():
        won[index[winner], index[loser]] = count
    for (a, b), count in ties.items():
        tied[index[a], index[b]] = tied[index[b], index[a]] = count
    return models, won, tied, self_battles


def _fit(score: np.ndarray) -> np.ndarray:
    """Penalised maximum-likelihood Bradley-Terry strengths β (B, M) of B independent problems, each summing to 0.

    ``score`` (B, M, M) holds the row model's wins over the column model, ties half. Each problem minimises
    ``_objective``, which is convex, strictly so with λ > 0, by Newton's method with backtracking, all B at once:
    with a handful of models the (M, M) Hessians are cheap, and a model with a perfect record (a nearly flat
    direction) takes no more steps than any other.
    """
    battles = score + score.transpose(0, 2, 1)  # (B, M, M) battles per pair
    eye = np.eye(score.shape[1])  # (M, M)
    beta = np.zeros(score.shape[:2])  # (B, M)
    for _ in range(MAX_NEWTON_STEPS):
        won = expit(beta[:, :, None] - beta[:, None, :])  # (B, M, M) P(row model beats column model)
        grad = np.sum(battles * won - score, axis=2) + L2_PENALTY * beta  # (B, M)
        weight = battles * won * (1 - won)  # (B, M, M)
        hess = (weight.sum(2)[:, :, None] + L2_PENALTY) * eye - weight  # (B, M, M) weighted Laplacian + λI
        step = np.linalg.solve(hess, grad[..., None])[..., 0]  # (B, M)
        decrement = np.sum(grad * step, axis=1)  # (B,) twice the decrease the quadratic model predicts
        if decrement.max() < NEWTON_TOLERANCE:
            return beta - beta.mean(1, keepdims=True)  # removes what is left of a common shift (curvature λ only)
        # Halve each step until it gives a quarter of the predicted decrease (Armijo), where float64 can resolve
        # that decrease; closer in, full steps converge quadratically.
        objective = _objective(score, beta)  # (B,)
        resolvable = decrement > 1e-10 * np.abs(objective)  # (B,)
        size = np.ones(len(beta))  # (B,) step length
        while True:
            short = resolvable & (_objective(score, beta - size[:, None] * step) > objective - size * decrement / 4)
            if not short.any():
                break
            size[short] /= 2
        beta = beta - size[:, None] * step
    raise RuntimeError(f"The Bradley-Terry fit did not converge in {MAX_NEWTON_STEPS} Newton steps.")


def _objective(score: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """-Σ_ij score_ij log σ(β_i - β_j) + λ/2 Σ_i β_i², for each of B problems: score (B, M, M), β (B, M) -> (B,)."""
    diff = beta[:, :, None] - beta[:, None, :]  # (B, M, M)
    return np.sum(score * np.logaddexp(0.0, -diff), axis=(1, 2)) + L2_PENALTY / 2 * np.sum(beta * beta, axis=1)


def main(argv: list[str] | None = None) -> int:
    """``make leaderboard``: the arena's ratings, win rates and battle counts from the feedback database."""
    parser = argparse.ArgumentParser(
        prog="python -m feedback.leaderboard",
        description="Bradley-Terry ratings (Elo scale, 95%% bootstrap intervals) of the model versions from the "
        "arena's judged battles, with the win-rate matrix.",
    )
    add_store_arguments(parser)
    parser.add_argument("--since", type=timestamp, help="only battles shown from this time on (ISO; naive = UTC)")
    parser.add_argument("--until", type=timestamp, help="only battles shown before this time (ISO; naive = UTC)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for the intervals (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    if args.bootstrap < 0:
        parser.error("--bootstrap must be 0 or more")
    with open_store(parser, args) as store:
        battles = store.arena_battles(since=args.since, until=args.until)
    board = leaderboard(battles, n_bootstrap=args.bootstrap, seed=args.seed)
    if args.json:
        json.dump({"battles": len(battles), **board.to_json()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if board.ratings.empty:
        print(f"No battle between two versions yet ({len(battles)} judged battles).")
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(f"{len(battles)} judged battles\n")
        print(board.ratings.round({"rating": 0, "lower": 0, "upper": 0}).to_string(index=False))
        print("\nwin rate of the row against the column (ties count half):")
        print(board.win_rate.round(2).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
