"""Building a campaign with the served model, gold items from real scenes, and the Rate tab's service."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.campaigns import GROUND_TRUTH, CampaignService, build_campaign
from app.settings import Settings
from feedback.campaigns import campaign_report
from feedback.images import generated_from, read_provenance
from feedback.store import FeedbackStore

PROMPTS = ["a cat on the left", "two apples on a blue background"]


@pytest.fixture
def sqlite_store(tmp_path: Path):
    with FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "images") as store:
        yield store


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vote", "pair"])
def test_a_campaign_is_built_from_prompts_with_gold_from_real_scenes(
    kind: str, tiny_sd_dir: Path, sqlite_store: FeedbackStore, tmp_path: Path
) -> None:
    settings = Settings(model_path=tiny_sd_dir, torch_threads=1)
    build_campaign(sqlite_store, settings, "first", PROMPTS, kind, "Judge the text.", 2, 0.5, gold_items=2, seed=1)
    campaign = sqlite_store.campaign("first")
    assert (campaign.kind, campaign.n_items, campaign.n_gold, campaign.answers_wanted) == (kind, 4, 2, 2)

    service = CampaignService(sqlite_store, seed=0)
    rater = sqlite_store.rater("browser")
    shown = []
    while (item := service.next_item(campaign, rater)) is not None:
        assert len(item.paths) == (1 if kind == "vote" else 2)
        provenance = read_provenance(item.paths[0])
        assert item.text == generated_from(provenance)  # the rater judges the text the image was made from
        shown.append((provenance["model_name"], item.text))
        service.answer(item, rater, "1" if kind == "vote" else "left")
    answered = service.progress(campaign, rater)
    assert answered == 4 and len(shown) == 4
    model_texts = sorted(text for model, text in shown if model != GROUND_TRUTH["model_name"])
    assert model_texts == sorted(PROMPTS)  # each prompt once, as the model read it
    gold = [text for model, text in shown if model == GROUND_TRUTH["model_name"]]
    assert len(gold) == 2 and all(text not in PROMPTS for text in gold)

    # The gold answers are the ground truth: a scene under its own caption is 👍 and under another's 👎
    # (vote), the real scene wins whichever side it is on (pair). Answering 👍 / left to all gets one right.
    (row,) = campaign_report(sqlite_store, "first", n_boot=0).raters.itertuples()
    assert (row.gold_answered, row.gold_correct) == (2, 1)
