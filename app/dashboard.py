"""The dashboard's numbers, read from the feedback store and shaped for the ``/dashboard`` API and the tab.

The API and the tab show the same data; building both here keeps one definition of a day, a
model label and the agreement summary, and leaves the event functions a one-line call. Each
rater's agreement and flag are for the host only (``admin``): the public sees totals and α.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd

from app.messages import DEFAULT_LANGUAGE, PLOT_LABELS, headed, plural, say_in
from feedback.agreement import AgreementReport, Alpha, agreement
from feedback.campaigns import RATER_COLUMNS, CampaignReport, campaign_report
from feedback.images import model_version
from feedback.store import DashboardData, FeedbackStore

DASHBOARD_BOOTSTRAP = 200  # resamples for α's interval: enough for two decimals, fast on every refresh

# per day (long: day, vote, count), per model, per category, totals line, agreement line, rater table,
# campaigns summary, campaign rater table
DashboardView = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str, str, pd.DataFrame, str, pd.DataFrame]


class DashboardService:
    """Reads the store on every call, so a refresh always shows the latest feedback."""

    def __init__(self, store: FeedbackStore, n_boot: int = DASHBOARD_BOOTSTRAP) -> None:
        self.store = store
        self.n_boot = n_boot

    def json(self, admin: bool = False) -> dict[str, Any]:
        """Totals, votes per day, like-rate per model version and per category, and rater agreement, as JSON;
        the per-rater rows only for ``admin``."""
        data, report = self._read()
        agreement, campaigns = report.to_dict(), [campaign.to_dict() for campaign in self._campaigns()]
        if not admin:
            agreement["raters"] = []
            agreement["flagged"] = int(report.raters["flagged"].sum())
            for campaign in campaigns:
                campaign["raters"] = []
        return {
            "totals": data.totals,
            "votes_per_day": data.votes_per_day.to_dict("records"),
            "by_model": data.by_model.to_dict("records"),
            "by_category": data.by_category.to_dict("records"),
            "agreement": agreement,
            "campaigns": campaigns,
        }

    def view(self, lang: str = DEFAULT_LANGUAGE, admin: bool = False) -> DashboardView:
        """Frames for the dashboard plots, a line of totals, and the agreement summary and rater table."""
        data, report = self._read()
        per_day = data.votes_per_day.melt(
            id_vars="day", value_vars=["likes", "dislikes"], var_name="vote", value_name="count"
        )
        per_day["vote"] = per_day["vote"].map(PLOT_LABELS[lang])  # the legend's words, in the page's language
        # Each bar says how many votes it rests on: one 👍 is a like-rate of 100%.
        by_model = data.by_model.assign(model=version_labels(data.by_model) + votes(data.by_model, lang))
        by_category = data.by_category.assign(category=data.by_category["category"] + votes(data.by_category, lang))
        counts = {
            "votes": data.totals["n_votes"],
            "comparisons": data.totals["n_comparisons"],
            "images": data.totals["n_images"],
            "raters": data.totals["n_raters"],
        }
        totals = say_in(lang, "totals", **counts, **{f"{key}_s": plural(n) for key, n in counts.items()})
        campaigns = self._campaigns()
        raters = [c.raters.assign(campaign=c.campaign.name) for c in campaigns]
        # Without the admin key the tables keep their headers and show no rows (an empty frame would show 1 2 3).
        columns = ["campaign", *RATER_COLUMNS]
        campaign_raters = pd.concat(raters)[columns].round(3) if raters else pd.DataFrame(columns=columns)
        summary = "\n".join(f"- {campaign_summary(c, lang)}" for c in campaigns)
        return (
            per_day,
            by_model,
            by_category,
            totals,
            agreement_summary(report, lang),
            headed(report.raters.round(3) if admin else report.raters.iloc[:0], lang),
            summary,
            headed(campaign_raters if admin else campaign_raters.iloc[:0], lang),
        )

    def _campaigns(self) -> list[CampaignReport]:
        """The reports of the open campaigns."""
        return [campaign_report(self.store, c.name, self.n_boot) for c in self.store.campaigns()]

    def _read(self) -> tuple[DashboardData, AgreementReport]:
        """The store's tables with each day as ``YYYY-MM-DD`` (JSON and plot axes alike), and rater agreement."""
        data = self.store.dashboard()
        days = data.votes_per_day.assign(day=data.votes_per_day["day"].dt.strftime("%Y-%m-%d"))
        rows = self.store.preference_rows(with_images=False, with_events=False)
        report = agreement(rows, n_boot=self.n_boot)
        # The account each rater signed in with (--sign-in), beside their id, for the admin who must follow up.
        accounts = self.store.rater_accounts([int(i) for i in report.raters["rater_id"]])
        raters = report.raters.copy()
        raters.insert(1, "account", [accounts.get(int(i)) for i in raters["rater_id"]])
        return dataclasses.replace(data, votes_per_day=days), dataclasses.replace(report, raters=raters)


def version_labels(by_model: pd.DataFrame) -> pd.Series:
    """The version label (``name@hash``) of each row of a frame with model_name and model_hash."""
    labels = map(model_version, by_model["model_name"], by_model["model_hash"])
    return pd.Series(list(labels), index=by_model.index, dtype=object)


def votes(frame: pd.DataFrame, lang: str) -> pd.Series:
    """`` · n votes`` (in ``lang``) for each row of a frame with likes and dislikes, to put under its bar."""
    n = frame["likes"] + frame["dislikes"]
    label = PLOT_LABELS[lang]["bar_votes"]
    return pd.Series([" · " + label.format(n=k, s=plural(k)) for k in n], index=frame.index, dtype=object)


def campaign_summary(report: CampaignReport, lang: str = DEFAULT_LANGUAGE) -> str:
    """One markdown line in ``lang``: a campaign's progress, its answers' α and how many raters its checks flag."""
    c, alpha = report.campaign, report.alpha
    agreement = (
        say_in(lang, "campaign_alpha", alpha=alpha.alpha, low=alpha.low, high=alpha.high)
        if not math.isnan(alpha.alpha)
        else say_in(lang, "campaign_no_alpha")
    )
    flagged = int(report.raters["flagged"].sum()) if len(report.raters) else 0
    per_item = report.items["answers"]
    return say_in(
        lang,
        "campaign_line",
        name=c.name,
        kind=c.kind,
        complete=c.items_complete,
        items=c.n_items - c.n_gold,
        wanted=c.answers_wanted,
        low=per_item.min(),
        high=per_item.max(),
        median=per_item.median(),
        agreement=agreement,
        flagged=flagged,
        flagged_s=plural(flagged),
    )


def agreement_summary(report: AgreementReport, lang: str = DEFAULT_LANGUAGE) -> str:
    """One markdown line in ``lang``: α for votes and for comparisons, and how many raters are flagged."""

    def line(name: str, alpha: Alpha, word: str) -> str:
        items = say_in(lang, word, s=plural(alpha.items))
        if not alpha.items:
            return say_in(lang, "agreement_none", name=name, items=say_in(lang, word, s="s"))
        if math.isnan(alpha.alpha):
            return say_in(lang, "agreement_same", name=name, n=alpha.items, items=items)
        values = {"alpha": alpha.alpha, "low": alpha.low, "high": alpha.high, "raters": alpha.raters}
        return say_in(lang, "agreement_alpha", name=name, n=alpha.items, items=items, **values)

    flagged = int(report.raters["flagged"].sum())
    return " · ".join(
        [
            line(say_in(lang, "votes_name"), report.votes, "images_word"),
            line(say_in(lang, "comparisons_name"), report.comparisons, "pairs_word"),
            say_in(lang, "agreement_flagged", flagged=flagged, flagged_s=plural(flagged)),
        ]
    )
