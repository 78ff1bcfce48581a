"""The public API through gradio_client: generate, vote, change the vote, read the store, export."""

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from app.rater_cookie import COOKIE
from feedback.export import export
from feedback.images import read_provenance
from feedback.store import FeedbackStore
from tests.fixtures.app_server import AppServer

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
    return Client(app_server.url, verbose=False)


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

    dashboard = client.predict(api_name="/dashboard")
    totals = dashboard["totals"]
    assert totals["n_votes"] >= 1 and totals["n_comparisons"] >= 1 and totals["n_images"] >= 2
    assert set(dashboard["agreement"]) == {"votes", "comparisons", "raters"}

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
        ({"sampler": "PLMS"}, "PLMS"),
    ],
)
def test_bad_input_is_a_clear_error(client: Client, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(AppError) as caught:
        generate(client, **overrides)
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value)


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
    with urllib.request.urlopen(app_server.url) as page:
        assert page.headers["set-cookie"].startswith(f"{COOKIE}=")
    token, other = "r" * 43, "s" * 43
    image_ids = []
    for cookie in (token, token, other):  # three sessions: two of one browser, one of another
        session = Client(app_server.url, verbose=False, headers={"Cookie": f"{COOKIE}={cookie}"})
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

    other = Client(app_server.url, verbose=False)
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
