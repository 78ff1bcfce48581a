"""The dashboard's numbers, read from the feedback store and shaped for the ``/dashboard`` API and the tab.

The API and the tab show the same data; building both here keeps one definition of a day, a
model label and the agreement summary, and leaves the event functions a one-line call.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd

from feedback.agreement import AgreementReport, Alpha, agreement
from feedback.store import DashboardData, FeedbackStore

TOTALS = {"n_votes": "vote", "n_comparisons": "comparison", "n_images": "image", "n_raters": "rater"}
DASHBOARD_BOOTSTRAP = 200  # resamples for α's interval: enough for two decimals, fast on every refresh

# per day (long: day, vote, count), per model, per category, totals line, agreement line, rater table
DashboardView = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str, str, pd.DataFrame]


class DashboardService:
    """Reads the store on every call, so a refresh always shows the latest feedback."""

    def __init__(self, store: FeedbackStore, n_boot: int = DASHBOARD_BOOTSTRAP) -> None:
        self.store = store
        self.n_boot = n_boot

    def json(self) -> dict[str, Any]:
        """Totals, votes per day, like-rate per model version and per category, and rater agreement, as JSON."""
        data, report = self._read()
        return {
            "totals": data.totals,
            "votes_per_day": data.votes_per_day.to_dict("records"),
            "by_model": data.by_model.to_dict("records"),
            "by_category": data.by_category.to_dict("records"),
            "agreement": report.to_dict(),
        }

    def view(self) -> DashboardView:
        """Frames for the dashboard plots, a line of totals, and the agreement summary and rater table."""
        data, report = self._read()
        per_day = data.votes_per_day.melt(
            id_vars="day", value_vars=["likes", "dislikes"], var_name="vote", value_name="count"
        )
        by_model = data.by_model.assign(model=data.by_model["model_name"] + "@" + data.by_model["model_hash"].str[:12])
        totals = " · ".join(
            f"**{data.totals[key]}** {noun}{'' if data.totals[key] == 1 else 's'}" for key, noun in TOTALS.items()
        )
        return per_day, by_model, data.by_category, totals, agreement_summary(report), report.raters.round(3)

    def _read(self) -> tuple[DashboardData, AgreementReport]:
        """The store's tables with each day as ``YYYY-MM-DD`` (JSON and plot axes alike), and rater agreement."""
        data = self.store.dashboard()
        days = data.votes_per_day.assign(day=data.votes_per_day["day"].dt.strftime("%Y-%m-%d"))
        rows = self.store.preference_rows(with_images=False, with_events=False)
        return dataclasses.replace(data, votes_per_day=days), agreement(rows, n_boot=self.n_boot)


def agreement_summary(report: AgreementReport) -> str:
    """One markdown line: α for votes and for comparisons, and how many raters are flagged."""

    def line(name: str, alpha: Alpha, items: str) -> str:
        if not alpha.items:
            return f"**{name}**: no {items} judged by two raters yet"
        if math.isnan(alpha.alpha):
            return f"**{name}**: every rater gave the same answer on {alpha.items} {items}; α is undefined"
        return (
            f"**{name}**: α = {alpha.alpha:.2f} (95% interval {alpha.low:.2f} to {alpha.high:.2f}) "
            f"on {alpha.items} {items} judged by {alpha.raters} raters"
        )

    flagged = int(report.raters["flagged"].sum())
    return " · ".join(
        [
            line("Votes", report.votes, "images"),
            line("Comparisons", report.comparisons, "pairs"),
            f"**{flagged}** rater{'' if flagged == 1 else 's'} flagged for review",
        ]
    )
