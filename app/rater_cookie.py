"""A long-lived random rater cookie, so that a reload or a second tab is still the same rater.

Gradio's session hash changes with every page load; counting each load as a new rater would
inflate rater numbers and split one person's votes. The middleware gives a browser that has no
valid cookie a random token (HttpOnly, SameSite=Lax, one year); the guard keys it with the
install's secret before it reaches the database, so the store never holds a usable cookie.
API clients without cookies fall back to their session.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import HTTPConnection

COOKIE = "raphael_rater"
MAX_AGE_S = 365 * 24 * 3600
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")

Scope = dict[str, Any]
Message = dict[str, Any]


def rater_token(cookies: Mapping[str, str] | None) -> str | None:
    """The rater token of a request's cookies, if present and well formed."""
    token = cookies.get(COOKIE) if cookies else None
    return token if isinstance(token, str) and _TOKEN.fullmatch(token) else None


class RaterCookieMiddleware:
    """Pure ASGI middleware: set the rater cookie on HTTP responses to requests that lack one."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable, send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or rater_token(HTTPConnection(scope).cookies):
            await self.app(scope, receive, send)
            return
        cookie = f"{COOKIE}={secrets.token_urlsafe(32)}; Max-Age={MAX_AGE_S}; Path=/; HttpOnly; SameSite=Lax"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)
