"""Building blocks of the RAPHAEL U-Net: conv ResBlocks and RAPHAEL transformer blocks.

At this scale convolutions give the locality prior that lets small models form shapes, so the
tiny preset keeps ResBlocks at high resolution and transformer blocks at low resolution.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention
from .embeddings import sincos_2d
from .moe import FeedForward, MoEOutput, SpaceMoE, TimeMoE


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv residual block with a timestep scale and shift."""

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb = nn.Linear(temb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, O, H, W)
        scale, shift = self.temb(F.silu(temb))[:, :, None, None].chunk(2, dim=1)  # (B, O, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Stride-2 convolution."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to a given size, then a convolution."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


@dataclass
class BlockRecord:
    """Routing record of one transformer block (None where the block is dense)."""

    attn_map: torch.Tensor  # (B, N, L)
    grid: tuple[int, int]
    space: MoEOutput | None
    time: MoEOutput | None


class RaphaelTransformerBlock(nn.Module):
    """self-attn -> cross-attn -> Time-MoE -> Space-MoE, each pre-norm and residual.

    With 0 experts a MoE becomes a dense FFN of the same width: the same active parameters,
    which makes it the ablation baseline.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        text_dim: int,
        temb_dim: int,
        num_space_experts: int,
        num_time_experts: int,
        ffn_dim: int,
        gate_hidden_dim: int,
        mask_threshold: float,
        router_jitter: float,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads, context_dim=text_dim)
        self.norm3 = nn.LayerNorm(dim)
        if num_time_experts > 0:
            self.time_ffn = TimeMoE(dim, temb_dim, num_time_experts, ffn_dim, gate_hidden_dim, router_jitter)
        else:
            self.time_ffn = FeedForward(dim, ffn_dim)
        self.norm4 = nn.LayerNorm(dim)
        if num_space_experts > 0:
            self.space_ffn = SpaceMoE(
                dim, text_dim, num_space_experts, ffn_dim, gate_hidden_dim, mask_threshold, router_jitter
            )
        else:
            self.space_ffn = FeedForward(dim, ffn_dim)

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, need_map: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, MoEOutput | None, MoEOutput | None]:
        x = x + self.self_attn(self.norm1(x))[0]  # (B, N, C)
        is_space_moe = isinstance(self.space_ffn, SpaceMoE)
        attn_out, attn_map = self.cross_attn(self.norm2(x), text, text_mask, return_map=need_map or is_space_moe)
        x = x + attn_out  # (B, N, C)
        time_out = None
        if isinstance(self.time_ffn, TimeMoE):
            time_out = self.time_ffn(self.norm3(x), temb)
            x = x + time_out.hidden_states
        else:
            x = x + self.time_ffn(self.norm3(x))
        space_out = None
        if is_space_moe:
            space_out = self.space_ffn(self.norm4(x), text, text_mask, attn_map)
            x = x + space_out.hidden_states
        else:
            x = x + self.space_ffn(self.norm4(x))
        return x, attn_map, space_out, time_out


class SpatialTransformer(nn.Module):
    """Runs RAPHAEL transformer blocks over a feature map (B, C, H, W) as tokens (B, H*W, C)."""

    def __init__(self, channels: int, depth: int, groups: int, **block_kwargs):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.proj_in = nn.Linear(channels, channels)
        self.blocks = nn.ModuleList([RaphaelTransformerBlock(channels, **block_kwargs) for _ in range(depth)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, need_maps: bool
    ) -> tuple[torch.Tensor, list[BlockRecord]]:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, N, C)
        tokens = self.proj_in(tokens) + sincos_2d(h, w, c, x.device).to(tokens.dtype)[None]  # (B, N, C)
        records = []
        for block in self.blocks:
            tokens, attn_map, space, time = block(tokens, temb, text, text_mask, need_maps)
            records.append(BlockRecord(attn_map, (h, w), space, time))
        tokens = self.proj_out(tokens)  # (B, N, C)
        return x + tokens.transpose(1, 2).reshape(b, c, h, w), records
