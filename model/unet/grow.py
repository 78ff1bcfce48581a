"""Grow a trained RaphaelUNet: transformer blocks added at levels that had none, without changing what it computes.

The paper's lever for capacity is more of its blocks. A trained model grows in place of training a larger one from
scratch: each new level's ``SpatialTransformer`` is a residual branch, ``x + proj_out(blocks(x))``, and with
``proj_out`` zeroed the grown model computes exactly the trained function at its first step; training then opens
the branch. RAPHAEL-tiny attends only at 8×8, where a 10-px sprite of a 32-px scene is about two cells; a level at
16×16 gives each sprite its own region of cross-attention and of Space-MoE routing.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import RaphaelTransformerBlock, SpatialTransformer
from .unet_raphael import RaphaelUNet


def block_names(unet: RaphaelUNet) -> list[str]:
    """The transformer blocks' module names in the order the forward pass records them (down, middle, up)."""
    return [name for name, module in unet.named_modules() if isinstance(module, RaphaelTransformerBlock)]


def grow(unet: RaphaelUNet, transformer_layers_per_level: tuple[int, ...] | list[int]) -> RaphaelUNet:
    """A copy of ``unet`` with ``transformer_layers_per_level`` blocks per level, equal to it in function.

    Only levels without blocks may gain them (a block added beside trained ones would change their output); the
    edge head keeps reading the block it was trained on.
    """
    old = tuple(unet.config.transformer_layers_per_level)
    new = tuple(transformer_layers_per_level)
    if len(new) != len(old):
        raise ValueError(f"transformer_layers_per_level needs {len(old)} levels, got {len(new)}.")
    if any(n != o for n, o in zip(new, old) if o):
        raise ValueError(f"Only levels without transformer blocks can gain them: from {list(old)}, not {list(new)}.")
    edge_block = block_names(unet)[unet.config.edge_block_index]
    config = {**unet.config, "transformer_layers_per_level": new}
    grown = RaphaelUNet.from_config(config).to(unet.device)  # fp32, as a model built to train
    grown.register_to_config(edge_block_index=block_names(grown).index(edge_block))

    missing, unexpected = grown.load_state_dict(unet.state_dict(), strict=False)
    if unexpected:
        raise RuntimeError(f"Weights without a place in the grown model: {unexpected[:3]}")
    added = {name for name, module in grown.named_modules() if isinstance(module, SpatialTransformer)} - {
        name for name, module in unet.named_modules() if isinstance(module, SpatialTransformer)
    }
    if stray := [key for key in missing if not any(key.startswith(name + ".") for name in added)]:
        raise RuntimeError(f"Weights the grown model lacks outside its new levels: {stray[:3]}")
    with torch.no_grad():
        for name in added:
            proj_out: nn.Linear = grown.get_submodule(name).proj_out
            proj_out.weight.zero_()
            proj_out.bias.zero_()
    return grown
