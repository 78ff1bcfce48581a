"""The Gradio layout: functions that build and return components, then every listener in one place.

No logic lives here; each listener calls a method of ``app.handlers.Handlers``. Public events
carry an ``api_name`` (``/enhance``, ``/generate``, ``/vote``, ``/compare``, ``/dashboard``, ``/arena``,
``/arena_vote``, ``/leaderboard``);
the ones that only make sense in a browser are private.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.card_votes import CARD_VOTES, CARDS_SHOWN, comment_script, vote_script
from app.generation import GenerationService
from app.guarded_inputs import GuardedDropdown, GuardedNumber, GuardedRadio, GuardedSlider, GuardedTextbox
from app.handlers import AUTO_STYLE, Handlers
from app.i18n import I18N
from app.messages import VOTE_COLOURS
from app.settings import Settings
from feedback.models import COMPARISON_OUTCOMES
from model.pipeline.buckets import DEFAULT_BUCKET

CARDS_PER_ROW = 4
MODEL_QUEUE = "model"  # every event that runs the model shares this concurrency group
VOTE_QUEUE = "votes"  # every event that stores a judgement
NUM_EXAMPLES = 4
EXAMPLES = [  # prompt, negative prompt, seed: for pipelines without a recorded training domain
    ["a cat on a blue background", "", 7],
    ["an apple on the left and a rocket on the right, pixel art", "", 42],
    ["two frogs at the bottom on a yellow background, in soft watercolour", "", 3],
    ["a heart in the centre on a black background, at night", "", 11],
]
CSS = """
/* Cards keep one size (a quarter of the row) however many are shown. */
.card {
  flex: 0 1 calc(25% - var(--layout-gap)) !important;
  border: 1px solid var(--border-color-primary);
  border-radius: var(--radius-lg);
  padding: 6px;
}
.card img, .pair img { image-rendering: pixelated; }  /* 32-px pixel art: sharp squares, not blur */
/* While a new run is generating, the earlier cards are dimmed and take no clicks. */
#results.stale { opacity: 0.35; pointer-events: none; transition: opacity 0.2s; }
.card-text { font-size: var(--text-sm); color: var(--body-text-color-subdued); overflow-wrap: anywhere; }
.vote.selected { outline: 2px solid var(--color-accent); outline-offset: 2px; }
#status { min-height: 3.5em; }
"""
THEME = gr.themes.Soft()
SCROLL_TO_RESULTS = "() => document.getElementById('status')?.scrollIntoView({behavior: 'smooth', block: 'start'})"
# Keyboard shortcuts of the Compare, Rate and Arena tabs (each says its own): the first visible, enabled button of a
# key's list is clicked. Compare: ← left, → right, ↓ or T tie, B both bad, N new pair. Rate: ↑ 👍, ↓ 👎, and the pair
# keys. Arena: the pair keys.
SHORTCUTS = """
() => {
  const keys = {
    ArrowLeft: ["outcome-left", "rate-outcome-left", "arena-left"],
    ArrowRight: ["outcome-right", "rate-outcome-right", "arena-right"],
    ArrowDown: ["outcome-tie", "rate-dislike"], ArrowUp: ["rate-like"],
    t: ["outcome-tie", "rate-outcome-tie", "arena-tie"],
    b: ["outcome-both_bad", "rate-outcome-both_bad", "arena-both_bad"],
    n: ["new-pair"],
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.target.closest("input, textarea, select")) return;
    const button = (keys[event.key] || []).map((id) => document.getElementById(id))
      .find((b) => b && b.offsetParent !== null && !b.disabled);
    if (button) {
      event.preventDefault();
      button.click();
    }
  });
}
"""
# What the page runs once on load: the shortcuts, and the cards' votes.
PAGE_SCRIPT = f"() => {{ ({SHORTCUTS.strip()})(); {CARD_VOTES} }}"


@dataclass
class Controls:
    prompt: gr.Textbox
    style: gr.Dropdown
    enhance: gr.Button
    enhanced: gr.Textbox
    negative: gr.Textbox
    generate: gr.Button
    steps: gr.Slider
    cfg: gr.Slider
    seed: gr.Number
    used_seed: gr.Number
    num_images: gr.Slider
    aspect: gr.Radio
    sampler: gr.Dropdown
    best_of: gr.Slider  # shown only with a reward model (--reward-model)

    @property
    def generation_inputs(self) -> list[gr.components.Component]:
        """In the order of ``Handlers.generate``'s parameters (and of ``Handlers.restore``'s outputs)."""
        return [
            self.prompt,
            self.enhanced,
            self.negative,
            self.steps,
            self.cfg,
            self.seed,
            self.num_images,
            self.aspect,
            self.sampler,
            self.best_of,
        ]


@dataclass
class Card:
    column: gr.Column
    image: gr.Image
    text: gr.Markdown  # the text the image was generated from, and its seed
    image_id: gr.Textbox  # hidden: the id of the image this card shows, sent with each vote on it
    like: gr.Button
    dislike: gr.Button
    comment: gr.Textbox
    note: gr.Markdown  # what became of the last click: a refusal, "comment saved" (app.card_votes)

    @property
    def outputs(self) -> list[gr.components.Component]:
        """In the order of the updates ``Handlers.show_cards`` gives each card."""
        return [self.column, self.image, self.text, self.image_id, self.note, self.comment]


@dataclass
class Results:
    container: gr.Column
    status: gr.Markdown
    cards: list[Card]
    originals: gr.Gallery
    details: gr.JSON
    history: gr.State
    history_gallery: gr.Gallery


@dataclass
class ComparePanel:
    tab: gr.Tab
    prompt: gr.Textbox
    new_pair: gr.Button
    left: gr.Image
    right: gr.Image
    pair: gr.State
    status: gr.Markdown
    outcomes: dict[str, gr.Button]


@dataclass
class RatePanel:
    tab: gr.Tab
    campaign: gr.Dropdown
    guidelines: gr.Markdown
    progress: gr.Markdown
    left: gr.Image
    right: gr.Image
    text: gr.Markdown
    like: gr.Button
    dislike: gr.Button
    outcomes: dict[str, gr.Button]
    item: gr.State

    @property
    def outputs(self) -> list[gr.components.Component]:
        """In the order of ``Handlers.rate_view``'s updates."""
        return [
            self.guidelines,
            self.progress,
            self.left,
            self.right,
            self.text,
            self.like,
            self.dislike,
            *self.outcomes.values(),
            self.item,
        ]


@dataclass
class ArenaPanel:
    tab: gr.Tab
    prompt: gr.Textbox
    battle: gr.Button
    left: gr.Image
    right: gr.Image
    details: gr.JSON  # hidden: the battle (id, seed, text, warnings), what /arena returns beside the images
    status: gr.Markdown
    battle_id: gr.State
    outcomes: dict[str, gr.Button]


@dataclass
class LeaderboardPanel:
    tab: gr.Tab
    refresh: gr.Button
    summary: gr.Markdown
    plot: gr.Plot
    ratings: gr.Dataframe
    win_rates: gr.Dataframe
    versions: gr.Dataframe

    @property
    def outputs(self) -> list[gr.components.Component]:
        """In the order of ``Handlers.leaderboard_view``'s answer."""
        return [self.summary, self.plot, self.ratings, self.win_rates, self.versions]


@dataclass
class Dashboard:
    tab: gr.Tab
    refresh: gr.Button
    totals: gr.Markdown
    per_day: gr.BarPlot
    by_model: gr.BarPlot
    by_category: gr.BarPlot
    agreement: gr.Markdown
    admin_key: gr.Textbox
    raters: gr.Dataframe
    campaigns: gr.Markdown
    campaign_raters: gr.Dataframe


def controls(settings: Settings, service: GenerationService, styles: tuple[str, ...]) -> Controls:
    """Prompt boxes on the left, sampling settings (defaulting to the pipeline's own) on the right."""
    with gr.Row():
        with gr.Column(scale=3):
            prompt = GuardedTextbox(
                label=I18N("prompt"),
                placeholder=I18N("prompt_placeholder"),
                lines=2,
                max_length=settings.max_prompt_chars,
                elem_id="prompt",
            )
            with gr.Row(equal_height=True):
                enhance = gr.Button(I18N("enhance"), elem_id="enhance", scale=1)
                style = GuardedDropdown([AUTO_STYLE, *styles], value=AUTO_STYLE, label=I18N("style"), scale=1)
            enhanced = GuardedTextbox(
                label=I18N("enhanced_prompt"), lines=2, max_length=settings.max_prompt_chars, elem_id="enhanced"
            )
            negative = GuardedTextbox(
                label=I18N("negative_prompt"),
                placeholder=I18N("negative_placeholder"),
                max_length=settings.max_prompt_chars,
                elem_id="negative",
            )
            generate = gr.Button(I18N("generate"), variant="primary", size="lg", elem_id="generate")
            gr.Markdown(I18N("consent_short"), elem_classes=["consent"])
        with gr.Column(scale=2), gr.Accordion(I18N("settings"), open=True):
            steps = GuardedSlider(
                settings.min_steps,
                settings.max_steps,
                value=service.call_default("num_inference_steps") or settings.default_steps,
                step=1,
                label=I18N("steps"),
                info=I18N("steps_info"),
                elem_id="steps",
            )
            cfg = GuardedSlider(
                settings.min_cfg,
                settings.max_cfg,
                value=service.call_default("guidance_scale") or settings.default_cfg,
                step=0.5,
                label=I18N("cfg"),
                info=I18N("cfg_info"),
            )
            with gr.Row():
                seed = GuardedNumber(
                    -1, label=I18N("seed"), info=I18N("seed_info"), precision=0, minimum=-1, elem_id="seed"
                )
                used_seed = gr.Number(  # shown once a generation has used a seed
                    label=I18N("used_seed"), precision=0, interactive=False, visible=False, elem_id="used-seed"
                )
            num_images = GuardedSlider(
                1,
                settings.max_images,
                value=settings.default_images,
                step=1,
                label=I18N("num_images"),
                elem_id="num-images",
            )
            best_of = GuardedSlider(
                1,
                settings.max_best_of,
                value=1,
                step=1,
                label=I18N("best_of"),
                info=I18N("best_of_info"),
                visible=service.reranker is not None,
                elem_id="best-of",
            )
            aspect = GuardedRadio(list(service.aspects), value=DEFAULT_BUCKET, label=I18N("aspect"))
            sampler = GuardedDropdown(list(service.samplers), value=service.default_sampler, label=I18N("sampler"))
    return Controls(
        prompt,
        style,
        enhance,
        enhanced,
        negative,
        generate,
        steps,
        cfg,
        seed,
        used_seed,
        num_images,
        aspect,
        sampler,
        best_of,
    )


def result_card(index: int) -> Card:
    """One image with its own 👍/👎 and an optional comment; hidden until a generation fills it."""
    with gr.Column(visible=False, min_width=200, elem_classes=["card"], elem_id=f"card-{index}") as column:
        image = gr.Image(
            show_label=False, format="png", interactive=False, height=256, buttons=["download", "fullscreen"]
        )
        text = gr.Markdown(elem_classes=["card-text"], elem_id=f"card-text-{index}")
        image_id = gr.Textbox(visible=False)
        with gr.Row():
            like = gr.Button("👍", size="sm", min_width=60, elem_id=f"like-{index}", elem_classes=["vote"])
            dislike = gr.Button("👎", size="sm", min_width=60, elem_id=f"dislike-{index}", elem_classes=["vote"])
        comment = gr.Textbox(
            show_label=False, placeholder=I18N("comment_placeholder"), max_lines=2, elem_id=f"comment-{index}"
        )
        note = gr.Markdown(elem_classes=["card-text"], elem_id=f"card-note-{index}")
    return Card(column, image, text, image_id, like, dislike, comment, note)


def results(settings: Settings) -> Results:
    """Status line, the image cards, the native originals with provenance, and the session history."""
    status = gr.Markdown(elem_id="status")
    cards: list[Card] = []
    with gr.Column(elem_id="results") as container:
        for start in range(0, settings.max_images, CARDS_PER_ROW):
            with gr.Row():
                cards += [result_card(i) for i in range(start, min(start + CARDS_PER_ROW, settings.max_images))]
    with gr.Accordion(I18N("originals"), open=False):
        originals = gr.Gallery(label=I18N("originals_gallery"), format="png", columns=8, height=160)
        details = gr.JSON(label=I18N("provenance"), elem_id="details")
    with gr.Accordion(I18N("history"), open=False):
        history_gallery = gr.Gallery(show_label=False, columns=8, height=180, allow_preview=False, elem_id="history")
    return Results(container, status, cards, originals, details, gr.State([]), history_gallery)


def compare_panel() -> ComparePanel:
    with gr.Tab(I18N("tab_compare"), id="compare") as tab:
        gr.Markdown(I18N("pair_intro"))
        with gr.Row(equal_height=True):
            prompt = GuardedTextbox(
                show_label=False, placeholder=I18N("prompt_placeholder"), scale=4, elem_id="pair-prompt"
            )
            new_pair = gr.Button(I18N("new_pair"), variant="primary", scale=1, elem_id="new-pair")
        with gr.Row():
            left = gr.Image(
                label=I18N("left"), format="png", interactive=False, height=320, elem_classes=["pair"], elem_id="left"
            )
            right = gr.Image(
                label=I18N("right"),
                format="png",
                interactive=False,
                height=320,
                elem_classes=["pair"],
                elem_id="right",
            )
        status = gr.Markdown(elem_id="pair-status")
        pair = gr.State([])  # inside the tab: a component directly under gr.Tabs would count as a tab
        with gr.Row():
            outcomes = {
                outcome: gr.Button(I18N(f"outcome_{outcome}"), interactive=False, elem_id=f"outcome-{outcome}")
                for outcome in COMPARISON_OUTCOMES
            }
    return ComparePanel(tab, prompt, new_pair, left, right, pair, status, outcomes)


def rate_panel() -> RatePanel:
    """A campaign's items one at a time: guidelines, progress, the images and the answer buttons."""
    with gr.Tab(I18N("tab_rate"), id="rate") as tab:
        gr.Markdown(I18N("rate_intro"))
        campaign = gr.Dropdown(choices=[], label=I18N("campaign"), elem_id="campaign")
        with gr.Accordion(I18N("guidelines"), open=True):
            guidelines = gr.Markdown(elem_id="guidelines")
        progress = gr.Markdown(elem_id="rate-progress")
        with gr.Row():
            image = dict(format="png", interactive=False, height=320, elem_classes=["pair"], show_label=False)
            left = gr.Image(elem_id="rate-left", **image)
            right = gr.Image(visible=False, elem_id="rate-right", **image)
        text = gr.Markdown(elem_id="rate-text")
        item = gr.State(None)  # inside the tab: a component directly under gr.Tabs would count as a tab
        with gr.Row():
            like = gr.Button(I18N("rate_like"), visible=False, elem_id="rate-like")
            dislike = gr.Button(I18N("rate_dislike"), visible=False, elem_id="rate-dislike")
            outcomes = {
                outcome: gr.Button(I18N(f"outcome_{outcome}"), visible=False, elem_id=f"rate-outcome-{outcome}")
                for outcome in COMPARISON_OUTCOMES
            }
    return RatePanel(tab, campaign, guidelines, progress, left, right, text, like, dislike, outcomes, item)


def arena_panel(is_open: bool) -> ArenaPanel:
    """The prompt, model A and model B side by side, and the four answers; names appear only after the vote."""
    with gr.Tab(I18N("tab_arena"), id="arena") as tab:
        gr.Markdown(I18N("arena_intro") if is_open else I18N("arena_closed"))
        with gr.Row(equal_height=True):
            prompt = GuardedTextbox(
                show_label=False, placeholder=I18N("prompt_placeholder"), scale=4, elem_id="arena-prompt"
            )
            battle = gr.Button(I18N("battle"), variant="primary", scale=1, interactive=is_open, elem_id="battle")
        with gr.Row():
            image = dict(format="png", interactive=False, height=320, elem_classes=["pair"])
            left = gr.Image(label=I18N("model_a"), elem_id="arena-image-a", **image)
            right = gr.Image(label=I18N("model_b"), elem_id="arena-image-b", **image)
        details = gr.JSON(visible=False)
        status = gr.Markdown(elem_id="arena-status")
        battle_id = gr.State(None)  # inside the tab: a component directly under gr.Tabs would count as a tab
        with gr.Row():
            labels = {"left": "arena_outcome_left", "right": "arena_outcome_right"}
            outcomes = {
                outcome: gr.Button(
                    I18N(labels.get(outcome, f"outcome_{outcome}")), interactive=False, elem_id=f"arena-{outcome}"
                )
                for outcome in COMPARISON_OUTCOMES
            }
    return ArenaPanel(tab, prompt, battle, left, right, details, status, battle_id, outcomes)


def leaderboard_panel() -> LeaderboardPanel:
    with gr.Tab(I18N("tab_leaderboard"), id="leaderboard") as tab:
        gr.Markdown(I18N("leaderboard_help"))
        with gr.Row(equal_height=True):
            summary = gr.Markdown(elem_id="leaderboard-summary")
            refresh = gr.Button(I18N("refresh"), scale=0, elem_id="leaderboard-refresh")
        plot = gr.Plot(show_label=False, elem_id="ratings-plot")
        ratings = gr.Dataframe(interactive=False, label=I18N("ratings"), elem_id="ratings")
        win_rates = gr.Dataframe(interactive=False, label=I18N("win_rates"), elem_id="win-rates")
        with gr.Accordion(I18N("versions"), open=False):
            versions = gr.Dataframe(interactive=False, show_label=False, elem_id="versions")
    return LeaderboardPanel(tab, refresh, summary, plot, ratings, win_rates, versions)


def dashboard() -> Dashboard:
    with gr.Tab(I18N("tab_dashboard"), id="dashboard") as tab:
        with gr.Row(equal_height=True):
            totals = gr.Markdown(elem_id="totals")
            refresh = gr.Button(I18N("refresh"), scale=0, elem_id="refresh")
        per_day = gr.BarPlot(
            x="day",
            y="count",
            color="vote",
            color_map=VOTE_COLOURS,
            label=I18N("votes_over_time"),
        )
        with gr.Row():
            bars = dict(y="like_rate", y_lim=[0, 1], height=300, x_label_angle=-30)  # long labels stay whole
            by_model = gr.BarPlot(x="model", label=I18N("like_rate_model"), **bars)
            by_category = gr.BarPlot(x="category", label=I18N("like_rate_category"), **bars)
        with gr.Accordion(I18N("rater_agreement"), open=False, elem_id="rater-agreement"):
            gr.Markdown(I18N("agreement_help"))
            agreement = gr.Markdown(elem_id="agreement")
            admin_key = gr.Textbox(label=I18N("admin_key"), type="password", max_lines=1, elem_id="admin-key")
            raters = gr.Dataframe(interactive=False, max_height=320, label=I18N("raters"))
        with gr.Accordion(I18N("campaigns"), open=True):
            campaigns = gr.Markdown(elem_id="campaigns")
            campaign_raters = gr.Dataframe(interactive=False, max_height=320, label=I18N("campaign_raters"))
    return Dashboard(
        tab, refresh, totals, per_day, by_model, by_category, agreement, admin_key, raters, campaigns, campaign_raters
    )


def build_ui(handlers: Handlers, settings: Settings) -> gr.Blocks:
    """Lay out the demo, then register all listeners."""
    service = handlers.generation
    # The model's events leave Gradio's queue at once and wait in app.admission, whose line is bounded and fair per
    # address (room for the admitted runs and for refusing the rest quickly); votes have a group of their own, so
    # neither ever waits behind a generation.
    model_events: dict[str, Any] = {
        "concurrency_id": MODEL_QUEUE,
        "concurrency_limit": settings.max_waiting_generations + settings.concurrency,
    }
    vote_events: dict[str, Any] = {"concurrency_id": VOTE_QUEUE, "concurrency_limit": settings.concurrency}
    with gr.Blocks(title="RAPHAEL-tiny demo") as demo:
        gr.Markdown(I18N("title"))
        gr.Markdown(I18N("subtitle"))
        if settings.sign_in:  # optional: anonymous raters still vote (app.sign_in)
            gr.LoginButton(size="sm")
        with gr.Tabs():
            with gr.Tab(I18N("tab_generate"), id="generate"):
                c = controls(settings, service, handlers.enhancer.styles)
                r = results(settings)
                examples = service.domain_examples(NUM_EXAMPLES) or EXAMPLES
                gr.Examples(
                    [[*example, ""] for example in examples],  # an example clears any earlier enhancement
                    inputs=[c.prompt, c.negative, c.seed, c.enhanced],
                    label=I18N("examples"),
                    example_labels=[f"{prompt} · seed {seed}" for prompt, _, seed in examples],
                    api_visibility="private",
                )
                if service.domain is not None:
                    with gr.Accordion(I18N("model_knows"), open=False, elem_id="model-knows"):
                        gr.Markdown(I18N("domain"))  # app.i18n.page_i18n adds it for this bundle
            p = compare_panel()
            rate = rate_panel()
            a = arena_panel(handlers.arena.is_open)
            board = leaderboard_panel()
            d = dashboard()
            with gr.Tab(I18N("tab_about"), id="about"):
                gr.Markdown(I18N("about"))

        # ---- listeners ----------------------------------------------------------------------
        # Editing the prompt makes an earlier enhancement stale, so it is cleared (in the browser).
        c.prompt.input(fn=None, js="() => ''", outputs=[c.enhanced])
        c.enhance.click(handlers.enhance, inputs=[c.prompt, c.seed, c.style], outputs=[c.enhanced], api_name="enhance")
        # The earlier cards are locked and dimmed from the click until the new ones are shown (or the run fails),
        # so that no vote meant for the new images lands on the old ones.
        generation = gr.on(
            [c.generate.click, c.prompt.submit],
            handlers.lock_cards,
            outputs=[r.container],
            queue=False,
            api_visibility="private",
        ).then(
            handlers.generate,
            inputs=c.generation_inputs,
            outputs=[r.originals, r.details, c.used_seed],  # the seed for API clients; show_cards reveals it
            api_name="generate",
            **model_events,
            show_progress_on=[r.status],
        )
        generation.success(
            handlers.show_cards,
            inputs=[r.details, r.history],
            outputs=[
                *[x for card in r.cards for x in card.outputs],
                r.status,
                c.used_seed,
                r.history,
                r.history_gallery,
                r.container,
            ],
            api_visibility="private",
        ).then(fn=None, js=CARDS_SHOWN, inputs=[card.image_id for card in r.cards]).then(
            fn=None,
            js=SCROLL_TO_RESULTS,  # the cards open below the settings: bring them into view
        )
        generation.failure(handlers.unlock_cards, outputs=[r.container], queue=False, api_visibility="private")
        # The cards' votes go from the browser straight to POST /api/vote (app.card_votes), not through the queue.
        for index, card in enumerate(r.cards):
            for button, value in ((card.like, 1), (card.dislike, -1)):
                button.click(
                    fn=None, js=vote_script(index, value), inputs=[card.image_id, card.comment], outputs=[card.note]
                )
            card.comment.submit(
                fn=None, js=comment_script(index), inputs=[card.image_id, card.comment], outputs=[card.note]
            )
        r.history_gallery.select(
            handlers.restore, inputs=[r.history], outputs=c.generation_inputs, api_visibility="private"
        )

        p.tab.select(fn=None, js="(main, pair) => pair || main", inputs=[c.prompt, p.prompt], outputs=[p.prompt])
        p.new_pair.click(
            handlers.new_pair,
            inputs=[p.prompt, c.negative, c.steps, c.cfg, c.aspect, c.sampler],
            outputs=[p.left, p.right, p.pair, p.status, *p.outcomes.values()],
            **model_events,
            api_visibility="private",
        )
        for outcome, button in p.outcomes.items():
            button.click(  # then straight on to the next pair of the same prompt
                handlers.pair_judge(outcome),
                inputs=[p.pair],
                outputs=[p.status, *p.outcomes.values()],
                api_visibility="private",
                **vote_events,
            ).success(
                handlers.new_pair,
                inputs=[p.prompt, c.negative, c.steps, c.cfg, c.aspect, c.sampler],
                outputs=[p.left, p.right, p.pair, p.status, *p.outcomes.values()],
                **model_events,
                show_progress_on=[p.left, p.right],
                api_visibility="private",
            )

        rate.tab.select(handlers.rate_campaigns, outputs=[rate.campaign], api_visibility="private")
        rate.campaign.change(  # items come in a blink: no progress overlay over the text being read
            handlers.rate_open,
            inputs=[rate.campaign],
            outputs=rate.outputs,
            show_progress="hidden",
            api_visibility="private",
        )
        answers = {rate.like: "1", rate.dislike: "-1", **{button: o for o, button in rate.outcomes.items()}}
        for button, answer in answers.items():
            button.click(
                handlers.rate_answerer(answer),
                inputs=[rate.campaign, rate.item],
                outputs=rate.outputs,
                show_progress="hidden",
                api_visibility="private",
                **vote_events,
            )

        a.tab.select(fn=None, js="(main, arena) => arena || main", inputs=[c.prompt, a.prompt], outputs=[a.prompt])
        battle = gr.on(
            [a.battle.click, a.prompt.submit],
            handlers.arena_battle,
            inputs=[a.prompt, c.negative, c.steps, c.cfg, c.aspect, c.sampler],
            outputs=[a.left, a.right, a.details],
            api_name="arena",
            **model_events,
            show_progress_on=[a.left, a.right],
        )
        battle.success(
            handlers.show_battle,
            inputs=[a.details],
            outputs=[a.status, a.battle_id, *a.outcomes.values()],
            api_visibility="private",
        )
        for outcome, button in a.outcomes.items():
            button.click(
                handlers.arena_judge(outcome),
                inputs=[a.battle_id],
                outputs=[a.status, a.battle_id, *a.outcomes.values()],
                api_visibility="private",
                **vote_events,
            )
        gr.on(
            [board.tab.select, board.refresh.click],
            handlers.leaderboard_view,
            outputs=board.outputs,
            api_visibility="private",
        )

        gr.on(
            [d.tab.select, d.refresh.click, d.admin_key.submit],
            handlers.dashboard_view,
            inputs=[d.admin_key],
            outputs=[
                d.per_day,
                d.by_model,
                d.by_category,
                d.totals,
                d.agreement,
                d.raters,
                d.campaigns,
                d.campaign_raters,
            ],  # fmt: skip
            api_visibility="private",
        )

        gr.api(handlers.rater_token, api_name="rater_token", **vote_events)
        gr.api(handlers.vote, api_name="vote", **vote_events)
        gr.api(handlers.compare, api_name="compare", **vote_events)
        gr.api(handlers.dashboard, api_name="dashboard")
        gr.api(handlers.arena_vote, api_name="arena_vote", **vote_events)
        gr.api(handlers.leaderboard, api_name="leaderboard")
    return demo
