"""The install's keys: where they live, their modes, the old salt files adopted, the daily IP key, laziness."""

from __future__ import annotations

import hashlib
import hmac
import stat
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from feedback.keys import IP_KEY, IP_SALT_ENV, InstallKeys, install_keys
from feedback.store import FeedbackStore

DAY = date(2025, 6, 1)
SALT = b"0123456789abcdef" * 4  # an old install's salt, as it wrote them


@pytest.fixture(autouse=True)
def no_fixed_ip_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IP_SALT_ENV, raising=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_secret_is_made_once_with_private_modes(tmp_path: Path) -> None:
    keys = InstallKeys(tmp_path / "keys")
    assert not (tmp_path / "keys").exists()  # nothing until a key is needed
    secret = keys.install_secret
    assert len(secret) == 64 and keys.install_secret == secret
    assert InstallKeys(tmp_path / "keys").install_secret == secret  # another process, a restart
    assert mode(tmp_path / "keys") == 0o700
    assert mode(tmp_path / "keys" / "install.key") == 0o600
    assert InstallKeys(tmp_path / "elsewhere").install_secret != secret


def test_old_salt_files_are_adopted_then_deleted(tmp_path: Path) -> None:
    beside_db, served = tmp_path / "feedback.db.ip-salt", tmp_path / "images" / ".ip-salt"
    served.parent.mkdir()
    beside_db.write_bytes(SALT)
    served.write_bytes(b"f" * 64)
    keys = InstallKeys(tmp_path / "keys", [beside_db, served])
    assert keys.install_secret == SALT  # the first found: rater ids keyed by it stay the same
    assert not beside_db.exists() and not served.exists()
    assert mode(tmp_path / "keys" / "install.key") == 0o600

    served.write_bytes(SALT)  # put back, say from a backup: it is served, so it goes again
    assert keys.install_secret == SALT and not served.exists()


def test_the_ip_key_changes_with_the_day_and_the_old_one_is_gone(tmp_path: Path) -> None:
    keys = InstallKeys(tmp_path / "keys")
    first = keys.ip_key(DAY)
    assert len(first) == 64 and keys.ip_key(DAY) == first
    assert InstallKeys(tmp_path / "keys").ip_key(DAY) == first  # one key a day for every process
    assert not (tmp_path / "keys" / "install.key").exists()  # the two keys are independent

    second = keys.ip_key(DAY + timedelta(days=1))
    assert second != first
    stored = (tmp_path / "keys" / IP_KEY).read_bytes()
    assert first not in stored and stored.startswith(b"2025-06-02 ")
    assert mode(tmp_path / "keys" / IP_KEY) == 0o600
    assert keys.ip_key(DAY) == second  # a clock behind gets today's key: yesterday's is gone
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [".lock", IP_KEY]  # no temporary files left


def test_processes_asking_on_a_new_day_agree_on_one_key(tmp_path: Path) -> None:
    InstallKeys(tmp_path / "keys").ip_key(DAY)
    start, found = threading.Barrier(8), []

    def ask() -> None:
        start.wait()
        found.append(InstallKeys(tmp_path / "keys").ip_key(DAY + timedelta(days=1)))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1


def test_a_fixed_ip_key_from_the_environment_never_rotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IP_SALT_ENV, "operator-chosen")
    keys = InstallKeys(tmp_path / "keys")
    assert keys.ip_key(DAY) == keys.ip_key(DAY + timedelta(days=400)) == b"operator-chosen"
    assert not (tmp_path / "keys").exists()


def test_where_the_keys_live(tmp_path: Path) -> None:
    images = tmp_path / "data" / "images"
    beside_db = install_keys(f"sqlite:///{tmp_path / 'db' / 'feedback.db'}", images)
    assert beside_db.folder == (tmp_path / "db" / "keys").resolve()
    assert beside_db.legacy == ((tmp_path / "db" / "feedback.db.ip-salt").resolve(), images.resolve() / ".ip-salt")
    server = install_keys("postgresql+psycopg://u@localhost/feedback", images)
    assert server.folder == (tmp_path / "data" / "keys").resolve()
    assert server.legacy == (images.resolve() / ".ip-salt",)
    assert install_keys("sqlite://", images, tmp_path / "secrets").folder == (tmp_path / "secrets").resolve()


@pytest.mark.parametrize("inside", [".", "keys", "a/b"])
def test_a_keys_folder_inside_the_served_images_is_refused(tmp_path: Path, inside: str) -> None:
    images = tmp_path / "images"
    with pytest.raises(ValueError, match="is inside the image folder") as caught:
        FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}", images, keys_dir=images / inside)
    assert str((images / inside).resolve()) in str(caught.value) and str(images.resolve()) in str(caught.value)
    with pytest.raises(ValueError, match="is inside the image folder"):  # a database in the image folder, too
        FeedbackStore(f"sqlite:///{images / 'feedback.db'}", images)


def test_reading_the_store_makes_no_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    with FeedbackStore(url, tmp_path / "images") as store:
        store.rater("someone")  # no address, no IP key
        store.preference_rows()
        store.dashboard()
    assert not (tmp_path / "keys").exists()


def test_the_store_keeps_its_secret_and_hashes_ips_under_the_days_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    (tmp_path / "feedback.db.ip-salt").write_bytes(SALT)  # an install from before the keys folder
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / ".ip-salt").write_bytes(SALT)
    with FeedbackStore(url, tmp_path / "images") as store:
        assert store.install_secret == SALT
        assert store.keys.folder == (tmp_path / "keys").resolve()
        hashed = store._hash_ip("203.0.113.7")
        today = datetime.now(UTC).date()
        assert hashed == hmac.new(store.keys.ip_key(today), b"203.0.113.7", hashlib.sha256).hexdigest()
        assert store._hash_ip("203.0.113.7") == hashed
    assert not (tmp_path / "feedback.db.ip-salt").exists() and not (tmp_path / "images" / ".ip-salt").exists()

    with FeedbackStore(url, tmp_path / "images") as reopened:
        assert reopened.install_secret == SALT  # rater ids and tokens survive a restart
        assert reopened._hash_ip("203.0.113.7") == hashed
        yesterday = (today - timedelta(days=1)).isoformat()
        (tmp_path / "keys" / IP_KEY).write_text(f"{yesterday} {'0' * 64}\n")  # the key as it was yesterday
        with_yesterdays_key = hmac.new(b"0" * 64, b"203.0.113.7", hashlib.sha256).hexdigest()
        assert reopened._hash_ip("203.0.113.7") not in (hashed, with_yesterdays_key)
        assert (tmp_path / "keys" / IP_KEY).read_text().startswith(today.isoformat())
