"""``GET /health``: whether the demo can take work now, for a host's monitor or a load balancer.

It checks what a request needs: the database answers a read, the image folder takes a file, and the last
model run did not fail; it also gives the versions served, the model's measured pace and the runs admitted.
The answer is 200 when everything is usable and 503 otherwise, and names no path, URL or address: the route
is public. Results are kept for a few seconds, so a client polling fast cannot make the server probe its
disk on every request.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.admission import Admission
from app.versions import ModelVersions
from feedback.store import FeedbackStore, ImagesNotSaved

HEALTH_PATH = "/health"
CACHE_S = 5.0


class Health:
    """The checks of one running demo, each result reused for ``CACHE_S`` seconds."""

    def __init__(self, store: FeedbackStore, versions: ModelVersions, admission: Admission) -> None:
        self.store = store
        self.versions = versions
        self.admission = admission
        self._lock = threading.Lock()
        self._checked_at = -CACHE_S
        self._answer: dict[str, Any] = {}

    def check(self) -> dict[str, Any]:
        """The health answer: ``ok`` and one entry per part, each with its own ``ok``."""
        with self._lock:
            if time.monotonic() - self._checked_at >= CACHE_S:
                self._answer = self._fresh()
                self._checked_at = time.monotonic()
            return self._answer

    def _fresh(self) -> dict[str, Any]:
        database = self.store.database_reachable()
        try:
            self.store.check_images_writable()
            images = True
        except ImagesNotSaved:
            images = False
        models_ok = self.admission.last_run_failed is not True
        return {
            "ok": database and images and models_ok,
            "database": {"ok": database},
            "images": {"ok": images},
            "models": {
                "ok": models_ok,
                "last_run": {None: "none yet", False: "ok", True: "failed"}[self.admission.last_run_failed],
                "versions": self.versions.labels,
                "admitted_runs": self.admission.admitted,
                "seconds_per_image_step": round(self.admission.seconds_per_image_step, 4),
            },
        }


def health_route(health: Health) -> Route:
    async def answer(_request: Request) -> JSONResponse:
        result = await run_in_threadpool(health.check)
        return JSONResponse(result, status_code=200 if result["ok"] else 503)

    return Route(HEALTH_PATH, answer, methods=["GET"])
