"""The device kit: a pruned text encoder that reads the domain's captions as the packaged one does, and a diffusers
zip that training imports from, both small enough to travel to a GPU machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.device_kit import CARRY_LIMIT, build_diffusers, build_encoder, folder_bytes, unpack_encoder
from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.pipeline.text_encoder import ENCODER_ENV, encode_text, load_text_encoder
from tests.test_train import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kit_encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    folder = tmp_path_factory.mktemp("kit") / "text-encoder"
    kept = build_encoder(folder, captions=3000, check=0)
    return unpack_encoder(folder, folder.parent / "unpacked"), kept


def test_the_kit_encoder_reads_the_domains_captions_as_the_package_does(
    kit_encoder: tuple[Path, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, kept = kit_encoder
    assert 0 < kept["kept_tokens"] < kept["vocabulary"] // 10  # the captions use a few hundred of 30,522 words
    assert folder_bytes(folder.parent / "text-encoder") < 24 * 2**20  # what travels
    data = EmojiScenes(SceneConfig(max_objects=3, max_count=3, paraphrases=True), seed=0)
    captions = [data.describe(i)[0] for i in range(0, 3000, 47)] + [""]  # kept captions, and caption dropout's
    packaged = encode_text(*load_text_encoder(), captions)
    monkeypatch.setenv(ENCODER_ENV, str(folder))  # how the GPU machine finds it
    from_kit = encode_text(*load_text_encoder(), captions)
    assert torch.equal(from_kit[1], packaged[1])  # the same tokens
    real = packaged[1].bool()
    torch.testing.assert_close(from_kit[0][real], packaged[0][real], atol=2e-3, rtol=1e-2)  # fp16 weights


@pytest.mark.slow
def test_training_runs_on_the_diffusers_zip_alone(tmp_path: Path) -> None:
    """With the zip first on PYTHONPATH, diffusers comes from it, and a tiny training run (scheduler, U-Net, saving
    the EMA weights) goes through: the modules a GPU machine needs are all in it."""
    archive = tmp_path / "diffusers.zip"
    assert build_diffusers(archive) > 100
    config = tmp_path / "unet.json"
    config.write_text(json.dumps(TINY))
    script = (
        "import diffusers, sys; assert diffusers.__file__.startswith(sys.argv[1]), diffusers.__file__; "
        "from model.training.train import main; "
        f"main(['--out', sys.argv[2], '--unet-config', {str(config)!r}, '--steps', '2', '--batch-size', '4', "
        "'--num-emoji', '4', '--max-objects', '1', '--threads', '1'])"
    )
    env = {**os.environ, "PYTHONPATH": f"{archive}{os.pathsep}{ROOT}"}
    run = subprocess.run(
        [sys.executable, "-c", script, str(archive), str(tmp_path / "run")], cwd=ROOT, env=env, capture_output=True
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert (tmp_path / "run" / "unet" / "config.json").exists()
    assert archive.stat().st_size < 4 * 2**20 < CARRY_LIMIT
