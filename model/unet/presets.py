"""Size presets of RaphaelUNet, one line each (DiT_models style).

``tiny-dense``, ``tiny-no-space`` and ``tiny-no-time`` are the ablations of ``tiny``: a MoE with 0 experts becomes
the dense FFN of the same width (see ``RaphaelTransformerBlock``), so each leaves out one part at the same active
width. ``paper`` follows the paper's scale: 16 transformer blocks, 6 space and 4 time experts, a
1024-d text encoder and about 3B parameters. Build it on the meta device to count parameters.
"""

from typing import Any

from .unet_raphael import RaphaelUNet


def raphael_tiny(**kw: Any) -> RaphaelUNet:
    return RaphaelUNet(**kw)


def raphael_tiny_dense(**kw: Any) -> RaphaelUNet:
    return RaphaelUNet(num_space_experts=0, num_time_experts=0, **kw)


def raphael_tiny_no_space(**kw: Any) -> RaphaelUNet:
    return RaphaelUNet(num_space_experts=0, **kw)


def raphael_tiny_no_time(**kw: Any) -> RaphaelUNet:
    return RaphaelUNet(num_time_experts=0, **kw)


def raphael_paper(**kw: Any) -> RaphaelUNet:
    return RaphaelUNet(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        block_out_channels=(640, 1280, 1280),
        layers_per_block=2,
        transformer_layers_per_level=(0, 2, 2),
        mid_transformer_layers=0,
        attention_head_dim=64,
        cross_attention_dim=1024,
        ffn_mult=4.0,
        gate_hidden_dim=1024,
        norm_num_groups=32,
        **kw,
    )


RAPHAEL_PRESETS = {
    "tiny": raphael_tiny,
    "tiny-dense": raphael_tiny_dense,
    "tiny-no-space": raphael_tiny_no_space,
    "tiny-no-time": raphael_tiny_no_time,
    "paper": raphael_paper,
}
