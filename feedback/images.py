"""Content-addressed PNG files that carry their own provenance.

Each image is encoded once as PNG with its provenance as a ``parameters`` text chunk (JSON), and
stored under the sha256 of those bytes: ``<root>/ab/cdef….png``. Equal bytes land in the same
file, so re-running a seed costs no disk, and a download of the file still says how it was made.
Beside each PNG lies its JPEG copy (``cdef….jpg``, quality 95, no chroma subsampling), the form Pick-a-Pic
ships: it costs about a millisecond when the image is stored, against a second to generate it, and
spares every pairs export a decode and an encode per image (most of such an export's time otherwise).
Writes go to a temporary file in the target folder and are moved into place with
:func:`os.replace`, so a reader never sees half a file, even when two writers race.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

logger = logging.getLogger(__name__)

PROVENANCE_KEY = "parameters"
JPEG_QUALITY = 95  # with subsampling=0: the 32-px emoji keep their colour edges


@dataclass(frozen=True)
class StoredImage:
    """Where an image landed and what it is."""

    sha256: str
    relpath: str  # relative to the store root, with forward slashes
    width: int
    height: int


def model_version(model_name: str, model_hash: str) -> str:
    """A model version's label: its name, ``@`` and the first 12 hex digits of its weights hash.

    Dashboards, exports and the arena name versions by it: two tunings may share a name, never weights.
    """
    return f"{model_name}@{model_hash[:12]}"


def generated_from(provenance: dict[str, Any]) -> str:
    """The text the model generated from (``model_prompt``: the enhanced prompt or a Chinese prompt's translation).

    It is what a rater saw next to the image, so it is what a preference dataset calls the caption. Records from
    before the app stored ``model_prompt`` fall back to the enhanced prompt, then the prompt as typed.
    """
    return provenance.get("model_prompt") or provenance.get("enhanced_prompt") or provenance["prompt"]


PER_IMAGE = ("seeds", "reward_scores")  # batch provenance lists with one entry per image


def image_provenance(batch: dict[str, Any], index: int) -> dict[str, Any]:
    """Provenance of image ``index`` of a batch alone: its own seed regenerates it with ``num_images=1``.

    A batch given with per-image ``seeds`` keeps its first seed as ``batch_seed``; a best-of-n batch's per-image
    ``reward_scores`` become the image's ``reward_score``.
    """
    single = {key: value for key, value in batch.items() if key not in PER_IMAGE}
    if "reward_scores" in batch:
        single["reward_score"] = batch["reward_scores"][index]
    if "seeds" not in batch:
        return {**single, "batch_index": index}
    return {**single, "seed": batch["seeds"][index], "batch_seed": batch["seed"], "batch_index": index}


def encode_png(image: PILImage.Image, provenance: dict[str, Any]) -> bytes:
    """PNG bytes of ``image`` with ``provenance`` as sorted JSON, so equal inputs give equal bytes."""
    info = PngInfo()
    info.add_text(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True, ensure_ascii=False, default=str))
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def encode_jpeg(image: PILImage.Image) -> bytes:
    """JPEG bytes of ``image``, as Pick-a-Pic stores its images (quality 95, no chroma subsampling)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


def jpeg_copy(png: Path) -> bytes:
    """The JPEG copy kept beside the stored PNG ``png``.

    Made from the PNG and kept when missing: images stored before copies were kept have none. A folder that takes
    no files (a read-only copy) still answers, converting each time.
    """
    copy = png.with_suffix(".jpg")
    try:
        return copy.read_bytes()
    except FileNotFoundError:
        pass
    with PILImage.open(png) as image:
        data = encode_jpeg(image)
    try:
        _write_atomic(copy, data)
    except OSError as error:
        logger.debug("JPEG copy of %s not kept: %s", png, error)
    return data


def _write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file in its folder, flushed, then moved into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance stored in a PNG written by :func:`encode_png`."""
    with PILImage.open(path) as image:
        return json.loads(image.text[PROVENANCE_KEY])


class ImageFiles:
    """A folder of content-addressed PNG files, each with its JPEG copy."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def save(self, image: PILImage.Image, provenance: dict[str, Any]) -> StoredImage:
        """Write ``image`` and its JPEG copy (if its bytes are not stored yet) and say where it is.

        The copy goes first: a PNG in place always has its copy, so an export reads it and converts nothing.
        """
        data = encode_png(image, provenance)
        digest = hashlib.sha256(data).hexdigest()
        relpath = f"{digest[:2]}/{digest[2:]}.png"
        target = self.root / relpath
        if not target.with_suffix(".jpg").exists():
            _write_atomic(target.with_suffix(".jpg"), encode_jpeg(image))
        if target.exists():
            logger.debug("image %s already stored", digest)
        else:
            _write_atomic(target, data)
            logger.debug("stored image %s (%d bytes)", digest, len(data))
        return StoredImage(sha256=digest, relpath=relpath, width=image.width, height=image.height)

    def probe(self) -> None:
        """Create and remove a file in the folder; raises OSError when it takes no files now."""
        with tempfile.TemporaryFile(dir=self.root, prefix=".probe-"):
            pass

    def path(self, relpath: str) -> Path:
        """Absolute path of a stored file."""
        return self.root / relpath
