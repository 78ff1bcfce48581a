"""The arena: battles in the store (both backends), the service's pair draw and generation, model versions and
their lineage, and the leaderboard view.

The served app's /arena, /arena_vote and /leaderboard are checked in tests/test_app_api.py.
"""

from __future__ import annotations

import json
import random
import shutil
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from app.arena import ArenaService
from app.generation import GenerationRequest, GenerationService
from app.leaderboard_view import leaderboard_view
from app.settings import Settings, from_args
from app.versions import ModelVersions, lineage, version_folders
from feedback.export import export
from feedback.images import model_version
from feedback.leaderboard import main as leaderboard_main
from feedback.store import FeedbackError, FeedbackStore
from tests.fixtures.app_server import build_tiny_sd_pipeline
from tests.test_store import provenance, solid

A, B = "a" * 64, "b" * 64


def two_versions(store: FeedbackStore, rater: int, hashes: tuple[str, str] = (A, B)) -> tuple[str, str]:
    """One image of each of two model versions, same prompt and seed, as the arena stores them."""
    ids = []
    for colour, model_hash in zip(("red", "blue"), hashes, strict=True):
        record = store.record_generation(rater, provenance(model_hash=model_hash), [solid(colour)])
        ids.append(record.image_ids[0])
    return ids[0], ids[1]


def test_a_battle_is_judged_once_by_its_rater_and_is_a_comparison(store: FeedbackStore, tmp_path: Path) -> None:
    rater, other = store.rater("rater"), store.rater("other")
    left, right = two_versions(store, rater)
    battle_id = store.start_battle(rater, left, right)
    assert store.arena_battles() == []  # shown, not judged
    (shown,) = store.arena_battles(judged_only=False)
    assert (shown.outcome, shown.model_a, shown.model_b) == (None, f"raphael-tiny@{A[:12]}", f"raphael-tiny@{B[:12]}")

    with pytest.raises(FeedbackError, match="another rater"):
        store.judge_battle(battle_id, other, "left")
    with pytest.raises(FeedbackError, match="Pick model A"):
        store.judge_battle(battle_id, rater, "A")
    judged = store.judge_battle(battle_id, rater, "right")
    assert (judged.outcome, judged.model_b) == ("right", model_version("raphael-tiny", B))
    with pytest.raises(FeedbackError, match="already judged"):
        store.judge_battle(battle_id, rater, "left")
    with pytest.raises(FeedbackError, match="does not exist"):
        store.judge_battle(battle_id + 1, rater, "left")

    # One comparison, exported as a Pick-a-Pic pair whose model_0 / model_1 name the versions.
    (comparison,) = store.preference_rows().comparisons
    assert (comparison.left_image_id, comparison.right_image_id, comparison.outcome) == (left, right, "right")
    export(store, "pickapic", tmp_path / "pairs")
    (row,) = pd.read_parquet(tmp_path / "pairs" / "train.parquet").to_dict("records")
    assert (row["model_0"], row["model_1"]) == (judged.model_a, judged.model_b)
    assert (row["label_0"], row["label_1"]) == (0.0, 1.0)


def test_a_battle_needs_two_versions_and_two_images(store: FeedbackStore) -> None:
    rater = store.rater("rater")
    left, right = two_versions(store, rater, hashes=(A, A))
    with pytest.raises(FeedbackError, match="two different model versions"):
        store.start_battle(rater, left, right)
    with pytest.raises(FeedbackError, match="two different images"):
        store.start_battle(rater, left, left)
    with pytest.raises(FeedbackError, match="does not exist"):
        store.start_battle(rater, left, "missing")


def test_battles_filter_by_time(store: FeedbackStore) -> None:
    rater = store.rater("rater")
    battle = store.start_battle(rater, *two_versions(store, rater))
    store.judge_battle(battle, rater, "tie")
    (row,) = store.arena_battles()
    second = timedelta(seconds=1)  # SQLite keeps whole seconds
    assert store.arena_battles(since=row.created_at - second) == [row]
    assert store.arena_battles(until=row.created_at - second) == []
    assert store.arena_battles(since=row.created_at + 2 * second) == []


# -- versions -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_versions(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("versions")
    return [build_tiny_sd_pipeline(root / f"v{seed}", seed=seed) for seed in range(3)]


def test_version_folders_take_models_then_a_versions_folder(three_versions: list[Path], tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    shutil.copytree(three_versions[1], versions / "b-plain")
    shutil.copytree(three_versions[2], versions / "a-run" / "pipeline")  # what make finetune writes
    (versions / "notes").mkdir()
    folders = version_folders([three_versions[0]], versions)
    assert folders == [three_versions[0], versions / "a-run" / "pipeline", versions / "b-plain"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        version_folders([], tmp_path / "nowhere")
    assert version_folders([three_versions[0]], tmp_path / "nowhere", missing_ok=True) == [three_versions[0]]


def test_the_command_line_serves_several_versions(tmp_path: Path) -> None:
    settings = from_args(["--model", "first", "--model", "second", "--versions", str(tmp_path)])
    assert (settings.model_path, settings.more_models, settings.versions_dir) == (
        Path("first"),
        (Path("second"),),
        tmp_path,
    )
    assert from_args([]).more_models == () and from_args([]).versions_dir == Settings.versions_dir


def test_lineage_reads_what_preference_tuning_records(tmp_path: Path) -> None:
    record = {
        "name": "raphael-tiny-dpo",
        "preference": {
            "loss": "dpo",
            "beta": 500.0,
            "steps": 40,
            "export": {"path": "exports/pairs", "sha256": "e" * 64},
            "base_model": {"path": "model/checkpoints/raphael-tiny", "weights_hash": A},
        },
    }
    (tmp_path / "training.json").write_text(json.dumps(record))
    assert lineage(tmp_path) == {
        "base": {"folder": "model/checkpoints/raphael-tiny", "weights_hash": A},
        "export": {"location": "exports/pairs", "sha256": "e" * 64},
        "tuning": {"loss": "dpo", "beta": 500.0, "steps": 40},
    }
    (tmp_path / "training.json").write_text(json.dumps({"name": "trained", "steps": 10}))
    assert lineage(tmp_path) == {}


@pytest.fixture(scope="module")
def services(three_versions: list[Path]) -> list[GenerationService]:
    return [GenerationService(path, "cpu") for path in three_versions]


def test_the_same_weights_are_one_version(services: list[GenerationService], tmp_path: Path) -> None:
    copy = GenerationService(shutil.copytree(services[0].model_dir, tmp_path / "copy"), "cpu")
    versions = ModelVersions([services[0], copy, services[1]])
    assert versions.labels == [services[0].model_version, services[1].model_version]
    assert versions.primary is services[0]
    with pytest.raises(ValueError, match="Unknown model version"):
        versions.service("nope@0")


# -- the service ------------------------------------------------------------------------------


def test_battles_draw_the_least_compared_pair_with_one_seed(services: list[GenerationService], tmp_path: Path) -> None:
    with FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}", tmp_path / "images") as store:
        arena = ArenaService(ModelVersions(services), store, rng=random.Random(0), n_bootstrap=50)
        rater = store.rater("rater")
        request = GenerationRequest(prompt="a cat", steps=2, cfg=2.0, num_images=3)  # the arena makes one each
        pairs = []
        for _ in range(6):
            shown = arena.start(request, rater)
            battle = arena.judge(shown.battle_id, rater, "left")
            pairs.append(frozenset((battle.model_a, battle.model_b)))
            generations = {
                image.generation_id: image.provenance
                for image in store.preference_rows().images.values()
                if image.id in (shown.left_image_id, shown.right_image_id)
            }
            seeds = {p["seed"] for p in generations.values()}
            assert seeds == {shown.seed} and len({p["model_hash"] for p in generations.values()}) == 2
        # Three versions make three pairs; the least compared comes first, so each pair fights twice.
        assert len(set(pairs)) == 3 and all(pairs.count(pair) == 2 for pair in set(pairs))
        assert set(arena.pair_counts().values()) == {2}

        board = arena.board()
        assert [v["label"] for v in board["versions"]] == [s.model_version for s in services]
        assert sorted(r["battles"] for r in board["ratings"]) == [4, 4, 4]
        summary, figure, ratings, win_rates, versions = leaderboard_view(arena, "en")
        assert summary.startswith("**6** judged battles between **3** versions")
        assert figure is not None and len(ratings) == 3 and list(ratings["rank"]) == sorted(ratings["rank"])
        assert list(win_rates["model"]) == list(ratings["model"]) and len(versions) == 3


def test_an_arena_of_one_version_is_closed(services: list[GenerationService], tmp_path: Path) -> None:
    with FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}", tmp_path / "images") as store:
        arena = ArenaService(ModelVersions(services[:1]), store)
        assert not arena.is_open
        with pytest.raises(ValueError, match="needs two model versions"):
            arena.start(GenerationRequest(prompt="a cat", steps=2), store.rater("r"))
        summary, figure, ratings, _, _ = leaderboard_view(arena, "zh")
        assert figure is None and ratings.empty and "**0**" in summary


def test_make_leaderboard_prints_the_ratings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    with FeedbackStore(url, tmp_path / "images") as store:
        rater = store.rater("rater")
        for outcome in ("right", "right", "tie"):
            store.judge_battle(store.start_battle(rater, *two_versions(store, rater)), rater, outcome)
    args = ["--db", url, "--image-dir", str(tmp_path / "images"), "--bootstrap", "100"]
    assert leaderboard_main([*args, "--json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["battles"] == 3
    best, second = board["ratings"]
    assert best["model"] == model_version("raphael-tiny", B) and (best["wins"], best["ties"]) == (2, 1)
    assert best["lower"] <= best["rating"] <= best["upper"] and second["losses"] == 2
    assert leaderboard_main(args) == 0
    assert "3 judged battles" in capsys.readouterr().out
