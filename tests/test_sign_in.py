"""Optional sign-in: a Space's OAuth session names the rater's account; without it every rater is anonymous."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from gradio_client import Client
from itsdangerous import TimestampSigner
from sqlalchemy import select

from app.rater_cookie import COOKIE
from app.served import ServedApp, ServerError
from app.sign_in import check_sign_in_available, signed_in_account
from app.vote_route import VOTE_PATH
from feedback.models import Rater
from feedback.store import FeedbackError, FeedbackStore
from tests.fixtures.app_server import ADMIN_KEY
from tests.test_store import provenance, solid

SPACE = {
    "SYSTEM": "spaces",
    "SPACE_ID": "raphael/demo",
    "OAUTH_CLIENT_ID": "client-id",
    "OAUTH_CLIENT_SECRET": "client-secret",
    "OAUTH_SCOPES": "openid profile",
    "OPENID_PROVIDER_URL": "https://huggingface.co",  # read only when someone signs in, never at start-up
}


def oauth_info(username: str, expires_in: float = 3600) -> dict:
    """What Gradio's OAuth callback keeps in the session after a sign-in."""
    return {"expires_at": time.time() + expires_in, "userinfo": {"preferred_username": username, "name": username}}


def request_with(session: dict | None) -> SimpleNamespace:
    """A gr.Request-like object whose Starlette scope carries ``session`` (None: no session middleware)."""
    scope = {"type": "http"} if session is None else {"type": "http", "session": session}
    return SimpleNamespace(request=SimpleNamespace(scope=scope))


def test_the_account_comes_from_a_valid_oauth_session() -> None:
    assert signed_in_account(request_with({"oauth_info": oauth_info("alice")})) == "hf:alice"
    assert signed_in_account(request_with({"oauth_info": oauth_info("alice", expires_in=-1)})) is None
    assert signed_in_account(request_with({})) is None
    assert signed_in_account(request_with(None)) is None  # no sign-in offered: no session at all
    assert signed_in_account(request_with({"oauth_info": {"userinfo": {"preferred_username": ""}}})) is None
    assert signed_in_account(None) is None


def test_sign_in_is_refused_outside_a_space(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SPACE:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match=r"^--sign-in needs a Hugging Face Space .* \(not running on a Space\)\.$"):
        check_sign_in_available()
    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.setenv("SPACE_ID", "raphael/demo")
    with pytest.raises(ValueError, match="missing OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_SCOPES, OPENID_PROVID"):
        check_sign_in_available()
    for name, value in SPACE.items():
        monkeypatch.setenv(name, value)
    check_sign_in_available()


def accounts(store: FeedbackStore) -> dict[str, str | None]:
    with store._engine.connect() as connection:
        return dict(connection.execute(select(Rater.anon_id, Rater.account)).all())


def test_the_store_keeps_the_latest_account_of_a_rater(store: FeedbackStore) -> None:
    anonymous = store.rater("browser-1")
    assert store.rater("browser-1", account="hf:alice") == anonymous  # signing in keeps the rater and its votes
    assert store.rater("browser-1") == anonymous and accounts(store)["browser-1"] == "hf:alice"  # stays signed
    store.rater("browser-1", account="hf:bob")
    store.rater("browser-2", account="hf:alice")
    assert accounts(store) == {"browser-1": "hf:bob", "browser-2": "hf:alice"}
    with pytest.raises(FeedbackError, match="account name is empty or too long"):
        store.rater("browser-3", account="hf:" + "x" * 200)


def session_cookie(session: dict) -> str:
    """The cookie Starlette's SessionMiddleware reads, signed with the key Gradio derives from the OAuth secret."""
    key = hashlib.sha256((SPACE["OAUTH_CLIENT_SECRET"] + "-v4").encode()).hexdigest()
    return TimestampSigner(key).sign(base64.b64encode(json.dumps(session).encode())).decode()


@pytest.fixture(scope="module")
def space_server(tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """The demo as a Space with OAuth and --sign-in; its URL, SQLite URL and image folder."""
    state = tmp_path_factory.mktemp("space")
    db_url, images = f"sqlite:///{state / 'feedback.db'}", state / "images"
    args = ["--model", str(tiny_sd_dir), "--db", db_url, "--image-dir", str(images), "--device", "cpu", "--sign-in"]
    env = {**SPACE, "RAPHAEL_TORCH_THREADS": "1", "GRADIO_TEMP_DIR": str(state / "gradio")}
    env |= {"RAPHAEL_ADMIN_KEY": ADMIN_KEY, "RAPHAEL_NEW_RATERS_PER_HOUR": "1000"}
    served = ServedApp(args, state / "app.log", env)
    try:
        url = served.__enter__()
    except ServerError as err:
        pytest.fail(str(err))
    try:
        yield url, db_url, images
    finally:
        served.stop()


@pytest.mark.slow
def test_a_signed_in_rater_is_stored_with_the_account(space_server: tuple[str, str, Path]) -> None:
    """Through the served Space: the sign-in button is on the page, a vote with Gradio's OAuth session (the light
    route and the queued /vote alike) stores the account, an anonymous vote still counts, without an account."""
    url, db_url, images = space_server
    page = httpx.get(url, headers={"Accept": "text/html"}, timeout=60)
    assert page.status_code == 200 and "login" in httpx.get(f"{url}/config", timeout=60).text.lower()
    token = lambda: Client(url, verbose=False).predict(api_name="/rater_token")["token"]  # noqa: E731
    with FeedbackStore(db_url, images) as store:
        owner = store.rater("image-owner")
        image = store.record_generation(owner, provenance(), [solid("red")]).image_ids[0]
        alice, bob, anonymous = token(), token(), token()
        alice_session = session_cookie({"oauth_info": oauth_info("alice")})
        vote = {"image_id": image, "value": 1}
        answer = httpx.post(f"{url}{VOTE_PATH}", json=vote, cookies={COOKIE: alice, "session": alice_session})
        assert answer.status_code == 200, answer.text
        bob_session = session_cookie({"oauth_info": oauth_info("bob")})
        queued = Client(url, verbose=False, headers={"Cookie": f"{COOKIE}={bob}; session={bob_session}"})
        assert queued.predict(image, -1, "", api_name="/vote")["value"] == -1
        answer = httpx.post(f"{url}{VOTE_PATH}", json=vote, cookies={COOKIE: anonymous})
        assert answer.status_code == 200, answer.text
        by_account = sorted(a for a in accounts(store).values() if a)
        votes = {vote.rater_id: vote.value for vote in store.preference_rows().votes}
    assert by_account == ["hf:alice", "hf:bob"] and len(votes) == 3 and sorted(votes.values()) == [-1, 1, 1]


def test_the_space_variables_do_not_leak_into_other_tests() -> None:
    assert os.environ.get("OAUTH_CLIENT_SECRET") != SPACE["OAUTH_CLIENT_SECRET"]
