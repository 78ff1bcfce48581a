"""Backups restored and exported: the restored store gives the same Pick-a-Pic export and the same image bytes.

The scenario is the export tests' (raters, generations of two models and two prompts, votes, comparisons). On each
backend the backup runs while a thread keeps adding raters with a 👍, and the restored database must be one moment's
state: every current vote has its last vote event, and the manifest's counts are what the restore finds. The other
tests run on SQLite: a damaged backup, the CLI with a .tar, and the keys.
"""

from __future__ import annotations

import stat
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feedback.backup import BackupError, backup, main, restore
from feedback.export import export
from feedback.store import FeedbackStore
from tests.fixtures.postgres import _database
from tests.test_export import Scenario, build_scenario


@pytest.fixture
def target_url(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on the backend of ``db_url``, to restore into."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'feedback.db'}"
        return
    with _database(request.getfixturevalue("postgres_server"), f"restored_{uuid.uuid4().hex[:12]}") as url:
        yield url


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    with build_scenario(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "images") as built:
        yield built


@contextmanager
def voting(store: FeedbackStore, image_id: str) -> Iterator[Callable[[int], None]]:
    """A thread that keeps adding a rater with a 👍 on ``image_id`` (likes alone make no Pick-a-Pic pair) until the
    block ends; yields a function that waits until it has added ``n`` more."""
    added, errors, done = [0], [], threading.Event()

    def work() -> None:
        try:
            while not done.is_set():
                store.vote(store.rater(f"live-{added[0]}"), image_id, 1)
                added[0] += 1
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def wait_for(n: int) -> None:
        goal, deadline = added[0] + n, time.monotonic() + 30
        while added[0] < goal and not errors and time.monotonic() < deadline:
            time.sleep(0.005)
        assert added[0] >= goal, errors

    thread = threading.Thread(target=work)
    thread.start()
    try:
        yield wait_for
    finally:
        done.set()
        thread.join()
    assert errors == []


def pickapic(store: FeedbackStore, out: Path) -> pa.Table:
    export(store, "pickapic", out, "parquet")
    return pq.read_table(out / "train.parquet")


def image_files(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file() and not path.name.startswith(".")
    }


def test_a_backup_taken_while_raters_vote_restores_to_the_same_export_and_images(
    db_url: str, target_url: str, tmp_path: Path
) -> None:
    restored_images = tmp_path / "restored" / "images"
    with build_scenario(db_url, tmp_path / "images") as s:
        with voting(s.store, s.ids["red"]) as wait_for:
            wait_for(3)
            manifest = backup(db_url, s.image_dir, tmp_path / "backup")
            wait_for(3)  # the thread went on after the snapshot, so the source now holds more than the backup
        original = pickapic(s.store, tmp_path / "export-original")
        assert len(s.store.preference_rows().votes) > manifest.counts["votes"] > 7  # the scenario has 7

    restore(tmp_path / "backup", target_url, restored_images)  # checks the manifest's counts after the restore
    with FeedbackStore(target_url, restored_images) as restored:
        rows = restored.preference_rows(with_events=True)
        last_event = {(e.rater_id, e.image_id): e.value for e in sorted(rows.events, key=lambda e: e.id)}
        assert {(v.rater_id, v.image_id): v.value for v in rows.votes} == {k: v for k, v in last_event.items() if v}
        assert len(rows.votes) == manifest.counts["votes"]
        copy = pickapic(restored, tmp_path / "export-restored")
    assert original.num_rows == 6 and copy.equals(original)
    assert image_files(restored_images) == image_files(tmp_path / "images")

    with pytest.raises(BackupError, match=r"^--db: the database .* already holds \d+ votes.*; pass --force"):
        restore(tmp_path / "backup", target_url, restored_images)
    assert restore(tmp_path / "backup", target_url, restored_images, force=True).counts == manifest.counts


@pytest.mark.parametrize("damaged", ["database.sqlite3", "images"])
def test_a_backup_with_one_byte_changed_is_refused_before_anything_is_written(
    scenario: Scenario, tmp_path: Path, damaged: str
) -> None:
    backup(scenario.url, scenario.image_dir, tmp_path / "backup")
    path = tmp_path / "backup" / damaged
    path = next(p for p in sorted(path.rglob("*")) if p.is_file()) if path.is_dir() else path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(data)

    target = tmp_path / "restored"
    with pytest.raises(BackupError, match=r"^--from: .* does not match its sha256 in the manifest\.$"):
        restore(tmp_path / "backup", f"sqlite:///{target / 'feedback.db'}", target / "images")
    assert not target.exists()


def test_the_cli_round_trips_a_tar_and_refuses_in_one_sentence(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tar = tmp_path / "backup.tar"
    assert main(["backup", "--db", scenario.url, "--image-dir", str(scenario.image_dir), "--out", str(tar)]) == 0
    assert tarfile.is_tarfile(tar) and stat.S_IMODE(tar.stat().st_mode) == 0o600
    target = ["--db", f"sqlite:///{tmp_path / 'restored' / 'feedback.db'}"]
    target += ["--image-dir", str(tmp_path / "restored" / "images")]
    assert main(["restore", "--from", str(tar), *target]) == 0
    assert image_files(tmp_path / "restored" / "images") == image_files(scenario.image_dir)
    capsys.readouterr()

    with pytest.raises(SystemExit) as refused:
        main(["restore", "--from", str(tar), *target])
    err = capsys.readouterr().err
    message = err.strip().splitlines()[-1].split(" error: ", 1)[1]
    assert refused.value.code == 2 and "Traceback" not in err
    assert message.startswith("--db: the database at sqlite:///") and message.endswith("pass --force to replace it.")
    assert ". " not in message  # one sentence


def test_keys_stay_out_unless_asked_for_and_come_back_private(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret, keys = scenario.store.install_secret, scenario.store.keys.folder
    target = (f"sqlite:///{tmp_path / 'restored' / 'feedback.db'}", tmp_path / "restored" / "images")
    restored_keys = tmp_path / "restored" / "keys"

    plain = backup(scenario.url, scenario.image_dir, tmp_path / "plain")
    assert not [name for name in plain.files if name.startswith("keys/")]
    assert not (tmp_path / "plain" / "keys").exists()
    with pytest.raises(BackupError, match=r"^--with-keys: .* holds no keys"):
        restore(tmp_path / "plain", *target, keys_dir=restored_keys)

    backup(scenario.url, scenario.image_dir, tmp_path / "with-keys", keys_dir=keys)
    restore(tmp_path / "with-keys", *target, keys_dir=restored_keys)
    assert (restored_keys / "install.key").read_bytes() == secret
    for folder in (tmp_path / "with-keys" / "keys", restored_keys):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert {stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()} == {0o600}

    with pytest.raises(SystemExit):
        main(["backup", "--help"])
    assert "without the install secret the raters' cookies stop working" in " ".join(capsys.readouterr().out.split())
