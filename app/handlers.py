"""Event functions for the UI and the API: validate, call a service, shape the answer.

Each public function is thin: ``Guard`` checks the input, ``GenerationService`` makes images,
``FeedbackStore`` keeps them and the votes. Any ``ValueError`` on the way (bad input, an unknown
image, a refused vote) reaches the user as a ``gr.Error`` with its one-sentence message, in the
browser and through ``gradio_client`` alike, never as a traceback.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
from PIL import Image

from app.admission import Admission
from app.arena import ArenaService
from app.campaigns import CampaignService, ShownItem
from app.dashboard import DashboardService, DashboardView
from app.generation import GenerationRequest, GenerationResult, GenerationService
from app.guard import Guard, InvalidInput, RaterIdentity, choice, whole_number
from app.leaderboard_view import LeaderboardView, leaderboard_view
from app.messages import PLOT_LABELS, VOTE_COLOURS, language, plural, say
from app.rater_cookie import COOKIE, MAX_AGE_S, rater_token
from app.rater_tokens import RaterTokens
from app.settings import Settings
from app.sign_in import signed_in_account
from feedback.images import PROVENANCE_KEY, generated_from, image_provenance
from feedback.models import COMPARISON_OUTCOMES
from feedback.store import FeedbackStore
from model.prompts.prompt_enhancer import Enhancer

log = logging.getLogger(__name__)

AUTO_STYLE = "auto"
DISPLAY_MIN_SIDE = 256  # tiny native images are shown upscaled; the stored file stays native
HISTORY_LENGTH = 24
MAX_BATTLE_ID = 2**31 - 1  # the largest id an Integer key holds on PostgreSQL
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn a ValueError's message into a gr.Error, which Gradio shows as is (UI) or returns as an error (API)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except ValueError as err:
            log.info("%s refused: %s", fn.__name__, err)
            # Gradio renders the message as HTML and it may quote the user's input, so escape it.
            raise gr.Error(html.escape(str(err), quote=False), print_exception=False) from err

    return wrapper  # type: ignore[return-value]


def display_copy(path: Path, provenance: dict[str, Any] | None) -> Image.Image:
    """The stored PNG upscaled for display, carrying ``provenance`` into the PNG it is served as (None: nothing,
    as in the arena, where the file must not name the model before the vote).

    Nearest-neighbour keeps the model's pixels as sharp squares: smoothing a 32-px image blurs what a rater judges.
    """
    with Image.open(path) as stored:
        image = stored.convert("RGB")
    scale = math.ceil(DISPLAY_MIN_SIDE / max(image.size))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    # The stored file's own text chunk comes along with its pixels; the served copy carries ``provenance`` only.
    image.info = {}
    if provenance is not None:
        image.info[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True, ensure_ascii=False, default=str)
    return image


def load_png(path: Path) -> Image.Image:
    """A stored PNG read fully into memory (file closed), text chunks included."""
    with Image.open(path) as image:
        image.load()
    return image


def history_caption(provenance: dict[str, Any]) -> str:
    prompt = provenance["prompt"]
    return f"{prompt[:40]}{'…' if len(prompt) > 40 else ''} · seed {provenance['seed']}"


def dashboard_plots(view: DashboardView, lang: str) -> tuple[Any, ...]:
    """``view`` with its three plot frames as plots whose axis and legend titles speak ``lang``.

    A plot's titles are set when the page is built, in one language; each refresh sets them again for the reader.
    """
    per_day, by_model, by_category, *rest = view
    words = PLOT_LABELS[lang]
    return (
        gr.BarPlot(
            per_day,
            x_title=words["day"],
            y_title=words["votes"],
            color_title=words["vote"],
            color_map={words[vote]: colour for vote, colour in VOTE_COLOURS.items()},
        ),
        gr.BarPlot(by_model, x_title=words["model"], y_title=words["like_rate"]),
        gr.BarPlot(by_category, x_title=words["category"], y_title=words["like_rate"]),
        *rest,
    )


class Handlers:
    """All event functions, bound to the services of one running demo."""

    def __init__(
        self,
        settings: Settings,
        generation: GenerationService,
        store: FeedbackStore,
        enhancer: Enhancer,
        guard: Guard,
        dashboard_service: DashboardService,
        campaigns: CampaignService,
        arena: ArenaService,
        tokens: RaterTokens,
        admission: Admission,
    ) -> None:
        self.settings = settings
        self.generation = generation
        self.store = store
        self.enhancer = enhancer
        self.guard = guard
        self.dashboard_service = dashboard_service
        self.campaigns = campaigns
        self.arena = arena
        self.tokens = tokens
        self.admission = admission

    # -- identity -------------------------------------------------------------------------------

    @staticmethod
    def _ip(request: gr.Request | None) -> str | None:
        """The client's address (a trusted proxy's X-Forwarded-For is already applied by the server)."""
        return getattr(getattr(request, "client", None), "host", None)

    def _rater(self, request: gr.Request | None, action: str | None = None) -> int:
        """The store's id for the rater behind ``request`` (one per signed rater cookie), after counting ``action``
        ("generations" or "votes") against the address's limit, which comes before a new rater is created, and then
        against the rater's. A signed-in account (``--sign-in``) is recorded with the rater."""
        ip = self._ip(request)
        if action is not None:
            self.guard.hit(action, ip)
        token = rater_token(getattr(request, "cookies", None), self.tokens)
        identity: RaterIdentity = self.guard.rater(token, ip)
        rater_id = self.store.rater(identity.anon_id, identity.ip, signed_in_account(request))
        if action is not None:
            self.guard.hit(action, ip, rater_id)
        return rater_id

    @user_errors
    def rater_token(self, request: gr.Request = None) -> dict[str, Any]:
        """A new rater token for an API client: send it as the cookie named here with every later call, and keep it
        (it stays the same rater for a year). New tokens are limited per network address."""
        return {"cookie": COOKIE, "token": self.tokens.issue(self._ip(request)), "max_age_s": MAX_AGE_S}

    # -- prompt ---------------------------------------------------------------------------------

    @user_errors
    def enhance(self, prompt: str, seed: float, style: str = AUTO_STYLE) -> str:
        """Expand the prompt with style, background and detail words; the same seed gives the same text.

        With seed -1 (random generation) the expansion uses seed 0, so it stays reproducible.
        """
        style = choice(style, "style", (AUTO_STYLE, *self.enhancer.styles))
        enhanced = self.enhancer.enhance(
            self.guard.prompt(prompt), self.guard.seed(seed) or 0, None if style == AUTO_STYLE else style
        )
        return enhanced.text

    # -- generation -----------------------------------------------------------------------------

    @user_errors
    def generate(
        self,
        prompt: str,
        enhanced_prompt: str,
        negative_prompt: str,
        steps: float,
        cfg: float,
        seed: float,
        num_images: float,
        aspect: str,
        sampler: str,
        best_of: float = 1,
        request: gr.Request = None,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[list[Image.Image], dict[str, Any], int]:
        """Generate and store images; returns the native PNGs, the ids and provenance, and the seed used.

        ``best_of`` > 1 (on a server with a reward model) draws that many candidates per image and returns those the
        reward model scores highest, best first. Vote on an image through ``/vote`` with an ``image_id`` from the
        returned ``images`` list.
        """
        gen_request = self.guard.generation(
            prompt, negative_prompt, enhanced_prompt, steps, cfg, seed, num_images, aspect, sampler, best_of
        )
        summary, paths = self._generate(gen_request, request, progress)
        return [load_png(path) for path in paths], summary, summary["seed"]

    def _generate(
        self, gen_request: GenerationRequest, request: gr.Request, progress: gr.Progress
    ) -> tuple[dict[str, Any], list[Path]]:
        """Run the model and store the images; returns the summary clients see and the stored files."""
        rater_id = self._rater(request, "generations")
        self.store.check_images_writable()
        cost = gen_request.steps * gen_request.candidates
        with self.admission.slot(self._ip(request), cost, self._wait_reporter(progress)):
            result: GenerationResult = self.generation.run(gen_request, progress=self._progress_reporter(progress))
        self.admission.ran(result.seconds, result.run_image_steps)
        for warning in result.warnings:
            gr.Warning(warning)
        record = self.store.record_generation(rater_id, result.provenance, result.images)
        summary = {
            "generation_id": record.id,
            "seed": result.provenance["seed"],
            "model_version": self.generation.model_version,
            "seconds": round(result.seconds, 2),
            "images": [
                {"image_id": image_id, "seed": image_seed, "batch_index": index}
                for index, (image_id, image_seed) in enumerate(zip(record.image_ids, result.seeds, strict=True))
            ],
            "provenance": result.provenance,
            "warnings": result.warnings,
        }
        return summary, record.paths

    @staticmethod
    def _wait_reporter(progress: gr.Progress) -> Callable[[int], None]:
        """Say how many runs are ahead while a request waits for the model."""

        def report(ahead: int) -> None:
            progress(0.0, desc=f"Waiting for the model: {ahead} request{plural(ahead)} ahead")

        return report

    @staticmethod
    def _progress_reporter(progress: gr.Progress) -> Callable[[int, int], None]:
        """Step/total with an ETA from the mean step time so far."""
        started = time.monotonic()

        def report(step: int, total: int) -> None:
            eta = (time.monotonic() - started) / step * (total - step)
            progress((step, total), desc=f"Step {step}/{total} · ETA {eta:.1f} s", unit="steps")

        return report

    @staticmethod
    def lock_cards() -> Any:
        """Dim the shown cards and stop clicks on them while a new run generates."""
        return gr.Column(elem_classes=["stale"])

    @staticmethod
    def unlock_cards() -> Any:
        """A run that failed leaves the earlier cards as they were, live again."""
        return gr.Column(elem_classes=[])

    def show_cards(self, summary: dict[str, Any], history: list[dict[str, Any]], request: gr.Request) -> list[Any]:
        """Fill the result cards (image, its text and id, an empty note and comment), status, seed and history; the
        page paints the vote buttons (``app.card_votes``)."""
        images = summary["images"]
        p = summary["provenance"]
        text = html.escape(generated_from(p))
        # The warnings stay on every card (a toast fades): a rater should not judge what the model cannot read.
        warnings = "".join(f"\n\n⚠️ {html.escape(w)}" for w in summary["warnings"])
        updates: list[Any] = []
        for index in range(self.settings.max_images):
            if index < len(images):
                item = images[index]
                image = display_copy(self.store.image_path(item["image_id"]), image_provenance(p, index))
                updates += [
                    gr.Column(visible=True),
                    image,
                    f"seed {item['seed']} · {text}{warnings}",
                    item["image_id"],
                ]
            else:
                updates += [gr.Column(visible=False), None, "", ""]
            updates += ["", gr.Textbox(value="")]  # the card's note and comment start empty
        status = say(
            request,
            "status",
            n=len(images),
            s=plural(len(images)),
            seconds=summary["seconds"],
            text=text,
            seed=summary["seed"],
            sampler=p["sampler"],
            steps=p["steps"],
            model=summary["model_version"],
        )
        if (best_of := p.get("best_of", 1)) > 1:
            status += say(request, "best_of_status", n=best_of, shown=len(images), drawn=best_of * len(images))
        history = [{"summary": summary, "caption": history_caption(p)}, *history][:HISTORY_LENGTH]
        gallery = [(self.store.image_path(h["summary"]["images"][0]["image_id"]), h["caption"]) for h in history]
        seed = gr.Number(summary["seed"], visible=True)
        return [*updates, status, seed, history, gallery, self.unlock_cards()]

    def restore(self, history: list[dict[str, Any]], evt: gr.SelectData) -> list[Any]:
        """Put the settings of a past run back into the controls (with the seed it used)."""
        provenance = history[evt.index]["summary"]["provenance"]
        return [
            provenance["prompt"],
            provenance.get("enhanced_prompt") or "",
            provenance.get("negative_prompt") or "",
            provenance["steps"],
            provenance["cfg"],
            provenance["seed"],
            provenance["num_images"],
            provenance["aspect"],
            provenance["sampler"],
            provenance.get("best_of", 1),
        ]

    # -- votes ----------------------------------------------------------------------------------

    @user_errors
    def vote(self, image_id: str, value: int, comment: str = "", request: gr.Request = None) -> dict[str, Any]:
        """Set your vote on an image from /generate: 1 = 👍, -1 = 👎, 0 = take it back; optional comment."""
        return self.store_vote(image_id, value, comment, request)

    def store_vote(self, image_id: Any, value: Any, comment: Any, request: Any) -> dict[str, Any]:
        """The vote itself, for Gradio's endpoint and the light route (``app.vote_route``) alike; any ValueError is
        the sentence the client sees. ``request`` is a gr.Request or a Starlette request (both carry client and
        cookies)."""
        image_id, value, note = self.guard.vote(image_id, value, comment)
        rater_id = self._rater(request, "votes")
        record = self.store.vote(rater_id, image_id, value, note)
        return {"image_id": image_id, "value": record.value, "previous": record.previous, "comment": record.comment}

    # -- pairwise -------------------------------------------------------------------------------

    @user_errors
    def new_pair(
        self,
        prompt: str,
        negative_prompt: str,
        steps: float,
        cfg: float,
        aspect: str,
        sampler: str,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, Any, list[str], str, Any, Any, Any, Any]:
        """Two images of one prompt (random seeds) to judge side by side."""
        gen_request = self.guard.generation(prompt, negative_prompt, "", steps, cfg, -1, 2, aspect, sampler)
        summary, _ = self._generate(gen_request, request, progress)
        left, right = summary["images"]
        images = [
            display_copy(self.store.image_path(item["image_id"]), image_provenance(summary["provenance"], index))
            for index, item in enumerate((left, right))
        ]
        buttons = [gr.Button(interactive=True) for _ in COMPARISON_OUTCOMES]
        status = say(request, "pair_status", left=left["seed"], right=right["seed"])
        return (*images, [left["image_id"], right["image_id"]], status, *buttons)

    @user_errors
    def compare(self, left_image_id: str, right_image_id: str, outcome: str, request: gr.Request = None) -> int:
        """Judge two images from /generate: outcome is left, right, tie or both_bad. Returns the comparison id."""
        left, right, outcome = self.guard.comparison(left_image_id, right_image_id, outcome)
        rater_id = self._rater(request, "votes")
        return self.store.compare(rater_id, left, right, outcome)

    def pair_judge(self, outcome: str) -> Callable[..., tuple[str, Any, Any, Any, Any]]:
        """The click handler of one pairwise button."""

        def judge(pair: list[str], request: gr.Request) -> tuple[str, Any, Any, Any, Any]:
            return self.judge_pair(outcome, pair, request)

        return judge

    @user_errors
    def judge_pair(self, outcome: str, pair: list[str], request: gr.Request) -> tuple[str, Any, Any, Any, Any]:
        """A click on one of the pairwise buttons; the buttons lock until the next pair."""
        if len(pair) != 2:
            raise InvalidInput("Make a new pair first.")
        self.compare(pair[0], pair[1], outcome, request)
        buttons = [gr.Button(interactive=False) for _ in COMPARISON_OUTCOMES]
        return (say(request, "pair_thanks", choice=say(request, f"choice_{outcome}")), *buttons)

    # -- campaigns ------------------------------------------------------------------------------

    def rate_campaigns(self) -> Any:
        """The open campaigns, read when the Rate tab opens (campaigns are created while the app runs)."""
        names = self.campaigns.open_campaigns()
        return gr.Dropdown(choices=names, value=names[0] if names else None)

    @user_errors
    def rate_open(self, name: str | None, request: gr.Request) -> list[Any]:
        """Show a campaign's guidelines, the rater's progress and their next item."""
        return self.rate_view(name, request)

    def rate_answerer(self, answer: str) -> Callable[..., list[Any]]:
        """The click handler of one answer button of the Rate tab."""

        def answer_item(name: str | None, item: ShownItem | None, request: gr.Request) -> list[Any]:
            return self.rate_answer(answer, name, item, request)

        return answer_item

    @user_errors
    def rate_answer(self, answer: str, name: str | None, item: ShownItem | None, request: gr.Request) -> list[Any]:
        """Store the answer on the item shown, then show the next one."""
        if item is None:
            raise InvalidInput("Choose a campaign first; its next item appears here.")
        rater_id = self._rater(request, "votes")
        self.campaigns.answer(item, rater_id, answer)
        return self.rate_view(name, request)

    def rate_view(self, name: str | None, request: gr.Request) -> list[Any]:
        """Guidelines, progress, the item's images and text, which answer buttons show, and the item itself."""
        hidden = [gr.Button(visible=False)] * (2 + len(COMPARISON_OUTCOMES))
        if not name:
            return ["", say(request, "rate_none"), *[gr.Image(None, visible=False)] * 2, "", *hidden, None]
        campaign = self.campaigns.campaign(name)  # read after any answer, so its progress is current
        rater_id = self._rater(request)
        item = self.campaigns.next_item(campaign, rater_id)
        answered = self.campaigns.progress(campaign, rater_id)
        items = campaign.n_items - campaign.n_gold
        progress = say(
            request,
            "rate_progress",
            answered=answered,
            items=campaign.n_items,
            complete=campaign.items_complete,
            wanted_items=items,
            k=campaign.answers_wanted,
        )
        if item is None:
            done = say(request, "rate_done")
            return [campaign.guidelines, progress, *[gr.Image(None, visible=False)] * 2, done, *hidden, None]
        pair = item.kind == "pair"
        images = [display_copy(path, provenance) for path, provenance in zip(item.paths, item.provenances)]
        buttons = [gr.Button(visible=not pair)] * 2 + [gr.Button(visible=pair)] * len(COMPARISON_OUTCOMES)
        text = say(request, "rate_pair_text" if pair else "rate_text", text=html.escape(item.text))
        left, right = gr.Image(images[0], visible=True), gr.Image(images[1] if pair else None, visible=pair)
        return [campaign.guidelines, progress, left, right, text, *buttons, item]

    # -- arena ----------------------------------------------------------------------------------

    @user_errors
    def arena_battle(
        self,
        prompt: str,
        negative_prompt: str,
        steps: float,
        cfg: float,
        aspect: str,
        sampler: str,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Image.Image, Image.Image, dict[str, Any]]:
        """Two anonymous versions draw the prompt with one random seed; returns model A's and model B's images and
        the battle (id, seed, text, warnings) that ``/arena_vote`` judges."""
        gen_request = self.guard.generation(prompt, negative_prompt, "", steps, cfg, -1, 1, aspect, sampler)
        rater_id = self._rater(request, "generations")
        self.store.check_images_writable()
        with self.admission.slot(self._ip(request), 2 * gen_request.steps, self._wait_reporter(progress)):
            shown = self.arena.start(gen_request, rater_id, progress=self._progress_reporter(progress))
        for warning in shown.warnings:
            gr.Warning(warning)
        battle = {"battle_id": shown.battle_id, "seed": shown.seed, "text": shown.text, "warnings": shown.warnings}
        return display_copy(shown.left_path, None), display_copy(shown.right_path, None), battle

    def show_battle(self, battle: dict[str, Any], request: gr.Request) -> tuple[Any, ...]:
        """The battle's status line, its id for the buttons, and the answer buttons opened."""
        warnings = "".join(f"\n\n⚠️ {html.escape(w)}" for w in battle["warnings"])
        status = say(request, "arena_status", seed=battle["seed"], text=html.escape(battle["text"])) + warnings
        return (status, battle["battle_id"], *[gr.Button(interactive=True) for _ in COMPARISON_OUTCOMES])

    @user_errors
    def arena_vote(self, battle_id: int, outcome: str, request: gr.Request = None) -> dict[str, Any]:
        """Judge a battle from /arena: left (model A), right (model B), tie or both_bad. Returns both versions."""
        battle_id = whole_number(battle_id, "battle id", 1, MAX_BATTLE_ID)
        outcome = choice(outcome, "outcome", COMPARISON_OUTCOMES)
        rater_id = self._rater(request, "votes")
        battle = self.arena.judge(battle_id, rater_id, outcome)
        return {"battle_id": battle.id, "outcome": outcome, "model_a": battle.model_a, "model_b": battle.model_b}

    def arena_judge(self, outcome: str) -> Callable[..., tuple[Any, ...]]:
        """The click handler of one arena button."""

        def judge(battle_id: int | None, request: gr.Request) -> tuple[Any, ...]:
            return self.judge_battle(outcome, battle_id, request)

        return judge

    @user_errors
    def judge_battle(self, outcome: str, battle_id: int | None, request: gr.Request) -> tuple[Any, ...]:
        """A click on one arena button: store it, reveal both versions, close the buttons until the next battle."""
        if battle_id is None:
            raise InvalidInput("Start a battle first.")
        battle = self.arena_vote(battle_id, outcome, request)
        key = f"arena_choice_{outcome}" if outcome in ("left", "right") else f"choice_{outcome}"
        reveal = say(request, "arena_reveal", choice=say(request, key), a=battle["model_a"], b=battle["model_b"])
        return (reveal, None, *[gr.Button(interactive=False) for _ in COMPARISON_OUTCOMES])

    def leaderboard(self) -> dict[str, Any]:
        """Versions with their lineage, Bradley-Terry ratings with 95% intervals, like-rates, win rates, battles."""
        return self.arena.board()

    def leaderboard_view(self, request: gr.Request) -> LeaderboardView:
        """The Leaderboard tab: summary line, ratings plot and table, win-rate matrix, versions."""
        return leaderboard_view(self.arena, language(request))

    # -- dashboard ------------------------------------------------------------------------------

    def dashboard(self, admin_key: str = "") -> dict[str, Any]:
        """Totals, votes per day, like-rate per model version and per category, and rater agreement, as JSON;
        each rater's agreement and flag only with the host's admin key."""
        return self.dashboard_service.json(admin=self.guard.admin(admin_key))

    def dashboard_view(self, admin_key: str, request: gr.Request) -> tuple[Any, ...]:
        """The dashboard plots, a line of totals, and the agreement summary; the rater tables need the admin key."""
        lang = language(request)
        return dashboard_plots(self.dashboard_service.view(lang, admin=self.guard.admin(admin_key)), lang)
