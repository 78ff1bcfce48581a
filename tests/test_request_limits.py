"""RequestLimits: body caps and checked function calls, on a tiny Starlette app and on a real Gradio server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import gradio as gr
import httpx
import pytest
from gradio_client import Client
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from app.request_limits import MAX_BODY_BYTES, RequestLimits, size_text
from app.served import free_port

JSON = {"content-type": "application/json"}
TOO_LARGE = "The request body is larger than {}, the limit of this server."
NOT_JSON = "The request body must be JSON encoded as UTF-8."
NEEDS_DATA = 'The request body needs a "data" list of the endpoint\'s inputs.'


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


ECHO_ROUTES = ["/echo", "/gradio_api/upload", "/gradio_api/call/{api_name}"]
STARLETTE = Starlette(
    routes=[Route(path, echo, methods=["POST"]) for path in ECHO_ROUTES],
    middleware=[Middleware(RequestLimits, max_body_bytes=1024, max_upload_bytes=4096)],
)


class Chunks:
    """A body sent in chunks, counting the chunks the server asked for."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size, self.sent = count, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.sent += 1
            yield b"x" * self.size


T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: in the full suite the browser tests' Playwright keeps an event loop
    running in the main thread, where asyncio.run refuses to start another."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def post(
    path: str, content: bytes | Chunks, headers: dict[str, str] | None = None, root_path: str = ""
) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=STARLETTE, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, content=content, headers=headers)

    return run(send())


def detail(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    return response.json()["detail"]


def test_a_declared_length_over_the_cap_is_refused_unread() -> None:
    body = Chunks(100, 1024)
    response = post("/echo", body, {"content-length": str(100 * 1024)})
    assert response.status_code == 413 and detail(response) == TOO_LARGE.format("1 KiB")
    assert body.sent == 0


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_cap() -> None:
    body = Chunks(1000, 512)
    response = post("/echo", body)
    assert response.status_code == 413 and detail(response) == TOO_LARGE.format("1 KiB")
    assert body.sent == 3  # 1536 bytes: the first read past 1024


def test_bodies_within_the_cap_reach_the_app_unchanged() -> None:
    assert post("/echo", Chunks(2, 512)).content == b"x" * 1024
    assert post("/echo", b"y" * 1024).content == b"y" * 1024


def test_the_upload_route_has_its_own_cap_also_under_a_root_path() -> None:
    assert post("/gradio_api/upload", b"z" * 4096).status_code == 200
    assert post("/prefix/gradio_api/upload", Chunks(8, 512), root_path="/prefix").content == b"x" * 4096
    response = post("/prefix/gradio_api/upload", Chunks(9, 512), root_path="/prefix")
    assert response.status_code == 413 and detail(response) == TOO_LARGE.format("4 KiB")
    assert post("/echo", b"z" * 4096).status_code == 413


def test_a_call_body_must_be_a_utf8_json_object_with_a_data_list() -> None:
    cases = {
        b"\xff\xfe{}": NOT_JSON,
        b"": NOT_JSON,
        b"{" * 1000: NOT_JSON,
        b"[]": "The request body must be a JSON object.",
        b"{}": NEEDS_DATA,
        b'{"data": "text"}': NEEDS_DATA,
        b'{"data": [], "session_hash": 5}': 'The request body\'s "session_hash" must be a string.',
        b'{"data": [], "oauth_token": []}': 'The request body\'s "oauth_token" must be a string.',
    }
    for body, message in cases.items():
        response = post("/gradio_api/call/vote", body, JSON)
        assert (response.status_code, detail(response)) == (400, message), body[:20]
    for content_type in ({"content-type": "text/plain"}, {}):  # without one, FastAPI would read bytes, echo them
        response = post("/gradio_api/call/vote", b'{"data": []}', content_type)
        assert response.status_code == 415 and "Content-Type: application/json" in detail(response)
    body = b'{ "data" : ["a", true],\n "session_hash": null, "fn_index": "not a field of this route" }'
    assert post("/gradio_api/call/vote", body, JSON).content == body
    assert post("/gradio_api/call/vote", Chunks(1, 1000), JSON).status_code == 400


async def asgi(scope: Scope, messages: list[Message]) -> tuple[list[Message], list[Scope]]:
    """Run the middleware over one ASGI call: what it sent and the scopes its app saw."""
    seen: list[Scope] = []
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await RequestLimits(app)(scope, receive, send)
    return sent, seen


def test_a_client_that_leaves_mid_body_gets_nothing_and_other_scopes_pass() -> None:
    scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "headers": []}
    messages = [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    assert run(asgi(scope, messages)) == ([], [])
    for kind in ("lifespan", "websocket"):
        assert run(asgi({"type": kind, "path": "/"}, [])) == ([], [{"type": kind, "path": "/"}])


def test_limits_are_stated_in_exact_units() -> None:
    assert [size_text(n) for n in (MAX_BODY_BYTES, 10 * 2**20, 1000, 1536)] == [
        "256 KiB",
        "10 MiB",
        "1000 bytes",
        "1536 bytes",
    ]


UPLOAD_CAP = 64 * 1024


def vote(prompt: str, up: bool) -> str:
    return f"{prompt}:{up}"


@pytest.fixture(scope="module")
def gradio_url() -> Iterator[str]:
    with gr.Blocks() as demo:
        gr.api(vote, api_name="vote")
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        app_kwargs={"middleware": [Middleware(RequestLimits, max_upload_bytes=UPLOAD_CAP)]},
    )
    yield f"http://127.0.0.1:{port}"
    demo.close()


def test_gradio_answers_a_huge_declared_body_at_once_without_reading_or_holding_it(
    gradio_url: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    body = b'{"data": ["' + b"MARKER" * (50_000_000 // 6) + b'", true]}'
    head = "POST /gradio_api/call/vote HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", int(gradio_url.rsplit(":", 1)[1])), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(head.encode() + body[: 64 * 1024])
        status = sock.recv(4096).split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 413 ") and time.monotonic() - started < 5
        tracemalloc.start()
        try:
            sock.sendall(memoryview(body)[64 * 1024 :])  # the server drains and drops the rest
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 8 * 2**20
    response = httpx.post(f"{gradio_url}/gradio_api/call/vote", content=body, headers=JSON, timeout=60)
    assert response.status_code == 413 and detail(response) == TOO_LARGE.format("256 KiB")
    chunked = httpx.post(f"{gradio_url}/gradio_api/run/vote", content=iter([body[:300_000]]), headers=JSON)
    assert chunked.status_code == 413
    bad = httpx.post(f"{gradio_url}/gradio_api/run/vote", content=b"\xffMARKER" * 100, headers=JSON)
    assert bad.status_code == 400 and detail(bad) == NOT_JSON
    logged = caplog.text + "".join(capfd.readouterr())
    assert "Refused POST /gradio_api/call/{api_name} with 413" in logged and "MARKER" not in logged


def test_gradio_calls_that_gradio_would_answer_with_500_or_422_get_one_sentence(gradio_url: str) -> None:
    api = f"{gradio_url}/gradio_api"
    cases = {
        ("call/v2/vote", "{}"): (400, 'The request body needs a value for the endpoint\'s input "prompt".'),
        ("call/v2/vote", '{"prompt": "a"}'): (400, 'The request body needs a value for the endpoint\'s input "up".'),
        ("call/v2/vote", '{"data": ["a", true]}'): (
            400,
            'The request body of call/v2 takes the endpoint\'s inputs by name, not a "data" list.',
        ),
        ("call/v2/vote", '{"prompt": "a", "up": true, "other": 1}'): (
            400,
            'The request body names an input this endpoint does not take (its inputs: "prompt", "up").',
        ),
        ("call/v2/nope", "{}"): (404, "This server has no API endpoint of that name."),
        ("call/vote", "{}"): (400, NEEDS_DATA),
        ("call/vote", "[" * 100_000 + "]" * 100_000): (400, NOT_JSON),  # deep enough to overflow a recursive parser
        ("call/nope/", '{"data": []}'): (404, "This server has no API endpoint of that name."),
        ("run/nope", '{"data": []}'): (404, "This server has no API endpoint of that name."),
        ("run/vote", '{"data": ["a", true, "an extra value"]}'): (
            400,
            'The request body\'s "data" list needs 2 values, one for each of the inputs.',
        ),
        ("run/vote", '{"data": ["a"]}'): (
            400,
            'The request body\'s "data" list needs 2 values, one for each of the inputs.',
        ),
        ("queue/join", '{"data": ["a", true], "session_hash": "s", "fn_index": 99}'): (
            400,
            'The request body\'s "fn_index" names no function of this app.',
        ),
        ("queue/join", '{"data": ["a", true], "session_hash": "s", "trigger_id": "x"}'): (
            400,
            'The request body\'s "trigger_id" must be an integer.',
        ),
    }
    for (route, body), expected in cases.items():
        response = httpx.post(f"{api}/{route}", content=body, headers=JSON)
        assert (response.status_code, detail(response)) == expected, route


def test_gradio_still_serves_good_calls_and_uploads_under_the_cap(gradio_url: str) -> None:
    api = f"{gradio_url}/gradio_api"
    assert Client(gradio_url, verbose=False).predict("a", True, api_name="/vote") == "a:True"
    assert httpx.post(f"{api}/run/vote", json={"data": ["b", False]}).json()["data"] == ["b:False"]
    assert "event_id" in httpx.post(f"{api}/call/v2/vote", json={"prompt": "c", "up": True}).json()
    assert "event_id" in httpx.post(f"{api}/call/vote", json={"data": ["d", True]}).json()
    small = httpx.post(f"{api}/upload", files={"files": ("small.txt", b"s" * (UPLOAD_CAP // 2))})
    assert small.status_code == 200 and json.loads(small.text)[0].endswith("small.txt")
    large = httpx.post(f"{api}/upload", files={"files": ("large.txt", b"l" * UPLOAD_CAP)})
    assert large.status_code == 413 and detail(large) == TOO_LARGE.format("64 KiB")
