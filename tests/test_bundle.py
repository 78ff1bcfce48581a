"""The bundled RAPHAEL-tiny: it ships in the repo, loads offline and generates."""

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from model.pipeline.bundled import DEFAULT_BUNDLE, load_bundle


def test_bundle_is_small_fp16_and_in_diffusers_layout():
    index = json.loads((DEFAULT_BUNDLE / "model_index.json").read_text())
    assert index["_class_name"] == "RaphaelPipeline"
    weights = DEFAULT_BUNDLE / "unet" / "diffusion_pytorch_model.safetensors"
    from safetensors import safe_open

    with safe_open(weights, "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    total = sum(p.stat().st_size for p in DEFAULT_BUNDLE.rglob("*") if p.is_file())
    assert total <= 40e6
    assert (DEFAULT_BUNDLE / "README.md").exists()


def test_bundle_loads_and_generates_every_bucket_shape():
    pipe = load_bundle()
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.config.num_space_experts == 6 and pipe.unet.config.num_time_experts == 4
    out = pipe(
        "a red apple on the left on a blue background",
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        return_routing=True,
    )
    assert out.images.shape == (1, 32, 32, 3) and np.isfinite(out.images).all()
    assert len(out.routing) == 3


REFERENCE_IMAGE = Path(__file__).parent / "fixtures" / "bundled_image_seed1234.npy"


def fixed_seed_image(pipe) -> np.ndarray:
    """One 4-step image of the bundled model at seed 1234, as the reference file holds it."""
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        "two cats on the left on a blue background",
        num_inference_steps=4,
        guidance_scale=2.0,
        generator=torch.Generator().manual_seed(1234),
        output_type="np",
    ).images[0]


def test_bundled_model_draws_the_stored_reference_image():
    """Refactors keep behaviour: the same seed gives the image stored before model/ was split into wings."""
    image = fixed_seed_image(load_bundle())
    np.testing.assert_allclose(image, np.load(REFERENCE_IMAGE), atol=2e-3)


def test_bundle_saved_with_the_old_module_path_still_loads(tmp_path: Path):
    """Bundles written before the wings name ``model.unet_raphael``; they load and draw the same image."""
    old = tmp_path / "old-bundle"
    shutil.copytree(DEFAULT_BUNDLE, old, ignore=shutil.ignore_patterns("eval", "README.md"))
    index = json.loads((old / "model_index.json").read_text())
    assert index["unet"] == ["model.unet.unet_raphael", "RaphaelUNet"]
    index["unet"] = ["model.unet_raphael", "RaphaelUNet"]
    (old / "model_index.json").write_text(json.dumps(index))
    np.testing.assert_allclose(fixed_seed_image(load_bundle(old)), np.load(REFERENCE_IMAGE), atol=2e-3)
