"""The noise schedule RAPHAEL-tiny trains with, and the DDIM sampler built from it.

One definition serves both, so that sampling cannot drift from training.
"""

from diffusers import DDIMScheduler, DDPMScheduler

TRAIN_SCHEDULE = dict(
    num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", clip_sample=False
)


def make_noise_scheduler() -> DDPMScheduler:
    """The training schedule: v-prediction, cosine betas, no sample clipping."""
    return DDPMScheduler(**TRAIN_SCHEDULE)


def default_scheduler() -> DDIMScheduler:
    """DDIM over the training schedule, with trailing timestep spacing."""
    return DDIMScheduler(**TRAIN_SCHEDULE, set_alpha_to_one=False, timestep_spacing="trailing")
