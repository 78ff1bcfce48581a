"""Rating campaigns: creation checks, the sampler (fewest answers first, gold at its rate), answers as feedback,
the report's agreement and rater flags, the CLI and the export that leaves flagged raters out.

The store tests run on SQLite and on a throwaway Postgres database, like tests/test_store.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from feedback.campaigns import (
    GOLD_MIN_ACCURACY,
    RATER_COLUMNS,
    CampaignItemSpec,
    campaign_report,
    main,
)
from feedback.export import ExportFilters, export
from feedback.export import main as export_main
from feedback.models import MAX_ANSWERS_WANTED
from feedback.store import CampaignItemRow, FeedbackError, FeedbackStore
from tests.test_store import provenance, solid


def new_images(store: FeedbackStore, n: int, prompt: str = "a red apple") -> list[str]:
    """``n`` stored images of one generation (tiny, all one colour: campaigns only need their ids)."""
    admin = store.rater("admin")
    return store.record_generation(
        admin, provenance(prompt=prompt, width=4, height=4), [solid("red", 4)] * n
    ).image_ids


def vote_campaign(
    store: FeedbackStore,
    name: str = "apples",
    *,
    n: int = 4,
    gold: tuple[str, ...] = (),
    k: int = 2,
    gold_rate: float = 0.0,
) -> tuple[int, list[str], list[str]]:
    """A vote campaign of ``n`` normal items and one gold item per answer in ``gold``; its id and image ids."""
    normal, checks = new_images(store, n), new_images(store, len(gold)) if gold else []
    items = [CampaignItemSpec(image_id=i) for i in normal]
    items += [CampaignItemSpec(image_id=i, gold_answer=a) for i, a in zip(checks, gold, strict=True)]
    return (
        store.create_campaign(name, "vote", "# Guidelines\n👍 if it is an apple.", k, gold_rate, items),
        normal,
        checks,
    )


def answer_all(store: FeedbackStore, rater: int, item_ids: list[int], answers: list[str], seconds: float) -> None:
    for item_id, answer in zip(item_ids, answers, strict=True):
        store.answer_campaign_item(item_id, rater, answer, seconds)


def item_ids(store: FeedbackStore, campaign_id: int, gold: bool = False) -> list[int]:
    return [item.id for item in store.campaign_items(campaign_id) if item.is_gold == gold]


# -- creation ---------------------------------------------------------------------------------------


def test_create_and_list(store: FeedbackStore) -> None:
    campaign_id, normal, _ = vote_campaign(store, gold=("1", "-1"), k=3, gold_rate=0.1)
    left, right = new_images(store, 2)
    pair_id = store.create_campaign(
        "pairs", "pair", "", 1, 0, [CampaignItemSpec(left_image_id=left, right_image_id=right)]
    )
    infos = store.campaigns()
    assert [(c.id, c.name, c.kind) for c in infos] == [(campaign_id, "apples", "vote"), (pair_id, "pairs", "pair")]
    apples = store.campaign("apples")
    assert (apples.n_items, apples.n_gold, apples.n_answers, apples.items_complete) == (6, 2, 0, 0)
    assert (apples.answers_wanted, apples.gold_rate, apples.closed_at) == (3, 0.1, None)
    assert apples.guidelines.startswith("# Guidelines") and apples.created_at.tzinfo is not None
    assert [item.image_id for item in store.campaign_items(campaign_id) if not item.is_gold] == normal
    with pytest.raises(FeedbackError, match="no campaign named 'nope'"):
        store.campaign("nope")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "  "}, "campaign name must not be empty"),
        ({"name": "x" * 129}, "at most 128 characters"),
        ({"name": "apples"}, "named 'apples' exists already"),
        ({"kind": "rank"}, "kind must be one of vote, pair"),
        ({"answers_wanted": 0}, "answers_wanted must be a whole number from 1 to 50"),
        ({"answers_wanted": MAX_ANSWERS_WANTED + 1}, "answers_wanted"),
        ({"answers_wanted": 2.5}, "answers_wanted"),
        ({"answers_wanted": True}, "answers_wanted"),
        ({"gold_rate": 1.0}, "gold_rate must be at least 0 and below 1"),
        ({"gold_rate": -0.1}, "gold_rate"),
        ({"gold_rate": float("nan")}, "gold_rate"),
        ({"items": []}, "at least one item in items"),
        ({"items": "pair"}, "Item 1 of a vote campaign needs an image_id"),
        ({"kind": "pair"}, "Item 1 of a pair campaign needs a left_image_id and a right_image_id"),
        ({"items": "same pair", "kind": "pair"}, "Item 1 needs two different images"),
        ({"items": "bad gold"}, "Item 2's gold_answer must be one of 1, -1 or None, not 'left'"),
        ({"items": "bad pair gold", "kind": "pair"}, "Item 1's gold_answer must be one of left, tie, both_bad, right"),
        ({"items": "missing"}, "1 image\\(s\\) that do not exist, 'no-such-image' first"),
        ({"items": "repeat"}, "Item 2 shows the same image\\(s\\) as item 1"),
        ({"items": "only gold"}, "at least one item without a gold_answer"),
    ],
)
def test_create_refuses_bad_campaigns(store: FeedbackStore, change: dict[str, Any], message: str) -> None:
    vote_campaign(store)
    a, b = new_images(store, 2)
    shapes = {
        "pair": [CampaignItemSpec(left_image_id=a, right_image_id=b)],
        "same pair": [CampaignItemSpec(left_image_id=a, right_image_id=a)],
        "bad gold": [CampaignItemSpec(image_id=a), CampaignItemSpec(image_id=b, gold_answer="left")],
        "bad pair gold": [CampaignItemSpec(left_image_id=a, right_image_id=b, gold_answer="1")],
        "missing": [CampaignItemSpec(image_id=a), CampaignItemSpec(image_id="no-such-image")],
        "repeat": [CampaignItemSpec(image_id=a), CampaignItemSpec(image_id=a)],
        "only gold": [CampaignItemSpec(image_id=a, gold_answer="1")],
    }
    arguments = {
        "name": "new",
        "kind": "vote",
        "guidelines": "",
        "answers_wanted": 3,
        "gold_rate": 0.0,
        "items": [CampaignItemSpec(image_id=a), CampaignItemSpec(image_id=b)],
        **change,
    }
    if isinstance(arguments["items"], str):
        arguments["items"] = shapes[arguments["items"]]
    with pytest.raises(FeedbackError, match=message):
        store.create_campaign(**arguments)
    assert [c.name for c in store.campaigns(include_closed=True)] == ["apples"]  # nothing half-made


# -- the sampler ------------------------------------------------------------------------------------


def test_fewest_answers_first_and_never_twice(store: FeedbackStore) -> None:
    campaign_id, _, _ = vote_campaign(store, n=4, k=2)
    items = item_ids(store, campaign_id)
    a, b, c, d = (store.rater(name) for name in "abcd")
    rng = random.Random(0)

    def serve(rater: int) -> int | None:
        row = store.next_campaign_item(campaign_id, rater, rng)
        if row is None:
            return None
        store.answer_campaign_item(row.id, rater, "1", 2.0)
        return items.index(row.id)

    assert [serve(r) for r in (a, b, c, d)] == [0, 1, 2, 3]  # each goes to an item nobody answered yet
    assert serve(a) == 1  # all unanswered by a have one answer: the first by position
    assert serve(b) == 0
    assert store.campaign("apples").items_complete == 2
    assert serve(c) == 3  # 0 and 1 are complete: the incomplete item comes first
    assert serve(a) == 2  # the k-th answer completes the last item ...
    info = store.campaign("apples")
    assert (info.items_complete, info.n_answers) == (4, 8)
    assert serve(a) == 3  # ... and then complete items are served rather than nothing
    assert serve(a) is None  # a answered every item
    served: dict[int, list[int | None]] = {rater: [] for rater in (b, c, d)}
    for rater in served:
        while (index := serve(rater)) is not None:
            served[rater].append(index)
    answers = store.campaign_answers(campaign_id)
    assert len(answers) == 16 and len({(x.item_id, x.rater_id) for x in answers}) == 16  # nobody saw an item twice


def test_gold_is_served_at_its_rate_and_never_shown(store: FeedbackStore) -> None:
    campaign_id, _, _ = vote_campaign(store, n=10, gold=("1", "-1", "1", "-1", "1"), gold_rate=0.25)
    rater, rng = store.rater("r"), random.Random(1234)
    draws = [store.next_campaign_item(campaign_id, rater, rng) for _ in range(400)]
    gold = sum(row.is_gold for row in draws if row is not None)
    assert abs(gold - 100) < 4 * math.sqrt(400 * 0.25 * 0.75)  # binomial(400, 0.25): mean 100, sd 8.7
    assert len({row.id for row in draws if row is not None and row.is_gold}) == 5  # gold items drawn at random
    names = {field.name for field in dataclasses.fields(CampaignItemRow)}
    assert "gold_answer" not in names and all(not hasattr(row, "gold_answer") for row in draws)

    # Once the normal items are answered, the gold ones remain; then nothing.
    answer_all(store, rater, item_ids(store, campaign_id), ["1"] * 10, 2.0)
    rest = [store.next_campaign_item(campaign_id, rater, rng) for _ in range(3)]
    assert all(row is not None and row.is_gold for row in rest)
    answer_all(store, rater, item_ids(store, campaign_id, gold=True), ["1"] * 5, 2.0)
    assert store.next_campaign_item(campaign_id, rater, rng) is None


def test_no_gold_at_rate_zero(store: FeedbackStore) -> None:
    campaign_id, _, _ = vote_campaign(store, n=3, gold=("1",), gold_rate=0.0)
    rater, rng = store.rater("r"), random.Random(0)
    assert not any(store.next_campaign_item(campaign_id, rater, rng).is_gold for _ in range(50))


# -- answers ----------------------------------------------------------------------------------------


def test_answers_are_checked(store: FeedbackStore) -> None:
    campaign_id, _, _ = vote_campaign(store)
    first, *_ = item_ids(store, campaign_id)
    rater = store.rater("r")
    with pytest.raises(FeedbackError, match="answer to a vote item must be one of 1, -1"):
        store.answer_campaign_item(first, rater, "left", 2.0)
    with pytest.raises(FeedbackError, match="seconds must be"):
        store.answer_campaign_item(first, rater, "1", -1.0)
    with pytest.raises(FeedbackError, match="item does not exist"):
        store.answer_campaign_item(first + 1000, rater, "1", 2.0)
    with pytest.raises(FeedbackError, match="session is unknown"):
        store.answer_campaign_item(first, rater + 1000, "1", 2.0)
    store.answer_campaign_item(first, rater, "1", 2.0)
    with pytest.raises(FeedbackError, match="already answered this item"):
        store.answer_campaign_item(first, rater, "-1", 2.0)
    assert [(a.answer, a.seconds) for a in store.campaign_answers(campaign_id)] == [("1", 2.0)]
    assert store.campaign("apples").n_answers == 1


def test_a_closed_campaign_serves_nothing_and_takes_no_answers(store: FeedbackStore) -> None:
    campaign_id, _, _ = vote_campaign(store)
    rater, rng = store.rater("r"), random.Random(0)
    row = store.next_campaign_item(campaign_id, rater, rng)
    assert row is not None
    store.close_campaign("apples")
    store.close_campaign("apples")  # closing twice changes nothing
    assert store.next_campaign_item(campaign_id, rater, rng) is None
    with pytest.raises(FeedbackError, match="'apples' is closed"):
        store.answer_campaign_item(row.id, rater, "1", 2.0)
    assert store.campaigns() == []
    assert store.campaigns(include_closed=True)[0].closed_at is not None
    with pytest.raises(FeedbackError, match="no campaign named"):
        store.close_campaign("nope")


def test_answers_are_votes_and_comparisons(store: FeedbackStore) -> None:
    vote_id, normal, checks = vote_campaign(store, n=2, gold=("1",))
    rater = store.rater("r")
    answer_all(store, rater, item_ids(store, vote_id), ["1", "-1"], 2.0)
    answer_all(store, rater, item_ids(store, vote_id, gold=True), ["1"], 2.0)
    outside = new_images(store, 1, prompt="a cat")[0]
    store.vote(rater, outside, 1)  # gallery feedback is not the campaign's

    rows = store.preference_rows(campaign="apples")
    assert sorted((v.image_id, v.value) for v in rows.votes) == sorted(zip(normal, [1, -1]))
    assert {e.image_id for e in rows.events} == set(normal) and rows.comparisons == []
    everything = store.preference_rows()
    assert {v.image_id for v in everything.votes} == {*normal, *checks, outside}  # gold answers are votes too

    a, b, c, d = new_images(store, 4)
    pair_id = store.create_campaign(
        "pairs",
        "pair",
        "",
        2,
        0.0,
        [
            CampaignItemSpec(left_image_id=a, right_image_id=b),
            CampaignItemSpec(left_image_id=c, right_image_id=d, gold_answer="right"),
        ],
    )
    with pytest.raises(FeedbackError, match="answer to a pair item must be one of left, tie, both_bad, right"):
        store.answer_campaign_item(item_ids(store, pair_id)[0], rater, "1", 2.0)
    store.answer_campaign_item(item_ids(store, pair_id)[0], rater, "left", 4.5)
    store.answer_campaign_item(item_ids(store, pair_id, gold=True)[0], rater, "right", 4.5)
    store.compare(rater, b, a, "tie")  # the same two images, swapped, outside the campaign: still its item
    store.compare(rater, a, c, "left")  # not an item of the campaign
    pairs = store.preference_rows(campaign="pairs")
    # The later judgement of the same two images replaces the rater's earlier one, in the row's own order.
    assert [(x.left_image_id, x.right_image_id, x.outcome) for x in pairs.comparisons] == [(a, b, "tie")]
    assert pairs.votes == []
    answer = store.campaign_answers(pair_id)[0]
    assert (answer.image_ids, answer.gold_answer, answer.seconds) == ((a, b), None, 4.5)
    assert store.campaign_answers(pair_id)[1].gold_answer == "right"
    with pytest.raises(FeedbackError, match="no campaign named"):
        store.preference_rows(campaign="nope")


# -- the report -------------------------------------------------------------------------------------

TRUTH = ["1", "-1"] * 6  # the answers to twelve normal items


def test_report_alpha_of_three_raters_who_agree(store: FeedbackStore) -> None:
    campaign_id, _, _ = vote_campaign(store, n=12, k=3)
    items = item_ids(store, campaign_id)
    for name in ("a", "b", "c"):
        answer_all(store, store.rater(name), items, TRUTH, 3.0)
    report = campaign_report(store, "apples")
    assert report.alpha.alpha == 1.0 and report.alpha.low == report.alpha.high == 1.0
    assert (report.alpha.items, report.alpha.raters, report.alpha.ratings) == (12, 3, 36)
    assert report.items["answers"].tolist() == [3] * 12 and (report.items["wanted"] == 3).all()
    assert report.campaign.items_complete == 12
    assert not report.raters["flagged"].any() and (report.raters["reasons"] == "").all()


def test_report_flags_raters_with_reasons(store: FeedbackStore) -> None:
    campaign_id, _, _ = vote_campaign(store, n=12, gold=("1", "1", "1", "-1"), k=5, gold_rate=0.2)
    items, gold = item_ids(store, campaign_id), item_ids(store, campaign_id, gold=True)
    raters = {name: store.rater(name) for name in ("good", "gold_fail", "fast", "same", "few")}
    for name, normal, checks, seconds in [
        ("good", TRUTH, ["1", "1", "1", "-1"], 3.0),
        ("gold_fail", TRUTH, ["-1", "-1", "1", "1"], 3.0),  # 1 of 4 gold right
        ("fast", TRUTH, ["1", "1", "1", "-1"], 0.4),
        ("same", ["1"] * 12, ["1", "1", "1", "1"], 2.0),  # 3 of 4 gold right, but always 👍
    ]:
        answer_all(store, raters[name], items, normal, seconds)
        answer_all(store, raters[name], gold, checks, seconds)
    answer_all(store, raters["few"], items[:2], ["1", "1"], 2.0)  # too few answers to judge the same button

    report = campaign_report(store, "apples", n_boot=50)
    table = report.raters.set_index("rater_id")
    assert list(report.raters.columns) == RATER_COLUMNS
    reasons = {name: table.loc[rater, "reasons"] for name, rater in raters.items()}
    assert reasons == {
        "good": "",
        "gold_fail": "low_gold_accuracy",
        "fast": "too_fast",
        "same": "same_button",
        "few": "",
    }
    assert report.raters["flagged"].tolist() == [True, True, True, False, False]  # flagged first
    gold_fail = table.loc[raters["gold_fail"]]
    assert (gold_fail["answers"], gold_fail["gold_answered"], gold_fail["gold_correct"]) == (16, 4, 1)
    assert gold_fail["gold_accuracy"] == 0.25 < GOLD_MIN_ACCURACY
    assert table.loc[raters["same"], "gold_accuracy"] == 0.75 and table.loc[raters["same"], "same_button_share"] == 1.0
    assert table.loc[raters["good"], "same_button_share"] == pytest.approx(9 / 16)
    assert table.loc[raters["fast"], "median_seconds"] == 0.4
    assert math.isnan(table.loc[raters["few"], "gold_accuracy"])
    assert report.items["answers"].tolist() == [5, 5] + [4] * 10  # gold items are not in the item table
    assert report.campaign.items_complete == 2
    assert -1 <= report.alpha.alpha < 1 and report.alpha.items == 12

    as_json = json.loads(json.dumps(report.to_dict()))  # plain JSON, NaN as null
    few = next(row for row in as_json["raters"] if row["rater_id"] == raters["few"])
    assert few["gold_accuracy"] is None and as_json["campaign"]["name"] == "apples"
    assert as_json["alpha"]["items"] == 12 and len(as_json["items"]) == 12


def test_report_of_a_campaign_without_answers(store: FeedbackStore) -> None:
    vote_campaign(store)
    report = campaign_report(store, "apples")
    assert math.isnan(report.alpha.alpha) and report.raters.empty
    assert list(report.raters.columns) == RATER_COLUMNS
    assert report.to_dict()["alpha"]["alpha"] is None


# -- CLI and export ---------------------------------------------------------------------------------


def test_cli_list_show_close(store: FeedbackStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    campaign_id, _, _ = vote_campaign(store, n=12, k=3)
    for name in ("a", "b"):
        answer_all(store, store.rater(name), item_ids(store, campaign_id), TRUTH, 3.0)
    db = ["--db", store.url, "--image-dir", str(tmp_path / "images")]

    def run(*args: str) -> Any:
        assert main([*db, *args]) == 0
        return json.loads(capsys.readouterr().out)

    listed = run("list")
    assert [(c["name"], c["n_items"], c["n_answers"], c["closed_at"]) for c in listed] == [("apples", 12, 24, None)]
    shown = run("show", "apples", "--n-boot", "20")
    assert shown["alpha"]["alpha"] == 1.0 and len(shown["raters"]) == 2 and shown["items"][0]["answers"] == 2
    closed = run("close", "apples")
    assert closed["closed_at"] is not None
    assert run("list") == [] and [c["name"] for c in run("list", "--all")] == ["apples"]
    with pytest.raises(SystemExit) as exit_info:
        main([*db, "show", "nope"])
    assert exit_info.value.code == 2 and "no campaign named 'nope'" in capsys.readouterr().err


def test_export_leaves_out_the_campaigns_flagged_raters(
    store: FeedbackStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign_id, normal, _ = vote_campaign(store, n=12, gold=("1", "1", "-1"), k=3)
    items, gold = item_ids(store, campaign_id), item_ids(store, campaign_id, gold=True)
    good, careless = store.rater("good"), store.rater("careless")
    for rater, checks in [(good, ["1", "1", "-1"]), (careless, ["-1", "-1", "1"])]:
        answer_all(store, rater, items, TRUTH, 3.0)
        answer_all(store, rater, gold, checks, 3.0)
    store.vote(good, new_images(store, 1, prompt="a cat")[0], 1)  # gallery feedback outside the campaign

    everything = export(store, "kto", tmp_path / "all")
    result = export(store, "kto", tmp_path / "campaign", filters=ExportFilters(campaign="apples"))
    assert (everything.rows, result.rows) == (31, 12)
    frame = pd.read_parquet(tmp_path / "campaign" / "train.parquet")
    assert set(frame["user_id"]) == {good} and set(frame["image_uid"]) == set(normal)
    assert result.counts["campaign_flagged_raters_left_out"] == 1
    assert result.counts["campaign_raters_flagged_low_gold_accuracy"] == 1
    assert result.counts["votes_of_campaign_flagged_raters"] == 12
    card = (tmp_path / "campaign" / "README.md").read_text()
    assert "campaign: `apples`, its normal items only" in card
    assert "raters flagged by `feedback.campaigns` in that campaign: left out" in card
    assert "campaign_flagged_raters_left_out: 1" in card and "campaign_raters_flagged_low_gold_accuracy: 1" in card
    assert "campaign_raters_flagged_too_fast: 0" in card

    db = ["--db", store.url, "--image-dir", str(tmp_path / "images")]
    assert export_main(["--format", "kto", "--out", str(tmp_path / "cli"), "--campaign", "apples", *db]) == 0
    assert len(pd.read_parquet(tmp_path / "cli" / "train.parquet")) == 12
    with pytest.raises(SystemExit):
        export_main(["--format", "kto", "--out", str(tmp_path / "none"), "--campaign", "nope", *db])
    assert "no campaign named 'nope'" in capsys.readouterr().err
