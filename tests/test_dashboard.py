"""The dashboard: the public sees totals and α; each rater's agreement and flag are the admin's to see."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.dashboard import DashboardService
from app.handlers import dashboard_plots
from app.messages import COLUMN_LABELS, PLOT_LABELS, VOTE_COLOURS
from feedback.store import FeedbackStore
from tests.test_store import provenance, solid


@pytest.fixture
def service(tmp_path: Path) -> Iterator[DashboardService]:
    """Three raters who disagree on the same four images (a rater table with rows)."""
    with FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "images") as store:
        maker = store.rater("maker")
        image_ids = store.record_generation(maker, provenance(), [solid(c) for c in ("red", "green", "blue", "tan")])
        for name, values in {"ann": (1, 1, -1, -1), "bob": (1, -1, 1, -1), "cy": (-1, -1, 1, 1)}.items():
            rater = store.rater(name, account="hf:ann" if name == "ann" else None)
            for image_id, value in zip(image_ids.image_ids, values):
                store.vote(rater, image_id, value)
        yield DashboardService(store, n_boot=0)


def test_the_public_json_has_no_rater_rows(service: DashboardService) -> None:
    public, admin = service.json(), service.json(admin=True)
    assert public["agreement"]["raters"] == [] and public["agreement"]["flagged"] == sum(
        row["flagged"] for row in admin["agreement"]["raters"]
    )
    assert len(admin["agreement"]["raters"]) == 3 and "flagged" not in admin["agreement"]
    assert public["totals"] == admin["totals"] and public["agreement"]["votes"] == admin["agreement"]["votes"]
    assert sorted(str(row["account"]) for row in admin["agreement"]["raters"]) == ["None", "None", "hf:ann"]


def test_the_public_tab_shows_the_tables_headers_without_rows(service: DashboardService) -> None:
    public, admin = service.view(), service.view(admin=True)
    raters, campaign_raters = public[5], public[7]
    assert len(raters) == 0 and list(raters.columns) == list(admin[5].columns) and len(admin[5]) == 3
    assert list(admin[5].columns[:2]) == ["rater", "account"] and "hf:ann" in set(admin[5]["account"])
    assert len(campaign_raters) == 0 and "gold accuracy" in campaign_raters.columns
    assert public[4] == admin[4]  # the agreement line (α, how many flagged) is public


def test_the_tables_headers_speak_the_pages_language(service: DashboardService) -> None:
    """Every column of both rater tables has a label in each language the page speaks; the JSON keeps the data's."""
    for lang, labels in COLUMN_LABELS.items():
        view = service.view(lang, admin=True)
        for table in (view[5], view[7]):
            assert set(table.columns) <= set(labels.values()), set(table.columns) - set(labels.values())
    chinese = service.view("zh", admin=True)
    assert list(chinese[5].columns[:2]) == ["评价者", "账号"] and "金标准准确率" in chinese[7].columns
    assert "rater_id" in service.json(admin=True)["agreement"]["raters"][0]


def test_the_plots_titles_and_legend_speak_the_pages_language(service: DashboardService) -> None:
    """Gradio sets a plot's titles once, when the page is built; each refresh sets them for the reader's language."""
    for lang, words in PLOT_LABELS.items():
        view = service.view(lang, admin=True)
        per_day, by_model, by_category, *rest = dashboard_plots(view, lang)
        assert (per_day.x_title, per_day.y_title, per_day.color_title) == (words["day"], words["votes"], words["vote"])
        assert per_day.color_map == {
            words["likes"]: VOTE_COLOURS["likes"],
            words["dislikes"]: VOTE_COLOURS["dislikes"],
        }
        assert set(view[0]["vote"]) == {words["likes"], words["dislikes"]}  # the legend's entries have the colours
        assert (by_model.x_title, by_model.y_title) == (words["model"], words["like_rate"])
        assert (by_category.x_title, by_category.y_title) == (words["category"], words["like_rate"])
        assert rest[0] == view[3] and rest[1] == view[4] and rest[2].equals(view[5])  # totals, α, the rater table
    assert set(service.view("zh")[0]["vote"]) == {"赞", "踩"}
    # each bar's label says how many votes it rests on, in the page's language: three raters on four images
    assert list(service.view("zh")[1]["model"].str.split(" · ").str[1]) == ["12 票"]
    assert list(service.view("en")[2]["category"].str.split(" · ").str[1]) == ["12 votes"]


def test_the_agreement_line_speaks_the_pages_language(service: DashboardService) -> None:
    """The α line under the plots: English with its plurals, Chinese on the Chinese page."""
    english, chinese = service.view("en")[4], service.view("zh")[4]
    assert "on 4 images judged by 3 raters" in english and "1 images" not in english
    assert "no pairs judged by two raters yet" in english and "flagged for review" in english
    assert "基于 3 位评价者评判的 4 个图像" in chinese and "被标记待审" in chinese and "raters" not in chinese
