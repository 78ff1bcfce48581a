"""The health check: database, image folder and model, each found out when it breaks, never naming a path."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

import app.health
from app.admission import Admission
from app.health import HEALTH_PATH, Health, health_route
from feedback.store import FeedbackStore


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, FeedbackStore, Admission]]:
    monkeypatch.setattr(app.health, "CACHE_S", 0.0)  # every request checks afresh
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "images")
    admission = Admission(max_waiting=2, max_per_ip=1)
    versions = SimpleNamespace(labels=["raphael-tiny@0123456789ab"])
    server = Starlette(routes=[health_route(Health(store, versions, admission))])  # type: ignore[arg-type]
    with TestClient(server) as client:
        yield client, store, admission
    store.close()


def test_a_healthy_demo_says_so(parts: tuple[TestClient, FeedbackStore, Admission]) -> None:
    client, _store, _admission = parts
    answer = client.get(HEALTH_PATH)
    assert answer.status_code == 200
    body = answer.json()
    assert body["ok"] and body["database"]["ok"] and body["images"]["ok"] and body["models"]["ok"]
    assert body["models"]["last_run"] == "none yet" and body["models"]["versions"] == ["raphael-tiny@0123456789ab"]


def test_an_unusable_image_folder_makes_it_unhealthy(
    parts: tuple[TestClient, FeedbackStore, Admission], tmp_path: Path
) -> None:
    client, store, _admission = parts
    folder = store.images.root
    shutil.rmtree(folder)
    folder.write_text("a file where the folder was")
    answer = client.get(HEALTH_PATH)
    assert answer.status_code == 503
    assert answer.json()["images"] == {"ok": False} and answer.json()["database"] == {"ok": True}
    assert str(tmp_path) not in answer.text  # the route is public: no paths
    folder.unlink()
    folder.mkdir()
    assert client.get(HEALTH_PATH).status_code == 200


def test_an_unreachable_database_makes_it_unhealthy(parts: tuple[TestClient, FeedbackStore, Admission]) -> None:
    client, store, _admission = parts
    store._engine.dispose()
    db_file = Path(store._engine.url.database)
    db_file.rename(db_file.with_suffix(".moved"))
    db_file.mkdir()  # a folder where the database was: no connection opens
    answer = client.get(HEALTH_PATH)
    assert answer.status_code == 503 and answer.json()["database"] == {"ok": False}
    assert "feedback.db" not in answer.text


def test_a_failed_model_run_makes_it_unhealthy_until_one_succeeds(
    parts: tuple[TestClient, FeedbackStore, Admission],
) -> None:
    client, _store, admission = parts
    with pytest.raises(RuntimeError):
        with admission.slot("10.0.0.1", 10):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
    answer = client.get(HEALTH_PATH)
    assert answer.status_code == 503 and answer.json()["models"]["last_run"] == "failed"
    assert "CUDA" not in answer.text
    with pytest.raises(ValueError):
        with admission.slot("10.0.0.1", 10):
            raise ValueError("The feedback database is busy")  # the user's sentence, not the model's fault
    assert client.get(HEALTH_PATH).json()["models"]["last_run"] == "failed"
    with admission.slot("10.0.0.1", 10):
        admission.ran(0.5, 10)  # the run went through and was timed
    assert client.get(HEALTH_PATH).json()["models"] == {
        "ok": True,
        "last_run": "ok",
        "versions": ["raphael-tiny@0123456789ab"],
        "admitted_runs": 0,
        "seconds_per_image_step": pytest.approx(admission.seconds_per_image_step, abs=1e-4),
    }


def test_answers_are_reused_for_a_few_seconds(
    parts: tuple[TestClient, FeedbackStore, Admission], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client polling fast does not make the server probe its disk each time."""
    _client, store, admission = parts
    monkeypatch.setattr(app.health, "CACHE_S", 60.0)
    health = Health(store, SimpleNamespace(labels=[]), admission)  # type: ignore[arg-type]
    first = health.check()
    store.images.root.rmdir()
    store.images.root.write_text("broken")
    assert health.check() is first  # within CACHE_S
