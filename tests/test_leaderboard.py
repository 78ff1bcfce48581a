"""Arena leaderboard: Bradley-Terry recovery and intervals, the sklearn formulation, ties, tables, pair picking."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from feedback.leaderboard import (
    ELO_SCALE,
    L2_PENALTY,
    RATING_COLUMNS,
    Leaderboard,
    leaderboard,
    least_compared_pair,
    pair_key,
)

TRUE_STRENGTHS = {"a": -0.8, "b": -0.2, "c": 0.3, "d": 0.7}  # β, summing to zero
TRUE_RATINGS = pd.Series({model: 1000 + ELO_SCALE * beta for model, beta in TRUE_STRENGTHS.items()})


@dataclass(frozen=True)
class Battle:
    model_a: str
    model_b: str
    outcome: str


def simulate(strengths: dict[str, float], n: int, seed: int, tie_rate: float = 0.0) -> list[Battle]:
    """``n`` battles between random distinct pairs on random sides; a side wins with Bradley-Terry odds."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    beta = np.array(list(strengths.values()))
    left = rng.integers(len(names), size=n)  # (n,)
    sides = np.stack([left, (left + rng.integers(1, len(names), size=n)) % len(names)], axis=1)  # (n, 2)
    left_wins = rng.random(n) < 1 / (1 + np.exp(beta[sides[:, 1]] - beta[sides[:, 0]]))  # (n,)
    tied = rng.random(n) < tie_rate  # (n,)
    outcomes = np.where(tied, rng.choice(["tie", "both_bad"], n), np.where(left_wins, "left", "right"))
    return [Battle(names[i], names[j], str(outcome)) for (i, j), outcome in zip(sides, outcomes)]


def battles_of(*rows: tuple[str, str, str]) -> list[Battle]:
    return [Battle(*row) for row in rows]


def by_model(board: Leaderboard) -> pd.DataFrame:
    return board.ratings.set_index("model")


def test_simulated_battles_recover_the_true_order_and_ratings() -> None:
    board = leaderboard(simulate(TRUE_STRENGTHS, 4000, seed=1), n_bootstrap=300, seed=0)
    ratings = by_model(board)

    assert board.ratings["model"].tolist() == ["d", "c", "b", "a"]
    assert board.ratings["rank"].tolist() == [1, 2, 3, 4]
    assert board.ratings["rating"].mean() == pytest.approx(1000)
    assert (
        ratings["rating"] - TRUE_RATINGS[ratings.index]
    ).abs().max() < 30  # about 3.5 standard errors with ~2000 battles a model
    assert ((ratings["lower"] < ratings["rating"]) & (ratings["rating"] < ratings["upper"])).all()
    assert ((ratings["upper"] - ratings["lower"]).between(10, 80)).all()
    assert list(board.ratings.columns) == RATING_COLUMNS


def test_the_intervals_cover_the_true_ratings_about_95_percent_of_the_time() -> None:
    covered = []
    for seed in range(60):
        ratings = by_model(leaderboard(simulate(TRUE_STRENGTHS, 300, seed=100 + seed), n_bootstrap=200, seed=seed))
        truth = TRUE_RATINGS[ratings.index]
        covered += ((ratings["lower"] <= truth) & (truth <= ratings["upper"])).tolist()
    assert 0.88 <= np.mean(covered) <= 0.98  # 240 intervals; percentile intervals cover about 93% here


def test_fit_matches_the_chatbot_arena_logistic_regression() -> None:
    """Chatbot Arena's formulation: a row per battle with +1 for model_a and -1 for model_b, ties as half a win."""
    battles = simulate(TRUE_STRENGTHS, 300, seed=2, tie_rate=0.3)
    battles += battles_of(*[("c", "d", "left")] * 5)  # lopsided pair
    names = sorted(TRUE_STRENGTHS)
    x, y, weight = [], [], []
    for battle in battles:
        row = np.zeros(len(names))
        row[names.index(battle.model_a)], row[names.index(battle.model_b)] = 1, -1
        share = {"left": 1.0, "right": 0.0}.get(battle.outcome, 0.5)  # model_a's share of the win
        x += [row, row]
        y += [1, 0]
        weight += [share, 1 - share]
    # sklearn minimises C · Σ weight · log-loss + ½‖w‖², our objective times C when C = 1 / λ.
    model = LogisticRegression(fit_intercept=False, C=1 / L2_PENALTY, tol=1e-12, max_iter=10_000)
    model.fit(np.array(x), np.array(y), sample_weight=np.array(weight))
    coef = model.coef_[0] - model.coef_[0].mean()

    ratings = by_model(leaderboard(battles, n_bootstrap=0))
    expected = pd.Series(1000 + ELO_SCALE * coef, index=names)
    assert np.allclose(ratings.loc[names, "rating"], expected, atol=1e-3)


def test_a_tie_is_half_a_win_to_each_side() -> None:
    with_ties = leaderboard(battles_of(("a", "b", "left"), ("a", "b", "tie"), ("b", "a", "tie")), n_bootstrap=0)
    as_wins = leaderboard(battles_of(("a", "b", "left"), ("a", "b", "left"), ("b", "a", "left")), n_bootstrap=0)
    pd.testing.assert_frame_equal(with_ties.ratings[["model", "rating"]], as_wins.ratings[["model", "rating"]])
    assert with_ties.win_rate.loc["a", "b"] == pytest.approx(2 / 3)

    only_ties = leaderboard(battles_of(("a", "b", "tie"), ("b", "a", "both_bad")), n_bootstrap=0)
    assert only_ties.ratings["rating"].tolist() == pytest.approx([1000, 1000])


def test_both_bad_counts_exactly_as_a_tie() -> None:
    battles = simulate(TRUE_STRENGTHS, 400, seed=3, tie_rate=0.4)
    as_tie = [replace(b, outcome="tie") if b.outcome == "both_bad" else b for b in battles]
    as_both_bad = [replace(b, outcome="both_bad") if b.outcome == "tie" else b for b in battles]
    first, second = leaderboard(as_tie, n_bootstrap=50), leaderboard(as_both_bad, n_bootstrap=50)
    pd.testing.assert_frame_equal(first.ratings, second.ratings)
    pd.testing.assert_frame_equal(first.win_rate, second.win_rate)


def test_a_model_that_wins_or_loses_everything_gets_a_finite_extreme_rating() -> None:
    battles = simulate({"a": 0.0, "b": 0.3, "c": -0.3}, 200, seed=4)
    battles += battles_of(*[("champ", opponent, "left") for opponent in "abc"] * 2)
    battles += battles_of(*[(opponent, "chump", "left") for opponent in "abc"] * 2)
    board = leaderboard(battles, n_bootstrap=100)
    numbers = board.ratings[["rating", "lower", "upper"]].to_numpy()
    assert np.isfinite(numbers).all()
    assert board.ratings["model"].iloc[0] == "champ"
    assert board.ratings["model"].iloc[-1] == "chump"
    assert (by_model(board).loc["champ", ["wins", "ties", "losses"]] == [6, 0, 0]).all()


def test_tables_match_hand_counts() -> None:
    board = leaderboard(
        battles_of(
            ("x", "y", "left"),
            ("y", "x", "left"),
            ("x", "y", "tie"),
            ("x", "y", "left"),
            ("y", "z", "right"),
            ("z", "y", "both_bad"),
            ("x", "x", "left"),  # a model against itself: left out
        ),
        n_bootstrap=20,
    )
    assert board.win_rate.loc["x", "y"] == 0.625  # 2 wins and 1 tie of 4
    assert board.win_rate.loc["y", "x"] == 0.375
    assert board.win_rate.loc["z", "y"] == 0.75  # 1 win and 1 tie of 2
    assert board.win_rate.loc["y", "z"] == 0.25
    assert math.isnan(board.win_rate.loc["x", "z"]) and math.isnan(board.win_rate.loc["x", "x"])
    assert board.pair_battles.loc[["x", "y", "z"], ["x", "y", "z"]].to_numpy().tolist() == [
        [0, 4, 0],
        [4, 0, 2],
        [0, 2, 0],
    ]
    tallies = by_model(board).loc[["x", "y", "z"], ["battles", "wins", "ties", "losses"]]
    assert tallies.to_numpy().tolist() == [[4, 2, 1, 1], [6, 1, 2, 3], [2, 1, 1, 0]]
    assert board.self_battles == 1
    assert list(board.win_rate.index) == list(board.win_rate.columns) == board.ratings["model"].tolist()

    payload = json.loads(json.dumps(board.to_json(), allow_nan=False))
    assert payload["win_rate"]["x"]["z"] is None
    assert payload["win_rate"]["x"]["y"] == 0.625
    assert payload["pair_battles"]["y"]["z"] == 2
    assert [row["model"] for row in payload["ratings"]] == board.ratings["model"].tolist()


@pytest.mark.parametrize("battles", [[], battles_of(("solo", "solo", "left"), ("solo", "solo", "tie"))])
def test_no_battle_between_two_models_gives_empty_frames(battles: list[Battle]) -> None:
    board = leaderboard(battles)
    assert board.ratings.empty and list(board.ratings.columns) == RATING_COLUMNS
    assert board.win_rate.empty and board.pair_battles.empty
    assert json.loads(json.dumps(board.to_json(), allow_nan=False)) == {
        "ratings": [],
        "win_rate": {},
        "pair_battles": {},
        "self_battles": len(battles),
    }


def test_the_seed_fixes_the_intervals() -> None:
    battles = simulate(TRUE_STRENGTHS, 500, seed=5, tie_rate=0.2)
    first, again, other = (leaderboard(battles, n_bootstrap=100, seed=seed) for seed in (7, 7, 8))
    pd.testing.assert_frame_equal(first.ratings, again.ratings)
    assert not np.allclose(first.ratings["lower"], other.ratings["lower"])
    assert leaderboard(battles, n_bootstrap=0).ratings[["lower", "upper"]].isna().all().all()


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown outcome 'draw'"):
        leaderboard(battles_of(("a", "b", "draw")))
    with pytest.raises(ValueError, match="n_bootstrap"):
        leaderboard(battles_of(("a", "b", "left")), n_bootstrap=-1)


def test_least_compared_pair_picks_among_the_fewest_compared_in_both_orders() -> None:
    counts = {("a", "b"): 3, ("a", "c"): 1, ("a", "d"): 2, ("b", "c"): 5, ("b", "d"): 1, ("c", "d"): 4}
    rng = random.Random(0)
    picks = [least_compared_pair(["d", "c", "b", "a"], counts, rng) for _ in range(200)]
    assert {pair_key(*pick) for pick in picks} == {("a", "c"), ("b", "d")}
    assert {("a", "c"), ("c", "a"), ("b", "d"), ("d", "b")} == set(picks)

    del counts[("c", "d")]  # never compared: the only pair with zero battles
    assert {pair_key(*least_compared_pair("abcd", counts, rng)) for _ in range(20)} == {("c", "d")}
    assert pair_key("b", "a") == ("a", "b")


@pytest.mark.parametrize("models", [[], ["a"], ["a", "a"]])
def test_least_compared_pair_needs_two_distinct_models(models: list[str]) -> None:
    with pytest.raises(ValueError, match="at least two distinct models"):
        least_compared_pair(models, {}, random.Random(0))
