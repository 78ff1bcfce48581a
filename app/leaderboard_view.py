"""The Leaderboard tab's view: ratings with their intervals as a plot and a table, win rates, and the versions.

A rating means little without its interval and the battles behind it, so the plot draws each 95% interval and
the table gives the counts; the like-rate from 👍/👎 sits beside the arena's rating as a second opinion.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from app.arena import ArenaService
from app.messages import plural, say_in
from app.versions import ModelVersion

LeaderboardView = tuple[str, Figure | None, pd.DataFrame, pd.DataFrame, pd.DataFrame]


def leaderboard_view(arena: ArenaService, lang: str) -> LeaderboardView:
    """Summary line, ratings plot, ratings table, win-rate matrix and versions table."""
    board = arena.leaderboard()
    ratings = board.ratings.merge(arena.like_rates()[["model", "like_rate"]], on="model", how="left")
    n_battles = int(board.ratings["battles"].sum()) // 2  # each battle counts for both of its versions
    versions = arena.versions.describe()
    summary = say_in(
        lang,
        "leaderboard_summary",
        battles=n_battles,
        battles_s=plural(n_battles),
        models=len(versions),
        models_s=plural(len(versions)),
    )
    table, win_rates = ratings_table(ratings), win_rate_table(board.win_rate)
    return summary, ratings_figure(ratings), table, win_rates, versions_table(versions)


def ratings_table(ratings: pd.DataFrame) -> pd.DataFrame:
    """One row per version, best first: rating and interval rounded to points, counts, like-rate in percent."""
    if ratings.empty:
        return pd.DataFrame(columns=["rank", "model", "rating", "95% interval", "battles", "W / T / L", "like-rate"])
    return pd.DataFrame(
        {
            "rank": ratings["rank"],
            "model": ratings["model"],
            "rating": ratings["rating"].round().astype(int),
            "95% interval": [f"{lo:.0f} – {hi:.0f}" for lo, hi in zip(ratings["lower"], ratings["upper"])],
            "battles": ratings["battles"],
            "W / T / L": [
                f"{w} / {t} / {n}" for w, t, n in zip(ratings["wins"], ratings["ties"], ratings["losses"], strict=True)
            ],
            "like-rate": [("" if pd.isna(r) else f"{100 * r:.0f}%") for r in ratings["like_rate"]],
        }
    )


def win_rate_table(win_rate: pd.DataFrame) -> pd.DataFrame:
    """The matrix with its row labels as a column (Gradio's table shows no index), in percent."""
    if win_rate.empty:
        return pd.DataFrame(columns=["model"])
    shown = (100 * win_rate).round(0).astype("Int64").astype(str).replace("<NA>", "–")
    return shown.rename_axis("model").reset_index()


def versions_table(versions: list[ModelVersion]) -> pd.DataFrame:
    """Each version with what it was tuned from and on: base version, export hash, loss and steps."""
    by_hash = {v.weights_hash: v.label for v in versions}
    rows = []
    for v in versions:
        base = v.lineage.get("base", {})
        export = v.lineage.get("export", {})
        tuning = v.lineage.get("tuning", {})
        how = tuning.get("loss") or tuning.get("method")  # DPO/KTO, or the distillation's method
        rows.append(
            {
                "model": v.label,
                "tuned from": by_hash.get(base.get("weights_hash") or "", base.get("folder") or ""),
                "export sha256": (export.get("sha256") or "")[:12],
                "tuning": f"{how} · {tuning.get('steps', '?')} steps" if how else "",
                "folder": str(v.path),
            }
        )
    return pd.DataFrame(rows, columns=["model", "tuned from", "export sha256", "tuning", "folder"])


def ratings_figure(ratings: pd.DataFrame) -> Figure | None:
    """Each version's rating as a dot with its 95% interval, best at the top; None before the first battle."""
    if ratings.empty:
        return None
    figure = Figure(figsize=(7, 0.6 * len(ratings) + 1.2), layout="constrained")
    axes = figure.subplots()
    ordered = ratings.iloc[::-1]  # best on top
    y = range(len(ordered))
    axes.errorbar(
        ordered["rating"],
        list(y),
        xerr=[ordered["rating"] - ordered["lower"], ordered["upper"] - ordered["rating"]],
        fmt="o",
        color="#4f46e5",
        ecolor="#a5b4fc",
        elinewidth=3,
        capsize=4,
    )
    axes.set_yticks(list(y), [f"{m} ({n})" for m, n in zip(ordered["model"], ordered["battles"])])
    axes.set_xlabel("rating (Elo scale) and its 95% interval · battles in brackets")
    axes.grid(axis="x", alpha=0.3)
    return figure
