"""The bundled RAPHAEL-tiny: where it lives in the repository and how any bundle loads for inference."""

from pathlib import Path

import torch

from model.pipeline.pipeline_raphael import RaphaelPipeline

DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "checkpoints" / "raphael-tiny"


def load_bundle(path: str | Path = DEFAULT_BUNDLE, dtype: torch.dtype = torch.float32) -> RaphaelPipeline:
    """Load a bundled pipeline; weights are stored in fp16 and computed in ``dtype`` (fp32 on CPU)."""
    return RaphaelPipeline.from_pretrained(path, dtype=dtype)
