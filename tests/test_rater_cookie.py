"""The rater cookie: set once per browser, kept when valid, replaced when forged or malformed."""

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from app.rater_cookie import COOKIE, RaterCookieMiddleware, rater_token


def echo(request):
    return PlainTextResponse(str(rater_token(request.cookies)))


def client() -> TestClient:
    app = Starlette(routes=[Route("/", echo)], middleware=[Middleware(RaterCookieMiddleware)])
    return TestClient(app)


def test_a_new_browser_gets_a_long_lived_http_only_cookie() -> None:
    response = client().get("/")
    header = response.headers["set-cookie"]
    assert header.startswith(f"{COOKIE}=") and "HttpOnly" in header and "SameSite=Lax" in header
    assert "Max-Age=31536000" in header and "Path=/" in header
    assert rater_token({COOKIE: response.cookies[COOKIE]}) is not None


def test_a_valid_cookie_is_kept_and_seen_by_the_app() -> None:
    token = "A" * 43
    response = client().get("/", headers={"cookie": f"other=1; {COOKIE}={token}"})
    assert "set-cookie" not in response.headers
    assert response.text == token


def test_a_malformed_cookie_is_replaced() -> None:
    for bad in ("short", "x" * 65, "a" * 40 + ";drop", "é" * 40):
        assert rater_token({COOKIE: bad}) is None
    response = client().get("/", headers={"cookie": f"{COOKIE}=short"})
    assert response.headers["set-cookie"].startswith(f"{COOKIE}=")
    assert response.text == "None"
    assert rater_token(None) is None and rater_token({}) is None
