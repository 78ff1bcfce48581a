"""On a CUDA machine: RAPHAEL-tiny generates in fp16 and matches its CPU output closely."""

import numpy as np
import pytest
import torch

from model.bundle import load_bundle


@pytest.mark.gpu
def test_bundle_generates_on_cuda_in_fp16_like_on_cpu():
    kwargs = dict(prompt="a frog on the left on a green background", num_inference_steps=10, output_type="np")
    cpu = load_bundle()
    cpu.set_progress_bar_config(disable=True)
    gpu = load_bundle(dtype=torch.float16).to("cuda")
    gpu.set_progress_bar_config(disable=True)
    latents = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = cpu(**kwargs, latents=latents).images
    b = gpu(**kwargs, latents=latents.to("cuda", torch.float16)).images
    assert b.shape == (1, 32, 32, 3)
    assert np.abs(a - b).mean() < 0.02
