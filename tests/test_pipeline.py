"""RaphaelPipeline: seeds, buckets, schedulers, callbacks, routing, errors and the saved layout."""

import json

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler

from model.pipeline.buckets import ASPECT_BUCKETS
from model.pipeline.pipeline_raphael import RaphaelPipeline
from model.pipeline.schedule import default_scheduler
from model.unet.unet_raphael import RaphaelUNet


@pytest.fixture(scope="module")
def pipe() -> RaphaelPipeline:
    torch.manual_seed(0)
    unet = RaphaelUNet(
        block_out_channels=(8, 16, 32),
        transformer_layers_per_level=(0, 0, 1),
        mid_transformer_layers=1,
        attention_head_dim=8,
        gate_hidden_dim=8,
        norm_num_groups=4,
        edge_channels=4,
    ).eval()
    pipeline = RaphaelPipeline(unet=unet, scheduler=default_scheduler())
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def run(pipe, seed=0, **kw):
    kw.setdefault("num_inference_steps", 2)
    return pipe("two cats on a blue background", generator=torch.Generator().manual_seed(seed), output_type="np", **kw)


def test_same_seed_same_image_and_different_seed_different(pipe):
    a, b, c = run(pipe, 0).images, run(pipe, 0).images, run(pipe, 1).images
    assert a.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


@pytest.mark.parametrize("bucket", list(ASPECT_BUCKETS))
def test_every_aspect_bucket_gives_its_shape(pipe, bucket):
    height, width = pipe.aspect_buckets[bucket]
    images = run(pipe, height=height, width=width, num_images_per_prompt=2).images
    assert images.shape == (2, height, width, 3)


@pytest.mark.parametrize(
    "scheduler_cls", [DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler]
)
def test_other_schedulers_work(pipe, scheduler_cls):
    original = pipe.scheduler
    pipe.scheduler = scheduler_cls.from_config(original.config)
    try:
        images = run(pipe, num_inference_steps=3).images
    finally:
        pipe.scheduler = original
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()


def test_callback_on_step_end_sees_every_step_and_can_interrupt(pipe):
    seen = []

    def callback(p, step, timestep, kwargs):
        seen.append((step, int(timestep), tuple(kwargs["latents"].shape)))
        if step == 1:
            p._interrupt = True
        return kwargs

    run(pipe, num_inference_steps=5, callback_on_step_end=callback)
    assert [s for s, _, _ in seen] == [0, 1]
    assert seen[0][2] == (1, 3, 32, 32)


def test_return_routing_records_experts_and_masks_per_step(pipe):
    out = run(pipe, num_inference_steps=3, num_images_per_prompt=2, return_routing=True)
    assert len(out.routing) == 3
    record = out.routing[0]
    assert record.space_experts[0].shape[0] == 2  # the conditional half only
    assert record.token_masks[0].shape[:2] == (2, 64)
    assert record.time_experts[0].shape == (2,)


def test_guidance_end_guides_only_the_first_steps(pipe):
    """CFG runs the U-Net on prompt and empty prompt until guidance_end, then on the prompt alone."""
    rows = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        guided = run(pipe, num_inference_steps=5, guidance_end=0.6, num_images_per_prompt=2, return_routing=True)
        assert rows == [4, 4, 4, 2, 2]  # 0.6 of 5 steps is 3 guided steps
        assert [record.time_experts[0].shape[0] for record in guided.routing] == [2] * 5  # the prompt's images
    finally:
        hook.remove()
    unguided = run(pipe, num_inference_steps=3, guidance_end=0.0).images
    np.testing.assert_array_equal(unguided, run(pipe, num_inference_steps=3, guidance_scale=1.0).images)
    full = run(pipe, num_inference_steps=3, guidance_end=1.0).images
    np.testing.assert_array_equal(full, run(pipe, num_inference_steps=3).images)
    assert np.abs(run(pipe, num_inference_steps=3, guidance_end=0.5).images - unguided).max() > 1e-4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": ""}, "empty"),
        ({"prompt": "x" * 1001}, "1000"),
        ({"num_inference_steps": 0}, "1 to 150"),
        ({"num_inference_steps": 151}, "1 to 150"),
        ({"num_images_per_prompt": 9}, "1 to 8"),
        ({"height": 30, "width": 32}, "aspect bucket"),
        ({"guidance_scale": -1.0}, "Guidance"),
        ({"guidance_end": 1.5}, "Guidance end"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(pipe, kwargs, message):
    kwargs = {"prompt": "a cat", "num_inference_steps": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        pipe(**kwargs)


def test_save_pretrained_layout_and_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path, include_text_encoder=False)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "RaphaelPipeline"
    assert index["unet"] == ["model.unet.unet_raphael", "RaphaelUNet"]
    assert index["text_encoder"] == [None, None]
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").exists()
    loaded = RaphaelPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(run(loaded).images, run(pipe).images, atol=1e-6)


def test_a_guidance_distilled_unet_takes_the_scale_in_one_pass(pipe):
    """Inside its distilled range and without a negative prompt, one U-Net row per image carries the scale; outside
    it, or with a negative prompt, the pipeline runs two-pass CFG with the prompt-only embedding."""
    config = {key: value for key, value in pipe.unet.config.items() if not key.startswith("_")}
    student = RaphaelUNet.from_config({**config, "guidance_embeds": True, "guidance_range": (1.0, 4.0)}).eval()
    student.load_state_dict(pipe.unet.state_dict(), strict=False)  # zero embedding: the teacher's prompt-only output
    distilled = RaphaelPipeline(unet=student, scheduler=default_scheduler())
    distilled.set_progress_bar_config(disable=True)
    calls = []
    hook = student.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((args[0].shape[0], kwargs.get("guidance"))), with_kwargs=True
    )
    try:
        one_pass = run(distilled, num_inference_steps=4, guidance_scale=2.5, guidance_end=0.5).images
        assert calls == [(1, 2.5), (1, 2.5), (1, None), (1, None)]
        calls.clear()
        run(distilled, num_inference_steps=2, guidance_scale=6.0)
        run(distilled, num_inference_steps=2, guidance_scale=2.5, negative_prompt="a dog")
        assert calls == [(2, None)] * 4
    finally:
        hook.remove()
    np.testing.assert_allclose(one_pass, run(pipe, num_inference_steps=4, guidance_scale=1.0).images, atol=1e-6)
    assert (
        not pipe.embeds_guidance(2.0, None)
        and distilled.embeds_guidance(4.0, "")
        and not distilled.embeds_guidance(4.5, None)
    )
