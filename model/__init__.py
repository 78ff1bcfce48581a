"""RAPHAEL-tiny: model, pipeline, data and training.

Heavy classes are imported lazily, so light modules such as ``model.offline`` and
``model.pipeline.buckets`` stay cheap. diffusers resolves saved components as ``getattr(model, name)``,
which this lazy lookup also serves.
"""

from importlib import import_module

_LAZY = {
    "RaphaelUNet": "model.unet.unet_raphael",
    "RaphaelUNetOutput": "model.unet.unet_raphael",
    "RaphaelPipeline": "model.pipeline.pipeline_raphael",
    "RaphaelPipelineOutput": "model.pipeline.pipeline_output",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
