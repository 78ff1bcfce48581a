"""Samplers are built on the checkpoint's own noise schedule, by the names the app and evaluator share."""

import pytest
from diffusers import UniPCMultistepScheduler

from model.pipeline.bundled import DEFAULT_BUNDLE
from model.pipeline.samplers import DEFAULT_SAMPLER, SAMPLERS, build_sampler


def test_every_sampler_keeps_the_checkpoint_schedule():
    config = SAMPLERS[DEFAULT_SAMPLER].from_pretrained(DEFAULT_BUNDLE / "scheduler").config
    for name, cls in SAMPLERS.items():
        sampler = build_sampler(name, config)
        assert isinstance(sampler, cls)
        assert sampler.config.prediction_type == config.prediction_type == "v_prediction"
        assert sampler.config.beta_schedule == config.beta_schedule
        assert sampler.config.num_train_timesteps == config.num_train_timesteps


def test_unipc_loads_from_the_bundled_checkpoint_config_and_spans_its_schedule():
    """UniPC reads the bundle's DDIM config (v-prediction, trailing spacing) and steps over the same timesteps."""
    config = SAMPLERS[DEFAULT_SAMPLER].from_pretrained(DEFAULT_BUNDLE / "scheduler").config
    unipc, ddim = build_sampler("UniPC", config), build_sampler("DDIM", config)
    assert isinstance(unipc, UniPCMultistepScheduler) and unipc.config.predict_x0
    assert unipc.config.timestep_spacing == config.timestep_spacing == "trailing"
    unipc.set_timesteps(6)
    ddim.set_timesteps(6)
    assert unipc.timesteps.tolist() == ddim.timesteps.tolist() == [999, 832, 666, 499, 332, 166]


def test_unknown_sampler_names_the_choices():
    with pytest.raises(ValueError, match="DDIM, DPM-Solver\\+\\+, Euler, UniPC"):
        build_sampler("PLMS", {})
