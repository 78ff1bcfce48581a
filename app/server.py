"""Build and launch the demo: the services, the UI and the queue, wired from one ``Settings``.

The repository-root ``app.py`` is the command-line entry point; it re-exports these functions so
that ``python app.py`` and tests (which build the demo themselves) go through the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from app.arena import ArenaService
from app.campaigns import CampaignService
from app.dashboard import DashboardService
from app.generation import GenerationService
from app.guard import Guard
from app.handlers import Handlers
from app.i18n import page_i18n
from app.rater_cookie import RaterCookieMiddleware
from app.settings import Settings, from_args
from app.ui import CSS, SHORTCUTS, THEME, build_ui
from app.versions import ModelVersions, version_folders
from feedback.store import FeedbackStore
from model.prompts.prompt_enhancer import PromptEnhancer
from model.prompts.trained_domain import TrainedDomain

log = logging.getLogger(__name__)


def build_demo(settings: Settings) -> gr.Blocks:
    """Load the model, open the feedback store, and lay out the UI with its queue."""
    generation = GenerationService(settings.model_path, settings.device, settings.torch_threads)
    folders = version_folders(
        [settings.model_path, *settings.more_models],
        settings.versions_dir,
        missing_ok=settings.versions_dir == Settings.versions_dir,
    )
    versions = ModelVersions.load(folders, settings.device, settings.torch_threads, primary=generation)
    store = FeedbackStore(settings.db_url, settings.image_dir)
    domain = generation.domain  # None for pipelines we did not train: no style or word limits then
    handlers = Handlers(
        settings,
        generation,
        store,
        domain.enhancer() if domain else PromptEnhancer(),
        Guard(settings, generation.samplers, generation.aspects, key=store.install_secret),
        DashboardService(store),
        CampaignService(store),
        ArenaService(versions, store),
    )
    demo = build_ui(handlers, settings)
    return demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)


def launch(demo: gr.Blocks, settings: Settings, **kwargs: Any) -> Any:
    """Start the server with the demo's theme, CSS and translations; ``kwargs`` override launch options."""
    options: dict[str, Any] = {
        "server_name": settings.host,
        "server_port": settings.port,
        "share": settings.share,
        "i18n": page_i18n(TrainedDomain.from_bundle(settings.model_path)),
        "theme": THEME,
        "css": CSS,
        "js": SHORTCUTS,
        "footer_links": ["api", "settings"],
        "allowed_paths": [str(settings.image_dir.resolve())],
        "app_kwargs": {"middleware": [Middleware(RaterCookieMiddleware)]},
    }
    return demo.launch(**{**options, **kwargs})


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags and environment, then serve until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = from_args(argv)
    log.info("Starting the demo with %s", settings)
    launch(build_demo(settings), settings)
