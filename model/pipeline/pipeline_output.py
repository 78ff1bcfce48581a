"""Output of RaphaelPipeline."""

from dataclasses import dataclass

import numpy as np
import PIL.Image
from diffusers.utils import BaseOutput

from model.unet.unet_raphael import RoutingRecord


@dataclass
class RaphaelPipelineOutput(BaseOutput):
    """
    Output class for RAPHAEL pipelines.

    Args:
        images (`list[PIL.Image.Image]` or `np.ndarray`):
            Denoised images of length `batch_size` or a numpy array of shape `(batch_size, height, width, 3)`.
        routing (`list[RoutingRecord]`, *optional*):
            One record per denoising step (conditional branch, on the CPU) when `return_routing=True`:
            the expert of every text token and sample, and every token's image region.
    """

    images: list[PIL.Image.Image] | np.ndarray
    routing: list[RoutingRecord] | None = None
