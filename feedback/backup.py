"""Back up and restore the feedback data of one host: the database, the image folder and, on request, the keys.

A backup is one folder, or one ``.tar`` of it, holding

- the database: ``database.sqlite3`` from SQLite's online backup API, which copies in one read transaction, so the
  copy is one moment's state (the WAL included) while the app goes on writing; or ``database.dump`` from
  ``pg_dump --format=custom``, run inside the snapshot in which the manifest's counts were read;
- ``images/``: the image folder's files, the content-addressed PNGs that carry their provenance (dotfiles, such as
  half-written temporary files, are skipped);
- ``keys/``, only with ``--with-keys``: the install secret and the IP-hash key (:mod:`feedback.keys`);
- ``manifest.json``: when it was made (UTC), the backend, the database's Alembic revision, its numbers of raters,
  images and votes, and the sha256 of every file.

The database is copied before the images: the store writes an image's file before its row, so every row of the copy
finds its file. A backup is written into a temporary folder beside ``--out`` and renamed when complete.

Restore checks every hash before it writes anything and refuses a database that already holds feedback unless
``--force``. It writes the images first (each file moved into place whole), then the database: a SQLite file is
written beside the target and renamed over it (stale ``-wal``/``-shm``/``-journal`` files removed, since SQLite would
replay them into the new file); PostgreSQL gets ``pg_restore --clean --if-exists --no-owner --single-transaction``.
Either way the database is the old one or the new one, never a mix. Stop the app before restoring.

The keys are secrets and stay out of backups by default: a backup is copied to other disks and hosts, and whoever
holds the install secret can sign rater tokens. Without it, though, the raters' cookies stop working after a restore
and every returning rater is counted as a new one; ``--with-keys`` copies the keys (folder 0700, files 0600).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, create_engine, func, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool
from tqdm import tqdm

from feedback.cli import add_store_arguments
from feedback.engine import sqlite_file
from feedback.keys import INSTALL_KEY, install_keys
from feedback.migrate import MIGRATIONS_DIR
from feedback.models import Image, Rater, Vote

logger = logging.getLogger(__name__)

FORMAT = 1  # of the manifest; a restore refuses any other
MANIFEST = "manifest.json"
DATABASE_FILES = {"sqlite": "database.sqlite3", "postgresql": "database.dump"}
IMAGES, KEYS = "images", "keys"
COUNTED = {"votes": Vote, "images": Image, "raters": Rater}
_CHUNK = 1 << 20
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


class BackupError(ValueError):
    """A refusal the operator can act on, in one sentence that names the option."""


@dataclass(frozen=True)
class Manifest:
    """What a backup holds; ``files`` maps each path inside it (forward slashes) to its sha256."""

    created_at: str
    backend: str
    alembic_revision: str | None
    counts: dict[str, int]
    files: dict[str, str]
    format: int = FORMAT


# -- backup -----------------------------------------------------------------------------------------


def backup(url: str, image_dir: str | Path, out: str | Path, keys_dir: str | Path | None = None) -> Manifest:
    """Write a backup of the store at ``url`` and ``image_dir`` to ``out`` (a new folder, or a file ending in
    ``.tar``); ``keys_dir``: also copy the install keys from that folder (None leaves them out)."""
    parsed, images, out = _parse(url), Path(image_dir), Path(out)
    if out.exists():
        raise BackupError(f"--out: {out} already exists; choose a new path for the backup.")
    if not images.is_dir():
        raise BackupError(f"--image-dir: {images} is not a folder.")
    if out.resolve().is_relative_to(images.resolve()):
        raise BackupError(f"--out: {out} is inside the image folder, which the web app serves; choose a path outside.")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.partial-") as scratch:
        folder = Path(scratch) / "backup"
        folder.mkdir(mode=0o700)
        database = folder / DATABASE_FILES[parsed.get_backend_name()]
        # 1. the database, before the images, so every image row finds its file
        revision, counts = _dump(parsed, database)
        files = {database.name: _sha256(database)}
        # 2. the images
        for source in tqdm(_files(images), desc="copying images", unit="file", disable=None):
            name = f"{IMAGES}/{source.relative_to(images).as_posix()}"
            files[name] = _install(source, folder / name, 0o644)
        # 3. the keys, when asked for
        if keys_dir is not None:
            files.update(_copy_keys(Path(keys_dir), folder / KEYS))
        manifest = Manifest(
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            backend=parsed.get_backend_name(),
            alembic_revision=revision,
            counts=counts,
            files=files,
        )
        (folder / MANIFEST).write_text(json.dumps(dataclasses.asdict(manifest), indent=2) + "\n")
        if out.suffix == ".tar":
            with tarfile.open(folder.with_suffix(".tar"), "w") as tar:
                tar.add(folder, arcname=".")
            folder = folder.with_suffix(".tar")
            os.chmod(folder, 0o600)  # it holds the database, like the 0700 folder
        os.replace(folder, out)
    logger.info("backed up %s (%s) and %d files to %s", _shown(parsed), _describe(counts), len(files), out)
    return manifest


def _dump(url: URL, target: Path) -> tuple[str | None, dict[str, int]]:
    """Copy the database at ``url`` into ``target``; the Alembic revision and counts of that copy."""
    if url.get_backend_name() == "sqlite":
        source = _sqlite_file(url)
        if not source.is_file():
            raise BackupError(f"--db: there is no SQLite database at {source}.")
        with (
            closing(sqlite3.connect(f"{source.resolve().as_uri()}?mode=rw", uri=True)) as live,
            closing(sqlite3.connect(target)) as copy,
        ):
            live.execute("PRAGMA busy_timeout=5000")
            live.backup(copy)  # all pages in one step: one read transaction, so the writers go on
            copy.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
        os.chmod(target, 0o600)
        with _connection(_parse(f"sqlite:///{target}"), "--db") as connection:
            return _contents(connection)
    with _connection(url, "--db") as connection:
        connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():  # pg_dump reads the snapshot the counts are read in
            snapshot = connection.scalar(text("SELECT pg_export_snapshot()"))
            contents = _contents(connection)
            _pg_tool("pg_dump", url, ["--format=custom", f"--snapshot={snapshot}", f"--file={target}"], "--db")
    return contents


def _copy_keys(source: Path, target: Path) -> dict[str, str]:
    """Copy the keys folder's files (0700 folder, 0600 files); their names in the backup and sha256."""
    if not (source / INSTALL_KEY).is_file():
        raise BackupError(f"--keys-dir: {source} holds no install secret ({INSTALL_KEY}); name the keys folder.")
    target.mkdir(mode=0o700)
    return {f"{KEYS}/{path.name}": _install(path, target / path.name, 0o600) for path in _files(source)}


# -- restore ----------------------------------------------------------------------------------------


def restore(
    source: str | Path, url: str, image_dir: str | Path, keys_dir: str | Path | None = None, force: bool = False
) -> Manifest:
    """Restore the backup at ``source`` (folder or ``.tar``) into the database at ``url`` and ``image_dir``;
    ``keys_dir``: also restore the keys there. A database with feedback in it is replaced only with ``force``."""
    parsed, images, source = _parse(url), Path(image_dir), Path(source)
    if not source.exists():
        raise BackupError(f"--from: there is no backup at {source}.")
    with _unpacked(source) as folder:
        # 1. check everything before writing anything
        manifest = _read_manifest(folder, source)
        database = _check(manifest, folder, source, parsed, keys_dir is not None)
        counts = _target_counts(parsed)
        if any(counts.values()) and not force:
            raise BackupError(
                f"--db: the database at {_shown(parsed)} already holds {_describe(counts)}; "
                "pass --force to replace it."
            )
        if keys_dir is not None:
            _check_keys_target(folder, Path(keys_dir), force)
        # 2. the images, so that every row of the new database finds its file
        image_files = [name for name in manifest.files if name.startswith(f"{IMAGES}/")]
        for name in tqdm(image_files, desc="restoring images", unit="file", disable=None):
            _install(folder / name, images / PurePosixPath(name).relative_to(IMAGES), 0o644)
        # 3. the keys
        if keys_dir is not None:
            Path(keys_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(keys_dir, 0o700)
            for name in (name for name in manifest.files if name.startswith(f"{KEYS}/")):
                _install(folder / name, Path(keys_dir) / PurePosixPath(name).name, 0o600)
        elif any(name.startswith(f"{KEYS}/") for name in manifest.files):
            logger.warning(
                "the backup holds the install keys, left out: without --with-keys raters' cookies "
                "of the backed-up install are not recognised here"
            )
        # 4. the database, in one step
        _load(database, parsed)
    with _connection(parsed, "--db") as connection:
        restored = _contents(connection)
    if restored != (manifest.alembic_revision, manifest.counts):
        raise BackupError(
            f"--db: the restored database holds {_describe(restored[1])} at revision {restored[0]}, "
            f"not the manifest's {_describe(manifest.counts)} at {manifest.alembic_revision}."
        )
    logger.info("restored %s (%s) from %s", _shown(parsed), _describe(manifest.counts), source)
    return manifest


@contextmanager
def _unpacked(source: Path) -> Iterator[Path]:
    """The backup folder: ``source`` itself, or a ``.tar`` unpacked into a temporary folder (``$TMPDIR``), so that
    nothing of the target is touched before the hashes are checked."""
    if source.is_dir():
        yield source
        return
    if not tarfile.is_tarfile(source):
        raise BackupError(f"--from: {source} is neither a backup folder nor a .tar of one.")
    with tempfile.TemporaryDirectory(prefix="raphael-restore-") as folder, tarfile.open(source) as tar:
        tar.extractall(folder, filter="data")  # refuses links and paths that leave the folder
        yield Path(folder)


def _read_manifest(folder: Path, source: Path) -> Manifest:
    try:
        manifest = Manifest(**json.loads((folder / MANIFEST).read_text()))
    except FileNotFoundError as error:
        raise BackupError(f"--from: {source} holds no {MANIFEST}, so it is no backup made by this tool.") from error
    except (ValueError, TypeError) as error:
        raise BackupError(f"--from: the {MANIFEST} of {source} cannot be read ({error}).") from error
    if manifest.format != FORMAT:
        raise BackupError(f"--from: {source} is a backup of format {manifest.format}; this tool reads {FORMAT}.")
    return manifest


def _check(manifest: Manifest, folder: Path, source: Path, url: URL, with_keys: bool) -> Path:
    """Refuse a backup that does not fit the target or whose files do not match their hashes; its database file."""
    backend = url.get_backend_name()
    if manifest.backend != backend:
        raise BackupError(f"--db: the backup holds a {manifest.backend} database, which cannot go into {backend}.")
    try:
        ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(manifest.alembic_revision)
    except CommandError as error:
        raise BackupError(
            f"--from: the backup's database is at migration {manifest.alembic_revision}, which this version of the "
            "demo does not know; restore it with the version that made it."
        ) from error
    if DATABASE_FILES[backend] not in manifest.files:
        raise BackupError(f"--from: the manifest of {source} lists no {DATABASE_FILES[backend]}.")
    if with_keys and not any(name.startswith(f"{KEYS}/") for name in manifest.files):
        raise BackupError(f"--with-keys: {source} holds no keys; it was made without --with-keys.")
    for name, digest in tqdm(manifest.files.items(), desc="verifying", unit="file", disable=None):
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts:
            raise BackupError(f"--from: the manifest of {source} names {name!r}, a path outside the backup.")
        if not (folder / path).is_file():
            raise BackupError(f"--from: {source} lacks {name}, which its manifest lists.")
        if _sha256(folder / path) != digest:
            raise BackupError(f"--from: {name} in {source} does not match its sha256 in the manifest.")
    return folder / DATABASE_FILES[backend]


def _target_counts(url: URL) -> dict[str, int]:
    """Raters, images and votes already in the target database; zeros where it or its tables do not exist yet."""
    if url.get_backend_name() == "sqlite" and not _sqlite_file(url).exists():
        return dict.fromkeys(COUNTED, 0)
    with _connection(url, "--db") as connection:
        return _contents(connection)[1]


def _check_keys_target(folder: Path, keys_dir: Path, force: bool) -> None:
    """Refuse to replace a different install secret without ``force``: its raters' cookies would stop working."""
    current, restored = keys_dir / INSTALL_KEY, folder / KEYS / INSTALL_KEY
    if current.is_file() and restored.is_file() and current.read_bytes() != restored.read_bytes() and not force:
        raise BackupError(
            f"--keys-dir: {keys_dir} already holds a different install secret, whose raters would lose their "
            "cookies; pass --force to replace it."
        )


def _load(database: Path, url: URL) -> None:
    """Put the backup's database in place of the target's, all at once."""
    if url.get_backend_name() == "postgresql":
        _pg_tool(
            "pg_restore", url, ["--clean", "--if-exists", "--no-owner", "--single-transaction", str(database)], "--db"
        )
        return
    target = _sqlite_file(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged, _ = _stage(database, target.parent, 0o644)
    for suffix in _SQLITE_SIDE_FILES:  # SQLite would replay them into the new file
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(staged, target)


# -- helpers ----------------------------------------------------------------------------------------


def _parse(url: str) -> URL:
    """The URL of a SQLite file or a PostgreSQL database, the two backends a backup knows."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise BackupError(f"--db: {url!r} is not a database URL (try sqlite:///data/feedback.db).") from error
    if parsed.get_backend_name() not in DATABASE_FILES:
        raise BackupError(f"--db: backups know SQLite and PostgreSQL, not {parsed.get_backend_name()}.")
    return parsed


def _sqlite_file(url: URL) -> Path:
    if (db_file := sqlite_file(url)) is None:
        raise BackupError("--db: an in-memory SQLite database has no file to back up or restore.")
    return db_file


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


@contextmanager
def _connection(url: URL, field: str) -> Iterator[Connection]:
    """A connection of its own (no pool left behind); a database that cannot be reached is a sentence."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        try:
            connection = engine.connect()
        except OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0].rstrip(".")
            raise BackupError(f"{field}: cannot connect to {_shown(url)} ({reason}).") from error
        with connection:
            yield connection
    finally:
        engine.dispose()


def _contents(connection: Connection) -> tuple[str | None, dict[str, int]]:
    """The database's Alembic revision and its numbers of raters, images and votes (0 for a missing table)."""
    revision = MigrationContext.configure(connection).get_current_revision()
    tables = set(inspect(connection).get_table_names())
    counts = {
        name: connection.scalar(select(func.count()).select_from(model)) if model.__tablename__ in tables else 0
        for name, model in COUNTED.items()
    }
    return revision, counts


def _pg_tool(tool: str, url: URL, args: list[str], field: str) -> None:
    """Run pg_dump or pg_restore on ``url``; the password goes through the environment, never the command line."""
    path = shutil.which(tool) or max(
        glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), key=lambda p: int(Path(p).parts[-3]), default=None
    )
    if path is None:
        raise BackupError(f"{field}: {tool} is not installed; install the PostgreSQL client tools.")
    env = dict(os.environ, PGPASSWORD=url.password) if url.password else None
    libpq = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    command = [path, "--no-password", f"--dbname={libpq}", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[0].rstrip(".")
        raise BackupError(f"{field}: {tool} failed on {_shown(url)} ({reason}).")


def _files(folder: Path) -> list[Path]:
    """The files under ``folder``, sorted, less dotfiles and whatever is in dot-folders."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stage(source: Path, folder: Path, mode: int) -> tuple[Path, str]:
    """Copy ``source`` into a new temporary file in ``folder`` (flushed to disk); its path and the sha256 copied."""
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with source.open("rb") as reader, os.fdopen(fd, "wb") as writer:
            os.fchmod(writer.fileno(), mode)
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), digest.hexdigest()


def _install(source: Path, target: Path, mode: int) -> str:
    """Copy ``source`` to ``target`` whole (a reader sees the old file or the new, never half); its sha256."""
    staged, digest = _stage(source, target.parent, mode)
    os.replace(staged, target)
    return digest


# -- command line -----------------------------------------------------------------------------------

KEYS_HELP = (
    "also {verb} the install keys (the install secret that signs rater tokens, and the IP-hash key). They are "
    "secrets, so backups leave them out by default; but without the install secret the raters' cookies stop "
    "working after a restore, and every returning rater is counted as a new one"
)
CLI_EPILOG = """\
examples:
  python -m feedback.backup backup --out backups/feedback-2025-06-01.tar
  python -m feedback.backup restore --from backups/feedback-2025-06-01.tar --db sqlite:///data/feedback.db
  python -m feedback.backup backup --with-keys --keys-dir data/keys --out /secure/feedback-with-keys

Stop the app before a restore. A .tar --out gives one file; any other --out is a folder.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feedback.backup",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Back up or restore the feedback database and the image folder (and, on request, the keys).",
        epilog=CLI_EPILOG,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser(
        "backup",
        help="write a backup folder or .tar: database, images, manifest.json with sha256 of each file",
        description="Write a backup while the app runs: SQLite through its online backup API, PostgreSQL through "
        "pg_dump, then the images, and a manifest.json with counts and the sha256 of every file.",
    )
    make.add_argument("--out", required=True, type=Path, help="a new folder, or a file ending in .tar")
    back = commands.add_parser(
        "restore",
        help="restore a backup into an empty database and an image folder",
        description="Restore a backup after checking every file's sha256; a database that already holds feedback "
        "is replaced only with --force. Stop the app first.",
    )
    back.add_argument("--from", dest="source", required=True, type=Path, help="a backup folder or .tar")
    back.add_argument(
        "--force",
        action="store_true",
        help="replace a database that already holds feedback (and, with --with-keys, a different install secret)",
    )
    for command, verb in ((make, "copy"), (back, "restore")):
        add_store_arguments(command)
        command.add_argument("--with-keys", action="store_true", help=KEYS_HELP.format(verb=verb))
        command.add_argument(
            "--keys-dir",
            default=os.environ.get("RAPHAEL_KEYS_DIR"),
            help="the keys folder, read with --with-keys (default: $RAPHAEL_KEYS_DIR, else the app's: keys beside "
            "the SQLite database, or beside the image folder)",
        )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("feedback").setLevel(logging.INFO)  # our steps, not Alembic's context chatter
    command = make if args.command == "backup" else back
    try:
        keys_dir = _keys_folder(args.db, args.image_dir, args.keys_dir) if args.with_keys else None
        if args.command == "backup":
            backup(args.db, args.image_dir, args.out, keys_dir)
        else:
            restore(args.source, args.db, args.image_dir, keys_dir, force=args.force)
    except BackupError as error:
        command.error(str(error))
    return 0


def _keys_folder(url: str, image_dir: str, keys_dir: str | None) -> Path:
    """The keys folder the app uses for this store (:func:`feedback.keys.install_keys`)."""
    _parse(url)  # a URL that is none is a sentence about --db
    try:
        return install_keys(url, image_dir, keys_dir).folder
    except ValueError as error:  # a keys folder inside the served image folder
        raise BackupError(f"--keys-dir: {error}") from error


if __name__ == "__main__":
    raise SystemExit(main())
