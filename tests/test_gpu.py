"""On a CUDA machine: RAPHAEL-tiny generates in fp16 like on CPU, and training runs and resumes there."""

import numpy as np
import pytest
import torch

from model.pipeline.bundled import load_bundle
from model.training.train import main
from tests.test_train import run_args


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


@pytest.mark.gpu
def test_training_resumes_on_cuda_with_its_ema_beside_the_weights(tmp_path):
    """The EMA shadow lives on the weights' device: a CPU shadow broke the first GPU step."""
    main(run_args(tmp_path, 2))
    main(run_args(tmp_path, 4))  # resumes: the shadow comes back from a CPU checkpoint
    state = torch.load(tmp_path / "run" / "state.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 4 and all(torch.isfinite(t).all() for t in state["ema"])
