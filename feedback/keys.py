"""The install's keys, kept in a folder of their own that the web app never serves.

``install.key`` is a random secret fixed for the install: rater ids are keyed hashes under it, so it
must outlive restarts. ``ip.key`` keys the hashes of IP addresses and is replaced by a new random key
when a new UTC day begins: a hash then links one machine's clicks within one day only, and once a
day's key is replaced nobody, not even whoever copies the database and this folder, can recompute
that day's hashes by hashing every IPv4 address. ``$RAPHAEL_IP_SALT`` fixes the IP key instead (no
rotation), for operators who want hashes to match across days. The store keeps a rater's IP hash for
``IP_HASH_DAYS`` (the ``ip_hash_days`` setting; 0 stores none) and then clears it.

Earlier versions kept one permanent salt in ``<db>.ip-salt`` or in the image folder's ``.ip-salt``,
which the web app serves. The first read of the install secret adopts it (rater ids stay the same)
and deletes the old files. Nothing is written until a key is needed, so read-only tools that open
the store create no files. The folder is created 0700 and its files 0600; a file is written whole
and moved into place, under a lock file, so processes that start together agree on one key.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from feedback.engine import sqlite_file

logger = logging.getLogger(__name__)

IP_SALT_ENV = "RAPHAEL_IP_SALT"
INSTALL_KEY = "install.key"
IP_KEY = "ip.key"
LEGACY_SALT = ".ip-salt"
IP_HASH_DAYS = 30  # how long the store keeps a rater's IP hash, by default
_LOCK = ".lock"


class InstallKeys:
    """The install secret and the day's IP key in ``folder``; ``legacy``: old salt files, the first found adopted."""

    def __init__(self, folder: str | Path, legacy: Sequence[Path] = ()) -> None:
        self.folder = Path(folder)
        self.legacy = tuple(legacy)

    @property
    def install_secret(self) -> bytes:
        """The install's fixed secret, for keyed hashes that must match across restarts (rater ids and tokens)."""
        path = self.folder / INSTALL_KEY
        if not path.exists() or any(old.exists() for old in self.legacy):
            with self._locked():
                if not path.exists():
                    adopted = next((old for old in self.legacy if old.exists()), None)
                    self._write(INSTALL_KEY, adopted.read_bytes() if adopted else secrets.token_hex(32).encode())
                    logger.info("install secret %s %s", path, f"adopted from {adopted}" if adopted else "created")
                for old in self.legacy:
                    if old.exists():
                        old.unlink()
                        logger.info("removed the old IP-hash salt %s", old)
        return path.read_bytes()

    def ip_key(self, day: date) -> bytes:
        """The key of IP hashes on ``day`` (UTC), made when the day is first asked for, replacing the day before's.

        A day before the stored key's (a clock just behind another process's) gets the stored key: the older one
        is gone.
        """
        if fixed := os.environ.get(IP_SALT_ENV):
            return fixed.encode()
        key = self._stored_ip_key(day)
        if key is None:
            with self._locked():
                key = self._stored_ip_key(day)  # another process may have made it while we waited
                if key is None:
                    key = secrets.token_hex(32).encode()
                    self._write(IP_KEY, f"{day.isoformat()} {key.decode()}\n".encode())
                    logger.info("new IP-hash key for %s", day)
        return key

    def _stored_ip_key(self, day: date) -> bytes | None:
        """The stored key if it is of ``day`` or later; None when missing, unreadable or older."""
        try:
            stored_day, key = (self.folder / IP_KEY).read_text().split()
            return key.encode() if date.fromisoformat(stored_day) >= day else None
        except (FileNotFoundError, ValueError):
            return None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the folder's lock file (the folder made 0700 if missing) while this process changes its files."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, name: str, data: bytes) -> None:
        """Write a file whole (mode 0600) and move it into place, so a reader never sees half a key."""
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.folder / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def install_keys(url: str, image_dir: str | Path, keys_dir: str | Path | None = None) -> InstallKeys:
    """The keys of the store at ``url``: in ``keys_dir``, by default ``keys`` beside a SQLite file, else beside the
    image folder. A keys folder inside the image folder is refused, because the web app serves that folder.
    """
    images = Path(image_dir).resolve()
    legacy = [images / LEGACY_SALT]
    if (db_file := sqlite_file(url)) is not None:
        db_file = db_file.resolve()
        legacy.insert(0, db_file.with_name(db_file.name + LEGACY_SALT))
    if keys_dir is None:
        keys_dir = (db_file.parent if db_file else images.parent) / "keys"
    keys = Path(keys_dir).resolve()
    if keys.is_relative_to(images):
        raise ValueError(
            f"The keys folder {keys} is inside the image folder {images}, which the web app serves; "
            "choose a keys folder outside it."
        )
    return InstallKeys(keys, legacy)
