"""The rater cookie: a signed token set once per browser on a page load, kept when valid, never one a client made."""

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from app.guard import InvalidInput
from app.rater_cookie import COOKIE, RaterCookieMiddleware, rater_token
from app.rater_tokens import RaterTokens

PAGE = {"accept": "text/html,application/xhtml+xml"}


def client(tokens: RaterTokens, base_url: str = "http://testserver") -> TestClient:
    def echo(request):
        return PlainTextResponse(str(rater_token(request.cookies, tokens)))

    app = Starlette(routes=[Route("/", echo)], middleware=[Middleware(RaterCookieMiddleware, tokens=tokens)])
    return TestClient(app, base_url=base_url)


def test_a_page_load_gets_a_signed_long_lived_http_only_cookie() -> None:
    tokens = RaterTokens(b"secret", per_ip_per_hour=10)
    response = client(tokens).get("/", headers=PAGE)
    header = response.headers["set-cookie"]
    assert header.startswith(f"{COOKIE}=") and "HttpOnly" in header and "SameSite=Lax" in header
    assert "Max-Age=31536000" in header and "Path=/" in header
    assert tokens.valid(response.cookies[COOKIE])
    assert "Secure" not in header  # a browser would drop a Secure cookie sent over plain HTTP
    assert "set-cookie" not in client(tokens).get("/").headers  # an API or asset request mints no rater


def test_over_https_the_cookie_is_secure() -> None:
    """Behind a trusted TLS proxy (X-Forwarded-Proto applied by uvicorn), the cookie never travels in clear."""
    response = client(RaterTokens(b"secret", per_ip_per_hour=10), "https://testserver").get("/", headers=PAGE)
    assert response.headers["set-cookie"].endswith("; Secure")


def test_a_valid_cookie_is_kept_and_seen_by_the_app() -> None:
    tokens = RaterTokens(b"secret", per_ip_per_hour=10)
    token = tokens.issue("10.0.0.1")
    response = client(tokens).get("/", headers={**PAGE, "cookie": f"other=1; {COOKIE}={token}"})
    assert "set-cookie" not in response.headers
    assert response.text == token


def test_made_up_forged_and_foreign_tokens_are_not_raters() -> None:
    tokens = RaterTokens(b"secret", per_ip_per_hour=10)
    good = tokens.issue("10.0.0.1")
    nonce, signature = good.split(".")
    forged = [
        "A" * 43,  # the old unsigned shape
        f"{nonce}.{'A' * 43}",
        f"{'B' * 32}.{signature}",
        RaterTokens(b"another install", per_ip_per_hour=10).issue("10.0.0.1"),
        good + "x",
        "é" * 76,
        None,
        42,
    ]
    assert not any(tokens.valid(token) for token in forged)
    assert rater_token({COOKIE: forged[0]}, tokens) is None and rater_token(None, tokens) is None
    response = client(tokens).get("/", headers={**PAGE, "cookie": f"{COOKIE}={forged[1]}"})
    assert tokens.valid(response.cookies[COOKIE]) and response.text == "None"


def test_new_raters_are_limited_per_address() -> None:
    tokens = RaterTokens(b"secret", per_ip_per_hour=3)
    issued = {tokens.issue("10.0.0.1") for _ in range(3)}
    assert len(issued) == 3 and all(tokens.valid(token) for token in issued)
    with pytest.raises(InvalidInput, match="Too many new raters came from your network"):
        tokens.issue("10.0.0.1")
    assert tokens.valid(tokens.issue("10.0.0.2"))  # another address is not held back


def test_a_page_load_over_the_limit_still_loads_without_a_cookie() -> None:
    tokens = RaterTokens(b"secret", per_ip_per_hour=1)
    browser = client(tokens)  # TestClient's address is "testclient"
    assert "set-cookie" in browser.get("/", headers=PAGE).headers
    browser.cookies.clear()
    response = browser.get("/", headers=PAGE)
    assert response.status_code == 200 and "set-cookie" not in response.headers
