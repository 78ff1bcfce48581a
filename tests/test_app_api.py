"""The public API through gradio_client: generate, vote, change the vote, read the store, export."""

import hashlib
import hmac
import json
import re
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

import app.health
from app.health import HEALTH_PATH
from app.rater_cookie import COOKIE
from app.vote_route import VOTE_PATH
from feedback.export import export
from feedback.images import read_provenance
from feedback.store import FeedbackStore
from tests.fixtures.app_server import ADMIN_KEY, AppServer

GOOD = {
    "prompt": "two cats on a red background",
    "enhanced_prompt": "",
    "negative_prompt": "blurry",
    "steps": 3,
    "cfg": 5,
    "seed": 21,
    "num_images": 2,
    "aspect": "1:1",
    "sampler": "DDIM",
}


@pytest.fixture(scope="module")
def client(app_server: AppServer) -> Client:
    return app_server.client()


@pytest.fixture(scope="module")
def store(app_server: AppServer) -> Iterator[FeedbackStore]:
    with FeedbackStore(app_server.db_url, app_server.image_dir) as store:
        yield store


def generate(client: Client, **overrides: Any) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    return client.predict(*{**GOOD, **overrides}.values(), api_name="/generate")


def rater_of(store: FeedbackStore, image_id: str) -> int:
    (vote,) = [v for v in store.preference_rows().votes if v.image_id == image_id]
    return vote.rater_id


def test_the_public_endpoints(client: Client) -> None:
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {
        "/enhance", "/generate", "/vote", "/compare", "/dashboard", "/arena", "/arena_vote", "/leaderboard",
        "/rater_token",
    }  # fmt: skip


def test_enhance_is_reproducible(client: Client) -> None:
    first = client.predict("a cat", 5, "auto", api_name="/enhance")
    assert "a cat" in first and len(first) > len("a cat")
    assert client.predict("a cat", 5, "auto", api_name="/enhance") == first
    assert "pixel" in client.predict("a cat", 5, "pixel art", api_name="/enhance")


def test_generate_vote_change_vote_and_export(
    client: Client, store: FeedbackStore, app_server: AppServer, tmp_path: Path
) -> None:
    gallery, summary, seed = generate(client)
    assert seed == summary["seed"] == 21
    assert [image["seed"] for image in summary["images"]] == [21, 22]
    assert summary["model_version"].startswith(f"{app_server.model_dir.name}@")

    # The client downloads native PNGs whose text chunk says how they were made.
    assert len(gallery) == 2
    downloaded = Image.open(gallery[1]["image"])
    provenance = json.loads(downloaded.text["parameters"])
    assert downloaded.format == "PNG" and downloaded.size == (provenance["width"], provenance["height"])
    assert (provenance["prompt"], provenance["negative_prompt"]) == (GOOD["prompt"], "blurry")
    assert (provenance["seed"], provenance["batch_seed"], provenance["batch_index"]) == (22, 21, 1)
    assert provenance["category"] == "animal"

    second = summary["images"][1]["image_id"]
    voted = client.predict(second, -1, "too blurry", api_name="/vote")
    assert voted == {"image_id": second, "value": -1, "previous": 0, "comment": "too blurry"}
    changed = client.predict(second, 1, "", api_name="/vote")
    assert (changed["value"], changed["previous"]) == (1, -1)

    first = summary["images"][0]["image_id"]
    client.predict(first, 1, "", api_name="/vote")
    client.predict(first, 0, "", api_name="/vote")  # undo

    rater = rater_of(store, second)
    assert store.current_votes(rater, [first, second]) == {first: 0, second: 1}
    assert store.vote_history(rater, second) == [-1, 1]
    assert store.vote_history(rater, first) == [1, 0]
    assert read_provenance(store.image_path(second))["seed"] == 22  # the second image's own seed

    comparison_id = client.predict(second, first, "left", api_name="/compare")
    assert isinstance(comparison_id, int)

    dashboard = client.predict("", api_name="/dashboard")
    totals = dashboard["totals"]
    assert totals["n_votes"] >= 1 and totals["n_comparisons"] >= 1 and totals["n_images"] >= 2
    assert set(dashboard["agreement"]) == {"votes", "comparisons", "raters", "flagged"}
    assert dashboard["agreement"]["raters"] == []  # each rater's agreement and flag are the host's to see

    result = export(store, "kto", tmp_path / "kto", output="parquet")
    rows = pd.read_parquet(tmp_path / "kto" / "train.parquet")
    mine = rows[rows["image_uid"] == second]
    assert result.rows == len(rows) and len(mine) == 1
    assert bool(mine["label"].iloc[0]) is True
    assert mine["caption"].iloc[0] == GOOD["prompt"]


def test_enhanced_prompt_is_what_the_model_sees(client: Client, store: FeedbackStore) -> None:
    enhanced = client.predict(GOOD["prompt"], 3, "flat", api_name="/enhance")
    _, summary, _ = generate(client, enhanced_prompt=enhanced, num_images=1, seed=5)
    provenance = read_provenance(store.image_path(summary["images"][0]["image_id"]))
    assert (provenance["prompt"], provenance["enhanced_prompt"]) == (GOOD["prompt"], enhanced)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prompt": ""}, "Please enter a prompt."),
        ({"prompt": "x" * 1001}, "The prompt is 1001 characters long; the limit is 1000."),
        ({"steps": 0}, "The number of steps must be a whole number from 1 to 150 (got 0)."),
        ({"steps": 151}, "The number of steps must be a whole number from 1 to 150 (got 151)."),
        ({"num_images": 9}, "The number of images must be a whole number from 1 to 8 (got 9)."),
        ({"cfg": 99}, "The CFG scale must be a number from"),
        ({"seed": -2}, "The seed must be a whole number from -1 to"),
        ({"sampler": "PLMS"}, "Unknown sampler; choose one of DDIM"),
        ({"prompt": ["a cat"]}, "The prompt must be text."),
        ({"aspect": "<script>x</script>"}, "Unknown aspect ratio; choose one of 1:1"),
        ({"steps": 150, "num_images": 8}, "150 steps × 8 images is more work than one request may ask for"),
    ],
)
def test_bad_input_is_a_clear_error(client: Client, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(AppError) as caught:
        generate(client, **overrides)
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value) and "script" not in str(caught.value)


@pytest.mark.parametrize(
    ("args", "api_name", "message"),
    [
        (("00000000-0000-0000-0000-000000000000", 1, ""), "/vote", "does not exist"),
        (("not an id!", 1, ""), "/vote", "not valid"),
        (("abc", 5, ""), "/vote", "from -1 to 1"),
        (("abc", "abc", "left"), "/compare", "two different images"),
        (("a", "b", "draw"), "/compare", "Unknown outcome"),
    ],
)
def test_bad_votes_are_clear_errors(client: Client, args: tuple[Any, ...], api_name: str, message: str) -> None:
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name=api_name)


def test_one_browser_cookie_is_one_rater_across_sessions(app_server: AppServer, store: FeedbackStore) -> None:
    """A reload is a new Gradio session; the rater cookie keeps it the same rater."""
    page_load = urllib.request.Request(app_server.url, headers={"Accept": "text/html"})
    with urllib.request.urlopen(page_load) as page:
        assert page.headers["set-cookie"].startswith(f"{COOKIE}=")
    token, other = app_server.token(), app_server.token()
    image_ids = []
    for cookie in (token, token, other):  # three sessions: two of one browser, one of another
        session = app_server.client(cookie)
        _, summary, _ = generate(session, num_images=1)
        image_id = summary["images"][0]["image_id"]
        session.predict(image_id, 1, "", api_name="/vote")
        image_ids.append(image_id)
    raters = [rater_of(store, image_id) for image_id in image_ids]
    assert raters[0] == raters[1] != raters[2]


def test_the_arena_names_the_versions_only_after_the_vote(client: Client, app_server: AppServer) -> None:
    left, right, battle = client.predict("two cats", "", 3, 5, "1:1", "DDIM", api_name="/arena")
    for path in (left, right):
        with Image.open(path) as image:
            assert "parameters" not in image.text  # the served file must not name its model
    assert set(battle) == {"battle_id", "seed", "text", "warnings"} and battle["text"] == "two cats"

    other = app_server.client()
    with pytest.raises(AppError, match="shown to another rater"):
        other.predict(battle["battle_id"], "left", api_name="/arena_vote")
    with pytest.raises(AppError, match="Unknown outcome"):
        client.predict(battle["battle_id"], "A", api_name="/arena_vote")
    with pytest.raises(AppError, match="The battle id must be a whole number"):
        client.predict(2**40, "left", api_name="/arena_vote")
    judged = client.predict(battle["battle_id"], "left", api_name="/arena_vote")
    names = {judged["model_a"].split("@")[0], judged["model_b"].split("@")[0]}
    assert names == {app_server.model_dir.name, "tiny-sd-b"} and judged["outcome"] == "left"
    with pytest.raises(AppError, match="already judged"):
        client.predict(battle["battle_id"], "right", api_name="/arena_vote")

    board = client.predict(api_name="/leaderboard")
    assert [v["name"] for v in board["versions"]] == [app_server.model_dir.name, "tiny-sd-b"]
    winner = next(r for r in board["ratings"] if r["model"] == judged["model_a"])
    assert winner["rank"] == 1 and winner["wins"] >= 1 and winner["lower"] <= winner["rating"] <= winner["upper"]


@pytest.mark.parametrize("cookie", [None, "r" * 43, "A" * 32 + "." + "B" * 43])
def test_a_client_cannot_make_up_a_rater(app_server: AppServer, client: Client, cookie: str | None) -> None:
    """Without a token the server signed, a vote is refused: a script cannot vote as many raters."""
    _, summary, _ = generate(client, num_images=1)
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    stranger = Client(app_server.url, verbose=False, headers=headers)
    with pytest.raises(AppError, match="no valid rater token: reload the page"):
        stranger.predict(summary["images"][0]["image_id"], 1, "", api_name="/vote")


def test_the_client_address_is_not_taken_from_x_forwarded_for(app_server: AppServer, store: FeedbackStore) -> None:
    """No proxy is trusted by default, so a client cannot choose the address its rater is hashed under."""
    token = app_server.token()
    spoofing = Client(
        app_server.url, verbose=False, headers={"Cookie": f"{COOKIE}={token}", "X-Forwarded-For": "1.2.3.4"}
    )
    _, summary, _ = generate(spoofing, num_images=1)
    image_id = summary["images"][0]["image_id"]
    spoofing.predict(image_id, 1, "", api_name="/vote")
    with sqlite3.connect(app_server.db_url.removeprefix("sqlite:///")) as db:
        (ip_hash,) = db.execute("SELECT ip_hash FROM raters WHERE id = ?", (rater_of(store, image_id),)).fetchone()
    key = b"test-salt"  # the server's fixed RAPHAEL_IP_SALT
    assert ip_hash == hmac.new(key, b"127.0.0.1", hashlib.sha256).hexdigest()
    assert ip_hash != hmac.new(key, b"1.2.3.4", hashlib.sha256).hexdigest()


def test_the_dashboard_shows_each_raters_agreement_only_to_the_admin(app_server: AppServer, client: Client) -> None:
    _, summary, _ = generate(client, num_images=1)
    image_id = summary["images"][0]["image_id"]
    client.predict(image_id, 1, "", api_name="/vote")
    app_server.client().predict(image_id, -1, "", api_name="/vote")  # two raters share an image
    assert client.predict("wrong key", api_name="/dashboard")["agreement"]["raters"] == []
    admin = client.predict(ADMIN_KEY, api_name="/dashboard")["agreement"]
    assert admin["raters"] and {"rater_id", "flagged"} <= set(admin["raters"][0])


def test_api_clients_get_tokens_from_the_server(app_server: AppServer) -> None:
    issued = Client(app_server.url, verbose=False).predict(api_name="/rater_token")
    assert issued["cookie"] == COOKIE and issued["max_age_s"] == 365 * 24 * 3600
    assert issued["token"] != app_server.token()


def test_a_lone_surrogate_is_a_clear_error(app_server: AppServer) -> None:
    """JSON can carry half a UTF-16 pair ("\\ud800"), which no database stores: the answer names the field."""
    body = '{"data": ["a \\ud800 cat", "", "", 3, 5, 1, 1, "1:1", "DDIM", 1]}'
    cookies = {COOKIE: app_server.token()}
    with httpx.Client(base_url=app_server.url, cookies=cookies, timeout=60) as http:
        started = http.post("/gradio_api/call/generate", content=body, headers={"Content-Type": "application/json"})
        answer = http.get(f"/gradio_api/call/generate/{started.json()['event_id']}").text
    assert "event: error" in answer and "The prompt contains characters that are not valid text." in answer


def test_the_light_vote_route(app_server: AppServer, client: Client, store: FeedbackStore) -> None:
    """POST /api/vote: the checks and answer of /vote in one plain request, refusals as a status and a sentence."""
    _, summary, _ = generate(client, num_images=1)
    image_id = summary["images"][0]["image_id"]
    token = app_server.token()
    with httpx.Client(base_url=app_server.url, cookies={COOKIE: token}, timeout=30) as http:
        answer = http.post(VOTE_PATH, json={"image_id": image_id, "value": -1, "comment": "too dark"})
        assert answer.status_code == 200
        assert answer.json() == {"image_id": image_id, "value": -1, "previous": 0, "comment": "too dark"}
        assert http.post(VOTE_PATH, json={"image_id": image_id, "value": 1}).json()["previous"] == -1
        refusals = {
            "not json": "The request body must be JSON encoded as UTF-8.",
            "[1, 2]": 'The request body must be a JSON object with "image_id" and "value".',
            json.dumps({"image_id": image_id, "value": 7}): "The vote must be a whole number from -1 to 1",
            json.dumps({"image_id": "<script>", "value": 1}): "This image id is not valid",
        }
        for body, message in refusals.items():
            refused = http.post(VOTE_PATH, content=body)
            assert refused.status_code == 400 and refused.json()["detail"].startswith(message)
            assert "script" not in refused.text
    anonymous = httpx.post(f"{app_server.url}{VOTE_PATH}", json={"image_id": image_id, "value": 1}, timeout=30)
    assert anonymous.status_code == 400 and "no valid rater token" in anonymous.json()["detail"]
    raters = {v.rater_id for v in store.preference_rows().votes if v.image_id == image_id}
    assert len(raters) == 1  # the light route's rater, with its latest vote


def test_best_of_n_through_the_api(client: Client, store: FeedbackStore) -> None:
    """/generate with best_of: the reward model's top images of the candidates, best first, and every stored PNG
    says it was picked and by which reward model."""
    _, summary, seed = generate(client, num_images=2, best_of=3)
    p = summary["provenance"]
    assert (p["best_of"], len(summary["images"])) == (3, 2) and p["reward_model"].startswith("reward-untrained@")
    assert p["reward_scores"] == sorted(p["reward_scores"], reverse=True)
    seeds = [image["seed"] for image in summary["images"]]
    assert len(set(seeds)) == 2 and set(seeds) <= set(range(seed, seed + 6))
    stored = read_provenance(store.image_path(summary["images"][1]["image_id"]))
    assert (stored["best_of"], stored["seed"], stored["reward_score"]) == (3, seeds[1], p["reward_scores"][1])
    with pytest.raises(AppError, match="best of must be a whole number from 1 to 4"):
        generate(client, best_of=5)
    _, plain, _ = generate(client, num_images=1)  # API clients that never name best_of get plain draws
    assert "best_of" not in plain["provenance"]


def test_the_health_check_of_the_served_demo(app_server: AppServer, client: Client) -> None:
    """GET /health: database, image folder and model usable, after a real model run; no paths in the answer."""
    generate(client, num_images=1)
    time.sleep(app.health.CACHE_S)  # an answer from before the run may be reused this long
    answer = httpx.get(f"{app_server.url}{HEALTH_PATH}", timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] and body["database"]["ok"] and body["images"]["ok"]
    assert body["models"]["last_run"] == "ok" and len(body["models"]["versions"]) == 2
    assert str(app_server.image_dir) not in answer.text and "sqlite" not in answer.text


def test_a_flood_of_generations_is_told_to_wait(app_server: AppServer) -> None:
    """One address may have 2 requests admitted; the rest of a burst are told at once how long to wait, and a vote
    sent in the middle of it goes through."""
    flooder = app_server.client()
    _, summary, _ = generate(flooder, num_images=1)
    jobs = [flooder.submit(*{**GOOD, "steps": 150, "num_images": 2}.values(), api_name="/generate") for _ in range(8)]
    voted = app_server.client().predict(summary["images"][0]["image_id"], 1, "", api_name="/vote")
    answers = []
    for job in jobs:
        try:
            job.result()
            answers.append("generated")
        except AppError as err:
            assert re.search(r"please try again in about \d+ s\.$", str(err)), str(err)
            answers.append("busy")
    assert voted["value"] == 1
    assert answers.count("busy") >= 5 and answers.count("generated") >= 1
