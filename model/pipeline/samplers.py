"""The samplers a RAPHAEL checkpoint can be run with, by the names people pick them by.

One table for the app's sampler menu and the evaluator's ``--sampler``, so a sampler chosen on
validation prompts is one a user can select. Each is built from the checkpoint's own scheduler
config, which keeps its noise schedule and prediction type.
"""

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

# UI name -> scheduler class.
SAMPLERS: dict[str, type[SchedulerMixin]] = {
    "DDIM": DDIMScheduler,
    "DPM-Solver++": DPMSolverMultistepScheduler,
    "Euler": EulerDiscreteScheduler,
    "UniPC": UniPCMultistepScheduler,
}
DEFAULT_SAMPLER = "DDIM"


def build_sampler(name: str, scheduler_config: dict) -> SchedulerMixin:
    """The sampler ``name`` on the noise schedule of ``scheduler_config`` (a checkpoint's)."""
    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}.")
    return SAMPLERS[name].from_config(scheduler_config)
