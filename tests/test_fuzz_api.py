"""Fuzz every public endpoint over raw HTTP: each answer is a result or one clear sentence, never a crash.

gradio_client sends only what Python can serialise and hides both the status and the SSE stream, so these tests
speak HTTP themselves, as a hostile client would: anything JSON can carry (lone surrogates as escapes, integers
past a float's range, NaN, nesting, control characters, markup, long text) or no JSON at all. The endpoints come
from ``/gradio_api/info``, so a new one is fuzzed without a change here. ``RAPHAEL_FUZZ_EXAMPLES`` sets how many
random inputs one run sends (split over the endpoints by weight), beside a fixed sweep of edge values through every
input (some 650 calls). Each call costs the server some 45 ms of CPU in Gradio's queue; the default, 10,000 inputs,
is what CI's slow tier runs (lower it for a quick local look).
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.rater_cookie import COOKIE
from feedback.models import COMPARISON_OUTCOMES
from tests.fixtures.app_server import ADMIN_KEY, AppServer

pytestmark = pytest.mark.slow

FUZZ_EXAMPLES = int(os.environ.get("RAPHAEL_FUZZ_EXAMPLES", "10000"))
# Shares of FUZZ_EXAMPLES. Unlisted (new) endpoints get DEFAULT_WEIGHT. Each /rater_token call mints a rater, and
# new raters are limited per address per hour for the whole test session, so it gets a fixed few.
WEIGHTS = {
    "/vote": 3.0,
    "/compare": 2.5,
    "/arena_vote": 2.0,
    "/enhance": 2.5,
    "/generate": 2.0,
    "/arena": 1.0,
    "/dashboard": 1.0,
    "/leaderboard": 0.5,
}
DEFAULT_WEIGHT = 1.0
RATER_TOKEN_EXAMPLES = 10
BODY_SHARE = 0.15  # of FUZZ_EXAMPLES, for malformed bodies
RUN_ROUTE_EXAMPLES = 100
ECHO_MIN_CHARS = 13  # a raw string this long must not come back inside an error: it may be anything
TIMEOUT = httpx.Timeout(120.0, connect=10.0)  # a generation may wait behind this client's own earlier one
SETTINGS = {
    "deadline": None,
    "derandomize": True,  # the same inputs every run, so a failure in CI reproduces on a laptop
    "database": None,
    "print_blob": False,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
}
FORGED = "A" * 32 + "." + "B" * 43  # the shape of a rater token, without this server's signature
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Exception)\b")


# ---- what is sent -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request: the route, the body's bytes and type, the rater cookie, and the strings an error must not echo."""

    route: str
    body: bytes
    content_type: str | None = "application/json"
    cookie: str | None = None
    raws: tuple[str, ...] = ()

    def __repr__(self) -> str:  # what hypothesis prints as the falsifying example
        body = self.body if len(self.body) <= 600 else self.body[:600] + b"...(%d bytes)" % len(self.body)
        cookie = "none" if self.cookie is None else "forged" if self.cookie == FORGED else f"{self.cookie[:8]}..."
        return f"Call(POST {self.route}, content_type={self.content_type!r}, cookie={cookie}, body={body!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def encode(value: Any) -> bytes:
    """JSON as a hostile client may write it: lone surrogates as \\u escapes, NaN and Infinity allowed."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside a JSON value, dict keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)


NASTY_STRINGS = [
    "",
    " ",
    "\ud800",
    "a\udfffb",
    "\x00",
    "tab\tnew\nline\r\x1b[31mred\x7f",
    "<script>alert('fuzz')</script>",
    "<img src=x onerror=alert(1)>",
    "'; DROP TABLE votes; --",
    "{{7*7}} ${7*7} %s %n %(x)s",
    "../../../../etc/passwd",
    "\u202etxt.exe",
    "null",
    "NaN",
    "-1",
    "1e400",
    "Traceback (most recent call last):",
    "😀" * 40,
    "三只猫在红色背景上",
    "ｆｕｌｌｗｉｄｔｈ",
]
characters = st.one_of(
    st.characters(codec="utf-8"),
    st.characters(categories=["Cs"]),  # lone surrogates: JSON carries them, UTF-8 cannot
    st.characters(categories=["Cc"]),
)
texts = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.text(characters, max_size=40),
    st.builds(lambda char, n: char * n, st.sampled_from(["x", "é", "\ud800", "<", "猫"]), st.integers(0, 6000)),
    st.builds(lambda n: "y" * n, st.sampled_from([1000, 1001, 100_000, 300_000])),  # past the 256 KiB body cap too
)
EDGE_NUMBERS = [2**31, 2**32, 2**53 + 1, 2**63, 2**64, 10**308, 10**309, -(10**309), 0.5, -0.0, 1e-320, 1.5e308]
numbers = st.one_of(
    st.integers(-3, 10),
    st.sampled_from(EDGE_NUMBERS),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),  # past a float's range, as JSON allows
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, numbers, texts)  # numbers twice: most inputs are numeric
# One of these in place of one valid input is where a check most often slips, so every call may try one.
EDGE_VALUES = [
    *[None, True, False, 0, -1, 1.5, float("nan"), float("inf"), float("-inf"), "1", "", " ", "\ud800", "\x00"],
    *[2**63, 10**308, 10**309, -(10**309), 1e-320, "<script>alert('fuzz')</script>", "x" * 1001, [], {}, [[]]],
]
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(characters, max_size=8), inner, max_size=4),
    max_leaves=8,
)


@dataclass
class Primed:
    """Server state worth aiming at: rater tokens, images and arena battles that exist."""

    tokens: list[str]
    image_ids: list[str]
    battle_ids: list[int]


def valid_value(parameter: dict[str, Any], primed: Primed) -> st.SearchStrategy[Any]:
    """Values a well-behaved client would send, small enough that a valid generation runs in a blink."""
    name, schema = parameter.get("parameter_name") or "", parameter.get("type") or {}
    prompts = st.sampled_from(["two cats on a red background", "a dog", "三只猫", "a cat, pixel art"])
    known: dict[str, st.SearchStrategy[Any]] = {
        "prompt": prompts | st.text(characters, min_size=1, max_size=20),
        "enhanced_prompt": st.sampled_from(["", "a cat on a blue background"]),
        "negative_prompt": st.sampled_from(["", "blurry"]),
        "steps": st.integers(1, 3),
        "num_images": st.just(1),
        "best_of": st.integers(1, 2),
        "cfg": st.integers(1, 10) | st.floats(1.0, 10.0),
        "seed": st.integers(-1, 2**32 - 1),
        "image_id": st.sampled_from(primed.image_ids),
        "left_image_id": st.sampled_from(primed.image_ids),
        "right_image_id": st.sampled_from(primed.image_ids),
        "value": st.sampled_from([1, -1, 0]),
        "comment": st.sampled_from(["", "too blurry"]) | st.text(characters, max_size=20),
        "battle_id": st.sampled_from(primed.battle_ids) | st.integers(1, 100),
        "outcome": st.sampled_from(COMPARISON_OUTCOMES),
        "admin_key": st.sampled_from(["", ADMIN_KEY, "not the key"]),
    }
    if name in known:
        return known[name]
    if schema.get("enum"):
        return st.sampled_from(schema["enum"])
    by_type: dict[str, st.SearchStrategy[Any]] = {
        "string": st.text(characters, max_size=20),
        "integer": st.integers(-2, 10),
        "number": st.integers(-2, 10) | st.floats(-2.0, 10.0),
        "boolean": st.booleans(),
    }
    return by_type.get(schema.get("type", ""), junk)


def plain_value(parameter: dict[str, Any], primed: Primed) -> Any:
    """One valid input: the rest of a call whose other input is an edge value."""
    name, schema = parameter.get("parameter_name") or "", parameter.get("type") or {}
    known = {
        **{"prompt": "two cats", "enhanced_prompt": "", "negative_prompt": "", "steps": 1, "num_images": 1},
        "best_of": 1,
        **{"cfg": 5, "seed": 7, "value": 1, "comment": "", "outcome": "left", "admin_key": ""},
        **{"image_id": primed.image_ids[0], "left_image_id": primed.image_ids[0]},
        **{"right_image_id": primed.image_ids[1], "battle_id": primed.battle_ids[0]},
    }
    if name in known:
        return known[name]
    if schema.get("enum"):
        return schema["enum"][0]
    return {"string": "x", "integer": 1, "number": 1, "boolean": True}.get(schema.get("type", ""))


def edge_sweep(api_name: str, parameters: list[dict[str, Any]], primed: Primed) -> list[Call]:
    """Each input in turn set to each edge value, the others valid: random draws favour simple values, so the
    cases where a check most often slips are sent every run, not by chance."""
    plain, vocabulary, calls = [plain_value(p, primed) for p in parameters], choices_of(parameters), []
    for index in range(len(plain)):
        for edge in EDGE_VALUES:
            values = [*plain[:index], edge, *plain[index + 1 :]]
            raws = tuple(s for s in strings_in(values) if s not in vocabulary)
            calls.append(
                Call(f"/gradio_api/call{api_name}", encode({"data": values}), cookie=primed.tokens[0], raws=raws)
            )
    return calls


def choices_of(parameters: Sequence[dict[str, Any]]) -> set[str]:
    """An endpoint's own vocabulary (its enums, the outcomes): an error may list it back."""
    return {*COMPARISON_OUTCOMES, *(v for p in parameters for v in (p.get("type") or {}).get("enum", []))}


def cookies(primed: Primed) -> st.SearchStrategy[str | None]:
    """Mostly a real rater (several, so the per-rater limits do not swamp the fuzz); sometimes none or a fake."""
    garbage = st.text(st.sampled_from("abcXYZ019-_.=%"), max_size=80)
    return st.one_of(
        st.sampled_from(primed.tokens), st.sampled_from(primed.tokens), st.sampled_from([None, FORGED]), garbage
    )


@st.composite
def endpoint_calls(draw: st.DrawFn, api_name: str, parameters: list[dict[str, Any]], primed: Primed) -> Call:
    """A call of ``api_name``: all inputs valid, one an edge value or junk, or any mix; mostly of the right length."""
    values = [draw(valid_value(p, primed)) for p in parameters]
    mode = draw(st.sampled_from(["valid", "one edge", "one edge", "one junk", "mixed"]))
    if mode in ("one edge", "one junk") and values:
        odd = st.sampled_from(EDGE_VALUES) if mode == "one edge" else junk
        values[draw(st.integers(0, len(values) - 1))] = draw(odd)
    elif mode == "mixed":
        values = [draw(junk) if draw(st.booleans()) else value for value in values]
    length = draw(st.sampled_from([len(values)] * 8 + [len(values) + 1, len(values) - 1, 0]))
    values = (values + draw(st.lists(junk, min_size=2, max_size=2)))[: max(length, 0)]
    vocabulary = choices_of(parameters)
    return Call(
        route=f"/gradio_api/call{api_name}",
        body=encode({"data": values}),
        cookie=draw(cookies(primed)),
        raws=tuple(s for s in strings_in(values) if s not in vocabulary),
    )


PREDICT_FIELDS = ["data", "fn_index", "session_hash", "event_data", "trigger_id", "event_id", "simple_format"]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=latin-1",
    "application/vnd.api+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=fuzz",
    None,
]


def made_up_route(name: str) -> str:
    """call/<name> for any text; a lone surrogate is sent as its (invalid UTF-8) bytes, as a hostile client might."""
    return f"/gradio_api/call/{quote(name, safe='', errors='surrogatepass')}"


@st.composite
def malformed_calls(draw: st.DrawFn, api_names: list[str]) -> Call:
    """A body that is not what the route wants: not JSON, not an object, wrong fields, too deep or too big."""
    names = [name.lstrip("/") for name in api_names]
    route = draw(
        st.sampled_from([f"/gradio_api/call/{name}" for name in names] + ["/gradio_api/queue/join"] * 3)
        | st.text(characters, min_size=1, max_size=20).map(made_up_route)
    )
    kind = draw(st.sampled_from(["object", "not an object", "bytes", "deep", "huge", "digits"]))
    content_type = draw(st.sampled_from(CONTENT_TYPES[:1] * 6 + CONTENT_TYPES[1:]))
    if kind == "bytes":
        body = draw(st.binary(max_size=200) | st.sampled_from([b"", b"{", b'{"data": [}', b"\xff\xfe{}", b"data=1"]))
        return Call(route, body, content_type, raws=(body.decode("utf-8", "ignore"),))
    if kind == "deep":  # written by hand: json.dumps itself would give up at this depth
        depth = draw(st.integers(1, 100_000))
        return Call(route, b'{"data": [' + b"[" * depth + b"]" * depth + b', 1, ""]}', content_type)
    if kind == "digits":  # an integer past Python's 4300-digit parsing limit, which json.dumps cannot write
        digits = draw(st.integers(4000, 20_000))
        return Call(route, b'{"data": [' + b"9" * digits + b', 1, ""]}', content_type)
    if kind == "huge":
        size = draw(st.sampled_from([256 * 1024 - 20, 256 * 1024 + 1, 2 * 1024 * 1024]))
        return Call(route, b'{"data": ["' + b"z" * size + b'"]}', content_type)
    if kind == "not an object":
        value = draw(junk.filter(lambda v: not isinstance(v, dict)))
    else:
        keys = st.sampled_from(PREDICT_FIELDS) | st.text(characters, max_size=10)
        value = draw(st.dictionaries(keys, junk | st.integers(0, 60), max_size=6))
    return Call(route, encode(value), content_type, raws=tuple(strings_in(value)))


def body_sweep(endpoints: dict[str, Any], primed: Primed) -> list[Call]:
    """Each route with a well-formed call under each content type (none included), and a few broken bodies."""
    calls = []
    for api_name, endpoint in endpoints.items():
        body = encode({"data": [plain_value(p, primed) for p in endpoint["parameters"]]})
        calls += [Call(f"/gradio_api/call{api_name}", body, content_type) for content_type in CONTENT_TYPES]
    join = encode({"data": [], "fn_index": 0, "session_hash": "fuzz"})
    calls += [Call("/gradio_api/queue/join", join, content_type) for content_type in CONTENT_TYPES]
    broken = [b"", b"{", b"[]", b"null", b'{"data": {}}', b'{"data": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"]
    broken.append(b'{"data": [' + b"9" * 5000 + b"]}")
    routes = [f"/gradio_api/call{next(iter(endpoints))}", "/gradio_api/queue/join"]
    return calls + [Call(route, body) for route in routes for body in broken]


# ---- what must come back ------------------------------------------------------------------------


@dataclass
class Fuzzer:
    """Sends calls with one connection and checks every answer; counts what it sent."""

    client: httpx.Client
    primed: Primed
    endpoints: dict[str, Any]
    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def mark(self) -> tuple[float, int, Counter[str]]:
        return time.monotonic(), self.sent, Counter(self.outcomes)

    def since(self, mark: tuple[float, int, Counter[str]], what: str) -> str:
        """How many inputs went out since ``mark``, how fast, and what came back."""
        started, sent, outcomes = mark
        seconds, count = time.monotonic() - started, self.sent - sent
        answers = ", ".join(f"{n} {kind}" for kind, n in sorted((self.outcomes - outcomes).items()))
        return f"{what}: {count} inputs in {seconds:.0f} s ({count / seconds:.1f}/s): {answers}"

    def post(self, call: Call) -> httpx.Response:
        headers = {"content-type": call.content_type} if call.content_type else {}
        if call.cookie is not None:
            headers["cookie"] = f"{COOKIE}={call.cookie}"
        self.sent += 1
        return self.client.post(call.route, content=call.body, headers=headers)

    def check(self, call: Call) -> None:
        """POST the call; a 4xx must carry a JSON detail sentence, an accepted call's SSE answer must end in a
        result or an error sentence."""
        response = self.post(call)
        answer = f"HTTP {response.status_code}: {response.text[:500]}"
        assert response.status_code < 500, f"the server failed: {answer}"
        if response.status_code >= 400:
            self.outcomes[f"HTTP {response.status_code}"] += 1
            detail = json_or_none(response.text)
            assert isinstance(detail, dict) and isinstance(detail.get("detail"), str), f"no detail sentence: {answer}"
            check_sentence(detail["detail"], call.raws, answer)
            return
        if "/gradio_api/call/" not in call.route:
            self.outcomes["queued"] += 1
            return  # the queue accepted the event; its answer goes to a session stream no one reads
        event_id = json_or_none(response.text)
        assert isinstance(event_id, dict) and isinstance(event_id.get("event_id"), str), f"no event id: {answer}"
        headers = {"cookie": f"{COOKIE}={call.cookie}"} if call.cookie else {}
        stream = self.client.get(f"{call.route}/{event_id['event_id']}", headers=headers)
        answer = f"HTTP {stream.status_code}: {stream.text[:800]}"
        assert stream.status_code == 200, f"reading the answer failed: {answer}"
        events = [(name, data) for name, data in sse_events(stream.text) if name != "heartbeat"]
        assert events and events[-1][0] in ("complete", "error"), f"the answer has no end: {answer}"
        name, data = events[-1]
        if name == "complete":
            self.outcomes["results"] += 1
        else:
            error = json_or_none(data)
            message = error.get("error") if isinstance(error, dict) else error
            too_many = isinstance(message, str) and message.startswith("Too many")
            self.outcomes["rate-limited" if too_many else "errors"] += 1
            check_sentence(message, call.raws, answer)


def json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def sse_events(text: str) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a server-sent-events body."""
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].lstrip())
        if data or name != "message":
            yield name, "\n".join(data)


def check_sentence(message: Any, raws: Sequence[str], answer: str) -> None:
    """One sentence-ish text for a person: not null, no traceback, and none of the client's raw strings."""
    assert isinstance(message, str) and message.strip() not in ("", "null", "None"), f"no message: {answer}"
    assert re.search(r"[^\W\d_]{2}", message), f"the message says nothing: {answer}"
    assert "Traceback" not in message and 'File "' not in message, f"a traceback: {answer}"
    assert not _EXCEPTION_NAME.search(message), f"an exception's name: {answer}"
    shown = {message, html.unescape(message)}
    for raw in raws:
        for form in {raw, _CONTROL.sub("", raw).strip()}:
            if len(form) >= ECHO_MIN_CHARS:
                assert not any(form in text for text in shown), f"the error echoes the input {form[:80]!r}: {answer}"


# ---- fixtures and tests -------------------------------------------------------------------------


def call_ok(client: httpx.Client, api_name: str, data: list[Any], token: str) -> Any:
    """Call an endpoint that must succeed; its output."""
    headers = {"cookie": f"{COOKIE}={token}"}
    event_id = client.post(f"/gradio_api/call{api_name}", json={"data": data}, headers=headers).json()["event_id"]
    events = list(sse_events(client.get(f"/gradio_api/call{api_name}/{event_id}", headers=headers).text))
    assert events[-1][0] == "complete", events
    return json.loads(events[-1][1])


@pytest.fixture(scope="module")
def fuzzer(app_server: AppServer) -> Iterator[Fuzzer]:
    """One connection, four raters, a few images and battles each rater may vote on."""
    with httpx.Client(base_url=app_server.url, timeout=TIMEOUT) as client:
        tokens = [app_server.token() for _ in range(4)]
        _, summary, _ = call_ok(client, "/generate", ["two cats", "", "", 1, 5, 7, 2, "1:1", "DDIM", 1], tokens[0])
        image_ids = [image["image_id"] for image in summary["images"]]
        battle_ids = [call_ok(client, "/arena", ["a dog", "", 1, 5, "1:1", "DDIM"], t)[2]["battle_id"] for t in tokens]
        endpoints = client.get("/gradio_api/info").json()["named_endpoints"]
        yield Fuzzer(client, Primed(tokens, image_ids, battle_ids), endpoints)


def fuzz(
    strategy: st.SearchStrategy[Call], examples: int, check: Callable[[Call], None], explicit: Sequence[Call] = ()
) -> None:
    """Run ``check`` on the ``explicit`` calls, then on ``examples`` calls drawn from ``strategy``."""

    @settings(max_examples=max(examples, 1), **SETTINGS)
    @given(call=strategy)
    def run(call: Call) -> None:
        check(call)

    for call in reversed(explicit):  # hypothesis runs the outermost @example first
        run = example(call=call)(run)
    run()


def test_every_public_endpoint_answers_a_result_or_one_clean_sentence(fuzzer: Fuzzer) -> None:
    """Each endpoint in turn; a failing one is reported with its shrunk input, and the others still run."""
    start = fuzzer.mark()
    endpoints = fuzzer.endpoints
    shares = {name: WEIGHTS.get(name, DEFAULT_WEIGHT) for name in endpoints if name != "/rater_token"}
    budget = FUZZ_EXAMPLES * (1 - BODY_SHARE) - (RATER_TOKEN_EXAMPLES if "/rater_token" in endpoints else 0)
    failures, rates = [], []
    for api_name, endpoint in endpoints.items():
        share = shares.get(api_name)
        examples = RATER_TOKEN_EXAMPLES if share is None else round(budget * share / sum(shares.values()))
        strategy = endpoint_calls(api_name, endpoint["parameters"], fuzzer.primed)
        sweep = edge_sweep(api_name, endpoint["parameters"], fuzzer.primed)
        endpoint_start = fuzzer.mark()
        try:
            fuzz(strategy, examples, fuzzer.check, sweep)
        except Exception as err:  # hypothesis re-raises what the check raised, on the shrunk input
            failures.append(f"{api_name}: {err}\n" + "\n".join(getattr(err, "__notes__", [])))
        rates.append(fuzzer.since(endpoint_start, api_name))
    print("\n".join([*rates, fuzzer.since(start, "all endpoints")]))
    assert not failures, "\n\n".join(failures)


def test_malformed_bodies_get_a_sentence_not_a_crash(fuzzer: Fuzzer) -> None:
    """Bodies that are not the call a route takes, on call/<name> (real and made-up names) and queue/join."""
    start = fuzzer.mark()
    try:
        strategy, sweep = malformed_calls(list(fuzzer.endpoints)), body_sweep(fuzzer.endpoints, fuzzer.primed)
        fuzz(strategy, round(FUZZ_EXAMPLES * BODY_SHARE), fuzzer.check, sweep)
    finally:
        print(fuzzer.since(start, "bodies"))


def test_the_run_route_answers_like_call(fuzzer: Fuzzer) -> None:
    """run/<name> is closed to the queued endpoints (they would skip the queue, and Gradio answers every refusal
    there with a 500): whatever is sent, a 4xx sentence, never a 500."""
    start = fuzzer.mark()

    @st.composite
    def run_calls(draw: st.DrawFn) -> Call:
        api_name = draw(st.sampled_from(sorted(name for name in fuzzer.endpoints if name != "/rater_token")))
        call = draw(endpoint_calls(api_name, fuzzer.endpoints[api_name]["parameters"], fuzzer.primed))
        return Call(f"/gradio_api/run{api_name}", call.body, call.content_type, call.cookie, call.raws)

    def check(call: Call) -> None:
        response = fuzzer.post(call)
        fuzzer.outcomes[f"HTTP {response.status_code}"] += 1
        answer = f"HTTP {response.status_code}: {response.text[:500]}"
        assert response.status_code < 500, f"the server failed: {answer}"
        if response.status_code >= 400:
            body = json_or_none(response.text)
            message = body.get("detail", body.get("error")) if isinstance(body, dict) else None
            check_sentence(message, call.raws, answer)

    try:
        fuzz(run_calls(), RUN_ROUTE_EXAMPLES, check)
    finally:
        print(fuzzer.since(start, "run route"))
