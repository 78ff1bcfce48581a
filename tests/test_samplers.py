"""Samplers are built on the checkpoint's own noise schedule, by the names the app and evaluator share."""

import pytest

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


def test_unknown_sampler_names_the_choices():
    with pytest.raises(ValueError, match="DDIM, DPM-Solver\\+\\+, Euler"):
        build_sampler("PLMS", {})
