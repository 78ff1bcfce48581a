"""A pipeline folder's identity: the hash of its weights and the version name it is shown under.

The app, its dashboard and preference tuning's lineage record must agree on both, so both live here once.
"""

import hashlib
import json
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def files_sha256(root: Path, files: list[Path]) -> str:
    """sha256 over ``files`` (path relative to ``root``, then bytes; sorted): one identity for a set of files."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def weights_hash(model_dir: Path) -> str:
    """sha256 over every weight file of a pipeline folder, so a checkpoint has one identity."""
    files = [p for p in model_dir.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)]
    if not files:
        raise ValueError(f"No weight files (*.safetensors, *.bin) under {model_dir}.")
    return files_sha256(model_dir, files)


def model_name(model_dir: Path) -> str:
    """The ``name`` in the folder's ``training.json`` (a tuned version, see ``model.training.preference``), else
    the folder's name: a tuned model lives in ``<run>/pipeline`` and must not show as ``pipeline``.
    """
    record = model_dir / "training.json"
    return (json.loads(record.read_text()) if record.is_file() else {}).get("name") or model_dir.resolve().name
