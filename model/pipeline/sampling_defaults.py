"""A pipeline folder's own sampling defaults: the sampler, steps, CFG scale and guidance end its ``training.json``
recommends.

``python -m model.evaluation.sampler_curve --set-default`` writes them (under ``sampling``) once a setting cheaper
than the reference has matched it on validation prompts, with that evidence beside them. The app starts its
controls from them; the guidance end (the share of steps that use CFG) has no control and applies to every image of
the version, recorded in its provenance. A folder without them keeps the pipeline's call defaults.
"""

import json
from pathlib import Path
from typing import Any

from model.pipeline.limits import MAX_GUIDANCE, MAX_STEPS
from model.pipeline.samplers import SAMPLERS

SAMPLING_KEY = "sampling"


def sampling_defaults(model_dir: Path) -> dict[str, Any]:
    """``{"sampler", "num_inference_steps", "guidance_scale", "guidance_end", "evidence"}`` or ``{}``.

    The keys are the pipeline's call arguments (and the sampler's menu name), so a caller looks them up by the
    argument it sets. A value outside the menu or the pipeline's limits is an error that names the file.
    """
    record = Path(model_dir) / "training.json"
    sampling = (json.loads(record.read_text()) if record.is_file() else {}).get(SAMPLING_KEY) or {}
    checks = {
        "sampler": lambda v: v in SAMPLERS,
        "num_inference_steps": lambda v: isinstance(v, int) and 1 <= v <= MAX_STEPS,
        "guidance_scale": lambda v: isinstance(v, int | float) and 0 <= v <= MAX_GUIDANCE,
        "guidance_end": lambda v: isinstance(v, int | float) and 0 <= v <= 1,
    }
    for key, valid in checks.items():
        if key in sampling and not valid(sampling[key]):
            raise ValueError(f"{record}: sampling {key} {sampling[key]!r} is not one the pipeline accepts.")
    return sampling
