"""Caps on request bodies, and a check of the JSON that calls the app's functions, before Gradio reads either.

Gradio reads any body whole: a 50 MB POST was accepted and copied into the log, and a malformed call reached
Gradio's handlers, which answered with a 500 and a traceback, or a 422 that repeats the input. ``RequestLimits``
refuses an oversized body with 413 before the app sees it: at once when its Content-Length says so, else as soon
as the bytes read pass the cap. It reads the (small) bodies of the function-calling routes, checks that each is a
UTF-8 JSON object with the fields the route needs and that the endpoint it names exists, answers 400 or 404 with
one sentence that names the field and never repeats the input, and otherwise replays the body unchanged.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from gradio.block_function import BlockFunction
from gradio.blocks import Blocks
from gradio.routes import App
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

KIB = 1024
MIB = 1024 * KIB
MAX_BODY_BYTES = 256 * KIB  # a call's JSON: prompts of at most a few hundred characters and a few settings
MAX_UPLOAD_BYTES = 1 * MIB  # Gradio's upload route: no input of this app takes a file, so only small ones pass

UPLOAD_ROUTE = "/gradio_api/upload"
# Gradio's routes that call a function with a JSON body (gradio/routes.py): the browser's queue, the named
# endpoints with a "data" list (call, run and its old name api) and call/v2 with the inputs by name.
_CALL_ROUTE = re.compile(
    r"/gradio_api/(?:(?P<join>queue/join)|call/v2/(?P<v2>[^/]+)/?|call/(?P<call>[^/]+)/?|(?:run|api)/(?P<run>[^/]+)/?)"
)
_ROUTE_NAMES = {
    "join": "/gradio_api/queue/join",
    "v2": "/gradio_api/call/v2/{api_name}",
    "call": "/gradio_api/call/{api_name}",
    "run": "/gradio_api/run/{api_name}",
}

# The optional fields of Gradio's request models (PredictBody, SimplePredictBody) and what each must hold, so a
# wrong type gets a sentence here rather than a 422 that repeats the value.
_TEXT, _INTEGER, _BOOLEAN = (str, "a string"), (int, "an integer"), (bool, "true or false")
_PREDICT_FIELDS = {
    "session_hash": _TEXT,
    "event_id": _TEXT,
    "oauth_token": _TEXT,
    "fn_index": _INTEGER,
    "trigger_id": _INTEGER,
    "batched": _BOOLEAN,
    "simple_format": _BOOLEAN,
}
_SIMPLE_FIELDS = {"session_hash": _TEXT, "oauth_token": _TEXT}
_NOT_NULL = {"simple_format"}
_NEEDS_DATA = 'The request body needs a "data" list of the endpoint\'s inputs.'
_NOT_JSON = "The request body must be JSON encoded as UTF-8."


class _Refusal(Exception):
    """A request answered here: its status and the one sentence that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def size_text(n_bytes: int) -> str:
    """A limit in the largest binary unit that states it exactly, for messages."""
    for unit, size in (("MiB", MIB), ("KiB", KIB)):
        if n_bytes >= size and n_bytes % size == 0:
            return f"{n_bytes // size} {unit}"
    return f"{n_bytes} bytes"


def _route_path(scope: Scope) -> str:
    """The path as Starlette's router matches it: without the root path a mount or a proxy prefix adds."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, read only until it passes ``limit``; raises ClientDisconnect if the client leaves."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body += message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the app the buffered body, then the client's own messages (its disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _too_large(limit: int) -> _Refusal:
    return _Refusal(413, f"The request body is larger than {size_text(limit)}, the limit of this server.")


def _json_object(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The body as a JSON object, parsed as FastAPI will (which reads bodies of other types as raw bytes)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise _Refusal(415, 'The request needs the header "Content-Type: application/json".')
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Refusal(400, _NOT_JSON) from None
    if not isinstance(parsed, dict):
        raise _Refusal(400, "The request body must be a JSON object.")
    return parsed


def _check_fields(body: dict[str, Any], fields: dict[str, tuple[type, str]]) -> None:
    for field, (kind, text) in fields.items():
        if field not in body or (body[field] is None and field not in _NOT_NULL):
            continue
        if not isinstance(body[field], kind):
            raise _Refusal(400, f'The request body\'s "{field}" must be {text}.')


def _open_app(scope: Scope) -> App | None:
    """The Gradio app, unless it has a login: its endpoints are not named to a caller not yet logged in."""
    app = scope.get("app")
    if isinstance(app, App) and app.auth is None and app.auth_dependency is None:
        return app
    return None


def _functions(blocks: Blocks, session_hash: object) -> dict[int, BlockFunction]:
    """The functions Gradio's get_fn looks in: the session's (gr.render may add some), else the app's."""
    if isinstance(session_hash, str) and session_hash in blocks.state_holder:
        return blocks.state_holder[session_hash].blocks_config.fns
    return blocks.fns


def _check_data_call(route: str, api_name: str | None, body: dict[str, Any], app: App | None) -> None:
    """A call with a "data" list: the list, the typed fields, the function it names and one value per input."""
    if not isinstance(body.get("data"), list):
        raise _Refusal(400, _NEEDS_DATA)
    _check_fields(body, _SIMPLE_FIELDS if route == "call" else _PREDICT_FIELDS)
    if app is None:
        return
    fns = _functions(app.get_blocks(), body.get("session_hash"))
    fn_index = body.get("fn_index") if route != "call" else None
    if fn_index is not None:
        fn = fns.get(fn_index)
        if fn is None:
            raise _Refusal(400, 'The request body\'s "fn_index" names no function of this app.')
    elif api_name is not None:
        fn = next((fn for fn in fns.values() if fn.api_name == api_name), None)
        if fn is None:
            raise _Refusal(404, "This server has no API endpoint of that name.")
    else:
        return  # the queue without fn_index: Gradio answers 400 itself
    needed = len(fn.inputs)
    if route == "call":  # Gradio fills in the inputs the API does not show (gr.State) when only the others come
        shown = sum(not block.skip_api for block in fn.inputs)
        if len(body["data"]) == shown:
            return
        needed = shown
    if len(body["data"]) != len(fn.inputs):  # too few fail inside Gradio; extra ones would be dropped unsaid
        values = "value" if needed == 1 else "values"
        raise _Refusal(400, f'The request body\'s "data" list needs {needed} {values}, one for each of the inputs.')


def _check_named_call(api_name: str, body: dict[str, Any], app: App | None) -> None:
    """A call/v2 call: the endpoint's inputs by name, as Gradio's API page lists them."""
    _check_fields(body, {"oauth_token": _TEXT})
    if app is None:
        return
    endpoint = (app.api_info or app.get_blocks().get_api_info())["named_endpoints"].get(f"/{api_name}")
    if endpoint is None:
        raise _Refusal(404, "This server has no API endpoint of that name.")
    names = [parameter.get("parameter_name") for parameter in endpoint["parameters"]]
    if "data" in body and "data" not in names:
        raise _Refusal(400, 'The request body of call/v2 takes the endpoint\'s inputs by name, not a "data" list.')
    if any(key not in names and key != "oauth_token" for key in body):
        known = ", ".join(f'"{name}"' for name in names if name) or "none"
        raise _Refusal(400, f"The request body names an input this endpoint does not take (its inputs: {known}).")
    for parameter, name in zip(endpoint["parameters"], names):
        if not parameter.get("parameter_has_default") and name not in body:
            label = name or parameter.get("label")
            raise _Refusal(400, f'The request body needs a value for the endpoint\'s input "{label}".')


async def _checked_receive(scope: Scope, receive: Receive, limit: int, call: re.Match[str] | None) -> Receive:
    """What the app reads: the client's own receive when the body's length is declared and the route needs no
    check (the server delivers no more than that length), else the body read here, checked and replayed."""
    headers = Headers(scope=scope)
    declared = headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > limit:
        raise _too_large(limit)
    if call is None and declared.isdecimal():
        return receive
    body = await _read_body(receive, limit)
    if call is not None:
        parsed = _json_object(body, headers.get("content-type"))
        app = _open_app(scope)
        if call["v2"] is not None:
            _check_named_call(call["v2"], parsed, app)
        else:
            _check_data_call(call.lastgroup or "", call["call"] or call["run"], parsed, app)
    return _replay(body, receive)


class RequestLimits:
    """Pure ASGI middleware: body caps on every HTTP request, and checked bodies for Gradio's function calls."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES, max_upload_bytes: int = MAX_UPLOAD_BYTES
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        upload = scope["method"] == "POST" and path == UPLOAD_ROUTE
        call = _CALL_ROUTE.fullmatch(path) if scope["method"] == "POST" else None
        try:
            app_receive = await _checked_receive(
                scope, receive, self.max_upload_bytes if upload else self.max_body_bytes, call
            )
        except ClientDisconnect:
            return
        except _Refusal as refusal:
            # The route's template, not the path: the path is the client's text.
            route = _ROUTE_NAMES[call.lastgroup or ""] if call else UPLOAD_ROUTE if upload else "another route"
            logger.info("Refused %s %s with %d: %s", scope["method"], route, refusal.status, refusal.message)
            await JSONResponse({"detail": refusal.message}, status_code=refusal.status)(scope, receive, send)
            return
        await self.app(scope, app_receive, send)
