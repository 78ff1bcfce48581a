"""The model versions one server serves: the Generate tab's model first, then every other version for the arena.

A version is a local diffusers pipeline folder. Its label is its name and weights hash (what the store, the
exports and the leaderboard call it); its lineage comes from the ``training.json`` that preference tuning
writes: the version it was tuned from, the export it was tuned on (with that export's hash) and how.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.generation import GenerationService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelVersion:
    """What the page and the ``/leaderboard`` API say about one version."""

    label: str  # name@first 12 hex digits of the weights hash
    name: str
    path: Path
    weights_hash: str
    lineage: dict[str, Any]  # empty for a version not tuned here

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "name": self.name,
            "folder": str(self.path),  # not "path": API clients take a dict with "path" for a file to download
            "weights_hash": self.weights_hash,
            "lineage": self.lineage,
        }


def lineage(model_dir: Path) -> dict[str, Any]:
    """The base version, export and tuning of a folder tuned here (``training.json``'s ``preference``, or its
    ``distillation``, which has a base but no export)."""
    record_file = model_dir / "training.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    tuning = record.get("preference") or record.get("distillation")
    if not tuning:
        return {}
    base, export = tuning.get("base_model", {}), tuning.get("export")
    # "folder" and "location", not "path": API clients take a dict with a "path" for a file to download.
    return {
        "base": {"folder": base.get("path"), "weights_hash": base.get("weights_hash")},
        **({"export": {"location": export.get("path"), "sha256": export.get("sha256")}} if export else {}),
        "tuning": {key: value for key, value in tuning.items() if key not in {"base_model", "export"}},
    }


def version_folders(models: Sequence[Path], versions_dir: Path, missing_ok: bool = False) -> list[Path]:
    """``models`` in order, then every pipeline folder directly under ``versions_dir`` (sorted by name).

    A folder of tuning runs holds ``<run>/pipeline``: such a run counts as the version in its ``pipeline`` folder.
    ``missing_ok`` lets the default folder be absent until ``make next-version`` registers the first version.
    """
    folders = list(models)
    if not versions_dir.is_dir():
        if not missing_ok:
            raise FileNotFoundError(f"The versions folder {versions_dir} does not exist.")
    else:
        for child in sorted(p for p in versions_dir.iterdir() if p.is_dir()):
            if (child / "model_index.json").is_file():
                folders.append(child)
            elif (child / "pipeline" / "model_index.json").is_file():
                folders.append(child / "pipeline")
    return folders


class ModelVersions:
    """One GenerationService per distinct version; the first is the Generate tab's model (version 1)."""

    def __init__(self, services: Iterable[GenerationService]) -> None:
        self._services: dict[str, GenerationService] = {}
        hashes: set[str] = set()
        for service in services:
            if service.model_hash in hashes:  # a copy under another name would split one version's battles
                log.warning("%s has the weights of a version already served; skipped", service.model_dir)
                continue
            hashes.add(service.model_hash)
            self._services[service.model_version] = service
        if not self._services:
            raise ValueError("At least one model version is needed.")

    @classmethod
    def load(
        cls,
        folders: Sequence[Path],
        device: str | None = None,
        torch_threads: int | None = None,
        primary: GenerationService | None = None,
    ) -> ModelVersions:
        """Load every folder; ``primary``, when given, is the already loaded first one. The versions share one
        model lock, so that one model runs at a time."""
        services = [primary] if primary is not None else []
        model_lock = primary.model_lock if primary is not None else threading.Lock()
        for folder in folders[len(services) :]:
            services.append(GenerationService(folder, device, torch_threads, model_lock=model_lock))
        return cls(services)

    @property
    def primary(self) -> GenerationService:
        return next(iter(self._services.values()))

    @property
    def labels(self) -> list[str]:
        return list(self._services)

    def service(self, label: str) -> GenerationService:
        if label not in self._services:
            raise ValueError(f"Unknown model version {label!r}; choose one of {', '.join(self._services)}.")
        return self._services[label]

    def describe(self) -> list[ModelVersion]:
        return [
            ModelVersion(label, s.model_name, s.model_dir, s.model_hash, lineage(s.model_dir))
            for label, s in self._services.items()
        ]
