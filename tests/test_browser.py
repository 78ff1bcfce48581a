"""The demo in a real headless Chromium: enhance, generate, rate one image, see it on the dashboard.

Screenshots land in tests/artifacts/ for a person to look at.
"""

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, Response, expect

from app.rater_cookie import COOKIE
from app.vote_route import VOTE_PATH
from feedback.campaigns import CampaignItemSpec
from feedback.store import FeedbackStore
from model.pipeline.bundled import DEFAULT_BUNDLE
from model.prompts.trained_domain import TrainedDomain
from tests.fixtures.app_server import ADMIN_KEY, AppServer
from tests.test_store import provenance, solid

pytestmark = pytest.mark.browser

SELECTED = re.compile(r"\bselected\b")
GENERATION_TIMEOUT_MS = 90_000  # the machine's cores are shared; generation may queue behind other work


@pytest.fixture(scope="module")
def store(app_server: AppServer) -> Iterator[FeedbackStore]:
    with FeedbackStore(app_server.db_url, app_server.image_dir) as store:
        yield store


def open_demo(page: Page, app_server: AppServer) -> None:
    page.goto(app_server.url)
    expect(page.locator("#prompt textarea")).to_be_visible()


def expect_toast(page: Page, text: str) -> None:
    """Wait until a toast with ``text`` has faded fully in, so that a screenshot shows it."""
    expect(page.get_by_test_id("toast-body").filter(has_text=text)).to_have_css("opacity", "1")


def votes_on_prompt(store: FeedbackStore, prompt: str) -> list[int]:
    rows = store.preference_rows()
    return [vote.value for vote in rows.votes if rows.images[vote.image_id].provenance["prompt"] == prompt]


def comments_on_prompt(store: FeedbackStore, prompt: str) -> list[str]:
    rows = store.preference_rows()
    return [vote.comment for vote in rows.votes if rows.images[vote.image_id].provenance["prompt"] == prompt]


def test_enhance_generate_rate_and_see_the_dashboard(
    page: Page, app_server: AppServer, store: FeedbackStore, artifacts_dir: Path
) -> None:
    prompt = "a frog and a rocket on a green background"
    open_demo(page, app_server)
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#enhance").click()
    enhanced = page.locator("#enhanced textarea")
    expect(enhanced).to_have_value(re.compile(re.escape(prompt) + ".+"))

    page.locator("#generate").click()
    for index in (0, 1):
        expect(page.locator(f"#card-{index} img")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    expect(page.locator("#card-2")).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("2 images")
    expect(page.locator("#used-seed input")).to_have_value(re.compile(r"^\d+$"))
    page.screenshot(path=artifacts_dir / "browser-generated.png", full_page=True)

    # What a download of the shown image gives: an upscaled PNG that still carries the provenance of that image.
    shown = page.request.get(page.locator("#card-1 img").get_attribute("src"))
    image = Image.open(io.BytesIO(shown.body()))
    provenance = json.loads(image.text["parameters"])
    assert image.format == "PNG" and min(image.size) >= 256
    assert (provenance["prompt"], provenance["batch_index"]) == (prompt, 1)
    assert provenance["seed"] == provenance["batch_seed"] + 1
    assert provenance["enhanced_prompt"] == enhanced.input_value()

    dislike, like = page.locator("#dislike-1"), page.locator("#like-1")
    # A card's vote leaves the page as one plain request to the light route, not through Gradio's queue.
    with page.expect_response(lambda r: r.url.endswith(VOTE_PATH) and r.request.method == "POST") as sent:
        dislike.click()
    assert sent.value.ok and sent.value.json()["value"] == -1
    expect(dislike).to_have_class(SELECTED)
    expect(like).not_to_have_class(SELECTED)
    expect(page.locator("#like-0")).not_to_have_class(SELECTED)
    page.screenshot(path=artifacts_dir / "browser-disliked.png", full_page=True)
    assert votes_on_prompt(store, prompt) == [-1]

    like.click()  # change the vote
    expect(like).to_have_class(SELECTED)
    expect(dislike).not_to_have_class(SELECTED)
    like.click()  # and take it back
    expect(like).not_to_have_class(SELECTED)
    dislike.click()
    expect(dislike).to_have_class(SELECTED)
    page.locator("#comment-1 textarea").fill("the frog is missing")
    page.locator("#comment-1 textarea").press("Enter")
    expect(page.locator("#card-note-1")).to_have_text("Comment saved.")
    assert votes_on_prompt(store, prompt) == [-1]
    assert comments_on_prompt(store, prompt) == ["the frog is missing"]
    page.locator("#comment-0 textarea").fill("nice")
    page.locator("#comment-0 textarea").press("Enter")  # no vote on card 0 yet: the comment waits for one
    expect(page.locator("#card-note-0")).to_contain_text("Choose 👍 or 👎 first")
    like0, answers = page.locator("#like-0"), []

    def second_vote_answer(response: Response) -> bool:
        if response.url.endswith(VOTE_PATH):
            answers.append(response.json()["value"])
        return len(answers) == 2

    with page.expect_response(second_vote_answer):
        like0.dblclick()  # two quick clicks: the second takes the first back, in order
    assert answers == [1, 0]
    expect(like0).not_to_have_class(SELECTED)
    expect(page.locator("#card-note-0")).to_have_text("")
    assert votes_on_prompt(store, prompt) == [-1]  # card 0's vote came and went

    page.get_by_role("tab", name="Dashboard").click()
    # Every tab keeps its own label (a component placed directly under gr.Tabs would show up as one more tab).
    tabs = ["Generate", "Compare", "Rate", "Arena", "Leaderboard", "Dashboard", "About / consent"]
    expect(page.get_by_role("tab")).to_have_text(tabs)
    n_votes = store.dashboard().totals["n_votes"]
    expect(page.locator("#totals")).to_contain_text(f"{n_votes} vote")
    expect(page.get_by_text("Like-rate per category")).to_be_visible()
    page.get_by_text("Rater agreement").click()
    expect(page.locator("#agreement")).to_contain_text("Votes")
    expect(page.locator("#agreement")).to_contain_text("flagged for review")
    expect(page.locator("canvas, svg.marks")).to_have_count(3, timeout=30_000)  # the three plots have drawn
    page.screenshot(path=artifacts_dir / "browser-dashboard.png", full_page=True)


def test_a_reload_is_still_the_same_rater(page: Page, app_server: AppServer, store: FeedbackStore) -> None:
    prompt = "a rocket at the top on a black background"
    raters = []
    for _ in range(2):  # the second page load is a new Gradio session in the same browser
        open_demo(page, app_server)
        page.locator("#prompt textarea").fill(prompt)
        page.locator("#generate").click()
        expect(page.locator("#card-0 img")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
        page.locator("#like-0").click()
        expect(page.locator("#like-0")).to_have_class(SELECTED)
        rows = store.preference_rows()
        raters += [v.rater_id for v in rows.votes if rows.images[v.image_id].provenance["prompt"] == prompt]
        page.reload()
    (cookie,) = [c for c in page.context.cookies() if c["name"] == COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert len(raters) == 3 and len(set(raters)) == 1  # one vote after the first load, two after the second


def test_empty_prompt_shows_a_clear_message(page: Page, app_server: AppServer, artifacts_dir: Path) -> None:
    open_demo(page, app_server)
    page.locator("#generate").click()
    expect_toast(page, "Please enter a prompt.")
    expect(page.locator("#card-0")).to_be_hidden()
    expect(page.locator("#used-seed")).to_be_hidden()
    page.screenshot(path=artifacts_dir / "browser-empty-prompt.png")


def test_pairwise_comparison_moves_on_and_takes_shortcuts(
    page: Page, app_server: AppServer, store: FeedbackStore, artifacts_dir: Path
) -> None:
    open_demo(page, app_server)
    page.locator("#prompt textarea").fill("two cats at the top")
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#pair-prompt textarea")).to_have_value("two cats at the top")
    before = store.dashboard().totals["n_comparisons"]
    page.locator("#new-pair").click()
    left_better = page.get_by_role("button", name="Left is better")
    expect(left_better).to_be_enabled(timeout=GENERATION_TIMEOUT_MS)
    first_pair = page.locator("#left img").get_attribute("src")
    left_better.click()
    # The judgement is stored and the next pair of the same prompt comes by itself.
    expect(page.locator("#left img")).not_to_have_attribute("src", first_pair, timeout=GENERATION_TIMEOUT_MS)
    expect(left_better).to_be_enabled(timeout=GENERATION_TIMEOUT_MS)
    expect(page.locator("#pair-status")).to_contain_text("which fits the prompt better")
    page.screenshot(path=artifacts_dir / "browser-compare.png", full_page=True)

    second_pair = page.locator("#left img").get_attribute("src")
    page.locator("body").press("ArrowRight")  # the keyboard judges too: → is "right is better"
    expect(page.locator("#left img")).not_to_have_attribute("src", second_pair, timeout=GENERATION_TIMEOUT_MS)
    expect(left_better).to_be_enabled(timeout=GENERATION_TIMEOUT_MS)
    rows = store.preference_rows(with_images=False, with_events=False).comparisons
    assert store.dashboard().totals["n_comparisons"] == before + 2
    assert [row.outcome for row in rows[-2:]] == ["left", "right"]


def test_an_example_clears_the_earlier_enhancement(page: Page, app_server: AppServer, store: FeedbackStore) -> None:
    """The model generates from the example's text, not from an enhancement of the prompt typed before."""
    open_demo(page, app_server)
    page.locator("#prompt textarea").fill("a frog on a purple background")
    page.locator("#enhance").click()
    expect(page.locator("#enhanced textarea")).not_to_have_value("")
    page.get_by_text("a cat on a blue background · seed 7").click()
    expect(page.locator("#prompt textarea")).to_have_value("a cat on a blue background")
    expect(page.locator("#enhanced textarea")).to_have_value("")
    page.locator("#generate").click()
    expect(page.locator("#card-0 img")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    expect(page.locator("#status")).to_contain_text("from “a cat on a blue background”")
    expect(page.locator("#card-text-0")).to_contain_text("a cat on a blue background")
    page.locator("#like-0").click()
    expect(page.locator("#like-0")).to_have_class(SELECTED)
    rows = store.preference_rows()
    (image,) = [
        rows.images[v.image_id] for v in rows.votes if rows.images[v.image_id].caption.startswith("a cat on a b")
    ]
    assert image.caption == "a cat on a blue background" and image.provenance["enhanced_prompt"] is None


def test_earlier_cards_are_locked_while_a_new_run_generates(
    page: Page, app_server: AppServer, store: FeedbackStore, artifacts_dir: Path
) -> None:
    open_demo(page, app_server)
    page.locator("#prompt textarea").fill("a heart on the left")
    page.locator("#generate").click()
    expect(page.locator("#card-0 img")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    first = page.locator("#card-0 img").get_attribute("src")
    results = page.locator("#results")
    expect(results).not_to_have_class(re.compile(r"\bstale\b"))

    page.locator("#prompt textarea").fill("a rocket on the right")
    page.locator("#steps input[type=number]").fill("150")  # long enough to look at the page meanwhile
    page.locator("#steps input[type=number]").press("Enter")
    page.locator("#generate").click()
    expect(results).to_have_class(re.compile(r"\bstale\b"))
    expect(results).to_have_css("pointer-events", "none")
    page.locator("#like-0").focus()
    page.keyboard.press("Enter")  # the keyboard still reaches a dimmed card: the page refuses the vote there
    expect(page.locator("#card-note-0")).to_contain_text("These are the earlier images")
    page.screenshot(path=artifacts_dir / "browser-locked-cards.png", full_page=True)
    expect(page.locator("#card-0 img")).not_to_have_attribute("src", first, timeout=GENERATION_TIMEOUT_MS)
    expect(results).not_to_have_class(re.compile(r"\bstale\b"))
    page.locator("#dislike-0").click()
    expect(page.locator("#dislike-0")).to_have_class(SELECTED)
    assert votes_on_prompt(store, "a rocket on the right") == [-1]
    assert votes_on_prompt(store, "a heart on the left") == []


def test_a_chinese_prompt_is_drawn_from_its_translation(page: Page, app_server: AppServer) -> None:
    open_demo(page, app_server)
    page.locator("#prompt textarea").fill("蓝色背景上左边有一只猫")
    page.locator("#generate").click()
    expect(page.locator("#card-0 img")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    expect(page.locator("#status")).to_contain_text("from “a cat on the left on a blue background”")
    expect(page.locator("#card-text-0")).to_contain_text("a cat on the left on a blue background")
    expect(page.locator("#card-text-0")).not_to_contain_text("⚠️")
    page.locator("#enhance").click()  # Enhance keeps the prompt's own background
    expect(page.locator("#enhanced textarea")).to_have_value(re.compile(r"^a cat on the left on a blue background"))
    assert not re.search(
        r"\b(red|green|yellow|purple|pink|orange|black|white|grey)\b", page.locator("#enhanced textarea").input_value()
    )


def test_a_prompt_the_model_cannot_read_is_flagged_on_every_card(
    page: Page, app_server: AppServer, artifacts_dir: Path
) -> None:
    open_demo(page, app_server)
    page.locator("#prompt textarea").fill("кошка на синем фоне")
    page.locator("#generate").click()
    expect(page.locator("#card-1 img")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    for index in (0, 1):
        expect(page.locator(f"#card-text-{index}")).to_contain_text("reads English, not the Cyrillic script")
    page.screenshot(path=artifacts_dir / "browser-unreadable-prompt.png", full_page=True)


def test_chinese_locale(chinese_page: Page, app_server: AppServer, artifacts_dir: Path) -> None:
    open_demo(chinese_page, app_server)
    expect(chinese_page.get_by_role("tab", name="数据面板")).to_be_visible()
    expect(chinese_page.locator("#generate")).to_contain_text("生成")
    chinese_page.locator("#prompt textarea").fill("两个苹果在右边，黄色背景")
    chinese_page.locator("#generate").click()
    expect(chinese_page.locator("#card-0 img")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    status = chinese_page.locator("#status")  # the status line speaks the page's language too
    expect(status).to_contain_text("2 张图像")
    expect(status).to_contain_text("生成自“two apples on the right on a yellow background”")
    chinese_page.get_by_role("tab", name="数据面板").click()
    expect(chinese_page.locator("#totals")).to_contain_text("个投票")
    expect(chinese_page.locator("canvas, svg.marks")).to_have_count(3, timeout=30_000)  # the three plots have drawn
    chinese_page.screenshot(path=artifacts_dir / "browser-zh.png")


def test_history_restores_settings(page: Page, app_server: AppServer) -> None:
    open_demo(page, app_server)
    page.locator("#prompt textarea").fill("three hearts on the left")
    page.locator("#steps input[type=number]").fill("4")
    page.locator("#steps input[type=number]").press("Enter")
    page.locator("#generate").click()
    expect(page.locator("#card-0 img")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    used_seed = page.locator("#used-seed input").input_value()

    page.locator("#prompt textarea").fill("something else")
    page.locator("#steps input[type=number]").fill("9")
    page.locator("#steps input[type=number]").press("Enter")
    page.get_by_text("Session history").click()
    page.locator("#history button[aria-label^='Thumbnail']").first.click()
    expect(page.locator("#prompt textarea")).to_have_value("three hearts on the left")
    expect(page.locator("#steps input[type=number]")).to_have_value("4")
    expect(page.locator("#seed input")).to_have_value(used_seed)


def test_an_arena_battle_reveals_the_versions_and_reaches_the_leaderboard(
    page: Page, app_server: AppServer, store: FeedbackStore, artifacts_dir: Path
) -> None:
    open_demo(page, app_server)
    page.locator("#prompt textarea").fill("a frog on a green background")
    page.get_by_role("tab", name="Arena").click()
    expect(page.locator("#arena-prompt textarea")).to_have_value("a frog on a green background")
    a_better = page.get_by_role("button", name="A is better")
    expect(a_better).to_be_disabled()
    page.locator("#battle").click()
    expect(a_better).to_be_enabled(timeout=GENERATION_TIMEOUT_MS)
    expect(page.locator("#arena-status")).to_contain_text("which image fits the prompt better")
    expect(page.locator("#arena-status")).not_to_contain_text("@")  # anonymous until the vote
    expect(page.locator("#arena-image-a img")).to_be_visible()
    page.screenshot(path=artifacts_dir / "browser-arena-battle.png", full_page=True)

    before = len(store.arena_battles())
    page.locator("body").press("b")  # the keyboard judges too: B is "both bad"
    expect(page.locator("#arena-status")).to_contain_text("Model A was")
    expect(a_better).to_be_disabled()
    (battle,) = store.arena_battles()[before:]
    shown = re.search(r"Model A was (\S+), model B was (\S+)\.", page.locator("#arena-status").inner_text())
    assert battle.outcome == "both_bad" and shown.groups() == (battle.model_a, battle.model_b)
    page.screenshot(path=artifacts_dir / "browser-arena-revealed.png", full_page=True)

    page.get_by_role("tab", name="Leaderboard").click()
    expect(page.locator("#leaderboard-summary")).to_contain_text("judged battle", timeout=30_000)
    expect(page.locator("#ratings")).to_contain_text("tiny-sd-b")
    expect(page.locator("#ratings-plot")).to_be_visible()
    page.screenshot(path=artifacts_dir / "browser-leaderboard.png", full_page=True)


@pytest.mark.parametrize("app_server", [DEFAULT_BUNDLE], indirect=True)
def test_the_bundled_model_says_what_it_has_learned(page: Page, app_server: AppServer, artifacts_dir: Path) -> None:
    domain = TrainedDomain.from_bundle(DEFAULT_BUNDLE)
    open_demo(page, app_server)
    page.get_by_text("What this model has learned so far").click()
    expect(page.locator("#model-knows")).to_contain_text(f"{len(domain.emoji)} emoji")
    first_example = domain.example_prompts(1)[0]
    page.get_by_text(f"{first_example} · seed 0").click()
    expect(page.locator("#prompt textarea")).to_have_value(first_example)

    page.locator("#prompt textarea").fill("a unicorn on a red background")
    page.locator("#generate").click()
    expect(page.locator("#card-0 img")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    expect_toast(page, "has not learned to draw 'unicorn'")
    page.screenshot(path=artifacts_dir / "browser-trained-domain.png", full_page=True)

    page.locator("#prompt textarea").fill("a cycle on the left")  # a word training held out
    page.locator("#enhance").click()
    expect(page.locator("#enhanced textarea")).to_have_value(re.compile(r"\ba bicycle on the left"))


@pytest.mark.parametrize("app_server", [DEFAULT_BUNDLE], indirect=True)
def test_the_chinese_page_says_what_the_model_has_learned(
    chinese_page: Page, app_server: AppServer, artifacts_dir: Path
) -> None:
    domain = TrainedDomain.from_bundle(DEFAULT_BUNDLE)
    open_demo(chinese_page, app_server)
    chinese_page.get_by_text("这个模型目前学会了什么").click()
    knows = chinese_page.locator("#model-knows")
    expect(knows).to_contain_text(f"{len(domain.emoji)} 个表情符号")
    expect(knows).to_contain_text("请用英文写提示词")
    knows.screenshot(path=artifacts_dir / "browser-zh-trained-domain.png")


def test_a_campaign_reaches_k_answers_from_three_browser_raters(
    browser: Browser, app_server: AppServer, store: FeedbackStore, artifacts_dir: Path
) -> None:
    """Three raters work through a campaign in the Rate tab; every item gets k = 3 answers and α shows."""
    admin = store.rater("campaign-admin")
    texts = {"red": "1", "green": "1", "blue": "-1", "yellow": "-1"}  # what every rater answers for each text
    items = [
        CampaignItemSpec(
            image_id=store.record_generation(admin, provenance(prompt=f"a {c} square"), [solid(c)]).image_ids[0]
        )
        for c in texts
    ]
    gold = store.record_generation(admin, provenance(prompt="a white square"), [solid("white")]).image_ids[0]
    store.create_campaign("squares", "vote", "Say 👍 when the square is **red or green**.", 3, 0.2, [
        *items, CampaignItemSpec(image_id=gold, gold_answer="1")
    ])  # fmt: skip
    texts["white"] = "1"

    for rater in range(3):
        context = browser.new_context(viewport={"width": 1360, "height": 1000})
        page = context.new_page()
        open_demo(page, app_server)
        page.get_by_role("tab", name="Rate", exact=True).click()
        expect(page.locator("#guidelines")).to_contain_text("red or green")
        for _ in range(len(texts)):
            expect(page.locator("#rate-left img")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
            shown = page.locator("#rate-text").inner_text()
            (colour,) = [c for c in texts if f"a {c} square" in shown]
            page.locator("body").press("ArrowUp" if texts[colour] == "1" else "ArrowDown")
            expect(page.locator("#rate-text")).not_to_contain_text(f"a {colour} square")  # items never repeat
        expect(page.locator("#rate-text")).to_contain_text("You have judged every item")
        expect(page.locator("#rate-progress")).to_contain_text(f"You have judged {len(texts)} of {len(texts)} items")
        if rater == 2:
            page.screenshot(path=artifacts_dir / "browser-campaign-done.png", full_page=True)
            page.get_by_role("tab", name="Dashboard").click()
            expect(page.locator("#campaigns")).to_contain_text("squares")
            expect(page.locator("#campaigns")).to_contain_text("3 to 3 answers per item")
            expect(page.locator("#campaigns")).to_contain_text("α = 1.00")
            expect(page.locator("body")).to_contain_text("gold accuracy")  # the table's headers, and without the
            expect(page.locator("body")).not_to_contain_text("too_fast")  # admin key no rater's row
            page.locator("#rater-agreement").click()  # open the accordion that holds the admin key
            page.locator("#admin-key input").fill(ADMIN_KEY)
            page.locator("#admin-key input").press("Enter")
            expect(page.locator("body")).to_contain_text("too_fast", timeout=GENERATION_TIMEOUT_MS)
            page.screenshot(path=artifacts_dir / "browser-campaign-dashboard.png", full_page=True)
        context.close()

    campaign = store.campaign("squares")
    assert (campaign.items_complete, campaign.n_answers) == (4, 15)


def test_best_of_n_says_the_reward_model_picked(page: Page, app_server: AppServer, artifacts_dir: Path) -> None:
    """The served demo has a reward model: Best of 3 shows the picked images, and the status line says so."""
    open_demo(page, app_server)
    page.locator("#prompt textarea").fill("a cat on a blue background")
    page.locator("#steps input[type=number]").fill("3")
    page.locator("#steps input[type=number]").press("Enter")
    page.locator("#best-of input[type=number]").fill("3")
    page.locator("#best-of input[type=number]").press("Enter")
    page.locator("#generate").click()
    status = page.locator("#status")
    expect(status).to_contain_text("best of 3", timeout=GENERATION_TIMEOUT_MS)
    expect(status).to_contain_text("picked these 2 of 6 images")
    expect(page.locator("#card-1 img")).to_be_visible()
    page.screenshot(path=artifacts_dir / "browser-best-of.png", full_page=True)
    # The second card's download says it was picked, by which reward model, with its score below the first's.
    cards = [page.request.get(page.locator(f"#card-{i} img").get_attribute("src")) for i in (0, 1)]
    first, second = (json.loads(Image.open(io.BytesIO(card.body())).text["parameters"]) for card in cards)
    assert (second["best_of"], second["batch_index"]) == (3, 1) and second["reward_model"].startswith("reward-")
    assert first["reward_score"] >= second["reward_score"]
    assert second["seed"] in range(second["batch_seed"], second["batch_seed"] + 6)
