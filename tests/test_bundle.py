"""The bundled RAPHAEL-tiny: it ships in the repo, loads offline and generates."""

import json

import numpy as np
import torch

from model.bundle import DEFAULT_BUNDLE, load_bundle


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
