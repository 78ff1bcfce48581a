"""The JPEG copy the image store keeps beside each PNG, and the pairs export that reads it instead of converting."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from feedback import images as images_module
from feedback.export import export
from feedback.images import ImageFiles, encode_jpeg, jpeg_copy
from tests.test_export import Scenario, build_scenario
from tests.test_store import provenance


def noisy(seed: int, size: int = 16) -> Image.Image:
    """An image whose JPEG differs from a solid colour's, so a wrong copy would show."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_save_keeps_a_jpeg_copy_of_the_same_pixels(tmp_path: Path) -> None:
    files = ImageFiles(tmp_path)
    image = noisy(0)
    stored = files.save(image, provenance())
    png = files.path(stored.relpath)
    copy = png.with_suffix(".jpg")
    assert copy.read_bytes() == encode_jpeg(image)
    with Image.open(png) as from_png:  # the copy is what converting the stored PNG gives
        assert encode_jpeg(from_png) == copy.read_bytes()
    with Image.open(copy) as decoded:
        assert decoded.format == "JPEG" and decoded.size == image.size
        error = np.abs(np.asarray(decoded, dtype=int) - np.asarray(image, dtype=int)).mean()
        assert error < 12  # quality 95, full chroma: close to the pixels even on noise
    assert not list(tmp_path.rglob(".tmp-*"))


def test_saving_an_image_stored_before_copies_adds_its_copy(tmp_path: Path) -> None:
    files = ImageFiles(tmp_path)
    stored = files.save(noisy(1), provenance())
    copy = files.path(stored.relpath).with_suffix(".jpg")
    copy.unlink()  # as a store written before the copies were kept
    again = files.save(noisy(1), provenance())
    assert again == stored and copy.read_bytes() == encode_jpeg(noisy(1))


def test_jpeg_copy_reads_the_copy_and_makes_a_missing_one(tmp_path: Path) -> None:
    files = ImageFiles(tmp_path)
    png = files.path(files.save(noisy(2), provenance()).relpath)
    copy = png.with_suffix(".jpg")
    copy.write_bytes(b"kept")  # the kept copy is read, not remade
    assert jpeg_copy(png) == b"kept"
    copy.unlink()
    made = jpeg_copy(png)
    assert made == encode_jpeg(noisy(2)) and copy.read_bytes() == made


def test_jpeg_copy_answers_when_the_folder_takes_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = ImageFiles(tmp_path)
    png = files.path(files.save(noisy(3), provenance()).relpath)
    png.with_suffix(".jpg").unlink()

    def refuse(target: Path, data: bytes) -> None:
        raise PermissionError(f"read-only: {target}")

    monkeypatch.setattr(images_module, "_write_atomic", refuse)
    assert jpeg_copy(png) == encode_jpeg(noisy(3))
    assert not png.with_suffix(".jpg").exists()


def pickapic_images(scenario: Scenario, out: Path, workers: int) -> dict[str, bytes]:
    """Image id → the JPEG bytes a Pick-a-Pic export carries for it."""
    export(scenario.store, "pickapic", out, "parquet", jpeg_workers=workers)
    found: dict[str, bytes] = {}
    for row in pq.read_table(out / "train.parquet").to_pylist():
        found[row["image_0_uid"]], found[row["image_1_uid"]] = row["jpg_0"], row["jpg_1"]
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_pickapic_export_carries_the_copies_and_makes_missing_ones(tmp_path: Path, workers: int) -> None:
    with build_scenario(f"sqlite:///{tmp_path / 'feedback.db'}", tmp_path / "images") as scenario:
        with_copies = pickapic_images(scenario, tmp_path / "with", workers)
        assert with_copies
        for image_id, jpeg in with_copies.items():
            copy = scenario.store.image_path(image_id).with_suffix(".jpg")
            assert jpeg == copy.read_bytes()
            with Image.open(io.BytesIO(jpeg)) as decoded:
                assert decoded.format == "JPEG"
        for copy in (tmp_path / "images").rglob("*.jpg"):
            copy.unlink()  # a store from before the copies: the export converts, the same bytes, and keeps them
        assert pickapic_images(scenario, tmp_path / "without", workers) == with_copies
        assert all(scenario.store.image_path(i).with_suffix(".jpg").exists() for i in with_copies)
