"""A long-lived signed rater cookie, so that a reload or a second tab is still the same rater.

Gradio's session hash changes with every page load and a client can choose it, so it cannot tell
raters apart. The middleware gives a browser that loads the page without a valid cookie a token
the server signed (``RaterTokens``; HttpOnly, SameSite=Lax, one year, and Secure when the page came over
HTTPS, as a trusted proxy's X-Forwarded-Proto says); the guard keys it with the
install's secret before it reaches the database, so the store never holds a usable cookie. API
clients get a token from ``/rater_token`` and send it back as this cookie.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import HTTPConnection

from app.guard import InvalidInput
from app.rater_tokens import RaterTokens

log = logging.getLogger(__name__)

COOKIE = "raphael_rater"
MAX_AGE_S = 365 * 24 * 3600

Scope = dict[str, Any]
Message = dict[str, Any]


def rater_token(cookies: Mapping[str, str] | None, tokens: RaterTokens) -> str | None:
    """The rater token of a request's cookies, if present and signed by this server."""
    token = cookies.get(COOKIE) if cookies else None
    return token if tokens.valid(token) else None


def cookie_header(token: str, https: bool = False) -> str:
    """The Set-Cookie value that hands ``token`` to a browser; ``https``: sent back over HTTPS only."""
    return f"{COOKIE}={token}; Max-Age={MAX_AGE_S}; Path=/; HttpOnly; SameSite=Lax{'; Secure' if https else ''}"


def _page_load(connection: HTTPConnection, scope: Scope) -> bool:
    """A browser loading the page (a GET that accepts HTML): the one request that earns a new rater."""
    return scope.get("method") == "GET" and "text/html" in connection.headers.get("accept", "")


class RaterCookieMiddleware:
    """Pure ASGI middleware: a page load without a valid rater cookie gets a newly signed one."""

    def __init__(self, app: Callable[..., Awaitable[None]], tokens: RaterTokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Callable, send: Callable[[Message], Awaitable[None]]) -> None:
        connection = HTTPConnection(scope) if scope["type"] == "http" else None
        if connection is None or not _page_load(connection, scope) or rater_token(connection.cookies, self.tokens):
            await self.app(scope, receive, send)
            return
        client = connection.client
        try:
            token = self.tokens.issue(client.host if client else None)
            cookie = cookie_header(token, https=scope.get("scheme") == "https").encode()
        except InvalidInput as err:  # the page still loads; its votes ask for a reload later
            log.info("no rater cookie for a page load: %s", err)
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)
