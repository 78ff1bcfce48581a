"""Build and launch the demo: the services, the UI and the queue, wired from one ``Settings``.

The repository-root ``app.py`` is the command-line entry point; it re-exports these functions so
that ``python app.py`` and tests (which build the demo themselves) go through the same code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr
from starlette.middleware import Middleware
from starlette.routing import Route

from app.admission import Admission
from app.arena import ArenaService
from app.campaigns import CampaignService
from app.dashboard import DashboardService
from app.generation import GenerationService
from app.guard import Guard
from app.handlers import Handlers
from app.health import Health, health_route
from app.i18n import page_i18n
from app.rater_cookie import RaterCookieMiddleware
from app.rater_tokens import RaterTokens
from app.request_limits import RequestLimits
from app.reranker import Reranker
from app.settings import Settings, from_args
from app.sign_in import check_sign_in_available
from app.ui import CSS, PAGE_SCRIPT, THEME, build_ui
from app.versions import ModelVersions, version_folders
from app.vote_route import vote_route
from feedback.store import FeedbackStore
from model.prompts.prompt_enhancer import PromptEnhancer
from model.prompts.trained_domain import TrainedDomain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Demo:
    """The laid-out app, the signer of its rater tokens (for the cookie middleware) and the routes served beside
    Gradio's (the light vote route and the health check)."""

    blocks: gr.Blocks
    tokens: RaterTokens
    routes: tuple[Route, ...]


def build_demo(settings: Settings) -> Demo:
    """Load the model, open the feedback store, and lay out the UI with its queue."""
    if settings.sign_in:
        check_sign_in_available()  # before minutes of model loading
    reranker = Reranker(settings.reward_model) if settings.reward_model else None
    generation = GenerationService(settings.model_path, settings.device, settings.torch_threads, reranker=reranker)
    folders = version_folders(
        [settings.model_path, *settings.more_models],
        settings.versions_dir,
        missing_ok=settings.versions_dir == Settings.versions_dir,
    )
    versions = ModelVersions.load(folders, settings.device, settings.torch_threads, primary=generation)
    store = FeedbackStore(
        settings.db_url,
        settings.image_dir,
        settings.keys_dir,
        synchronous=settings.sqlite_synchronous,
        ip_hash_days=settings.ip_hash_days,
    )
    store.forget_ip_hashes()  # the retention rule, at start-up and then daily
    domain = generation.domain  # None for pipelines we did not train: no style or word limits then
    tokens = RaterTokens(store.install_secret, settings.new_raters_per_hour_per_ip)
    admission = Admission(settings.max_waiting_generations, settings.max_waiting_per_ip)
    handlers = Handlers(
        settings,
        generation,
        store,
        domain.enhancer() if domain else PromptEnhancer(),
        Guard(settings, generation.samplers, generation.aspects, key=store.install_secret),
        DashboardService(store),
        CampaignService(store),
        ArenaService(versions, store),
        tokens,
        admission,
    )
    # api_open=False: the /run routes would skip the queue (and answer every refusal with a 500); calls join it.
    blocks = build_ui(handlers, settings).queue(
        default_concurrency_limit=settings.concurrency, max_size=settings.queue_size, api_open=False
    )
    return Demo(blocks, tokens, (vote_route(handlers), health_route(Health(store, versions, admission))))


def launch(demo: Demo, settings: Settings, **kwargs: Any) -> Any:
    """Start the server with the demo's theme, CSS and translations; ``kwargs`` override launch options.

    uvicorn believes X-Forwarded-For only from the addresses in ``FORWARDED_ALLOW_IPS`` (loopback when unset, so a
    local client could name any address); it is set to the settings' trusted proxies, none by default.
    """
    os.environ["FORWARDED_ALLOW_IPS"] = ",".join(settings.trusted_proxies)
    options: dict[str, Any] = {
        "server_name": settings.host,
        "server_port": settings.port,
        "share": settings.share,
        "i18n": page_i18n(TrainedDomain.from_bundle(settings.model_path)),
        "theme": THEME,
        "css": CSS,
        "js": PAGE_SCRIPT,
        "footer_links": ["api", "settings"],
        "allowed_paths": [str(settings.image_dir.resolve())],
        "max_file_size": settings.max_upload_bytes,
        "app_kwargs": {
            "routes": list(demo.routes),
            "middleware": [
                # First: a refused body reaches nothing else.
                Middleware(
                    RequestLimits,
                    max_body_bytes=settings.max_body_bytes,
                    max_upload_bytes=settings.max_upload_bytes,
                ),
                Middleware(RaterCookieMiddleware, tokens=demo.tokens),
            ],
        },
    }
    return demo.blocks.launch(**{**options, **kwargs})


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags and environment, then serve until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = from_args(argv)
    log.info("Starting the demo with %s", settings)
    launch(build_demo(settings), settings)
