"""Multi-head attention that can hand back the cross-attention map.

Space-MoE needs the map M (image positions x text tokens, softmax over tokens, averaged over
heads), so cross-attention computes its probabilities explicitly when asked. Self-attention
and map-free calls use ``scaled_dot_product_attention``.
"""

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Self- or cross-attention over a token sequence."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}.")
        self.heads = heads
        self.head_dim = dim // heads
        context_dim = context_dim or dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, H, N, d)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        return_map: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``x`` (B, N, C) to ``context`` (B, L, Dc), or to itself.

        ``context_mask`` (B, L) marks real tokens; pad tokens receive no attention, and a row with no real token
        gets no context (a zero output and map). With ``return_map`` the head-averaged probabilities (B, N, L)
        come back as well.
        """
        context = x if context is None else context
        q = self._split(self.to_q(x))  # (B, H, N, d)
        k = self._split(self.to_k(context))  # (B, H, L, d)
        v = self._split(self.to_v(context))  # (B, H, L, d)
        bias = empty = None
        if context_mask is not None:
            keep = context_mask.bool()  # (B, L)
            # A row without one real token attends to nothing: its softmax would be 0/0, so it looks at every token
            # and its output is zeroed below, which keeps NaN out of the forward pass and the gradients.
            empty = ~keep.any(dim=1)  # (B,)
            keep = keep | empty[:, None]
            bias = torch.zeros(keep.shape, dtype=q.dtype, device=q.device)
            bias = bias.masked_fill(~keep, float("-inf"))[:, None, None, :]  # (B, 1, 1, L)
        attn_map = None
        if return_map:
            scores = q @ k.transpose(-1, -2) * self.head_dim**-0.5  # (B, H, N, L)
            if bias is not None:
                scores = scores + bias
            probs = scores.float().softmax(dim=-1).to(q.dtype)  # (B, H, N, L)
            out = probs @ v  # (B, H, N, d)
            attn_map = probs.float().mean(dim=1)  # (B, N, L)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, N, d)
        if empty is not None:
            out = out.masked_fill(empty[:, None, None, None], 0.0)
            attn_map = None if attn_map is None else attn_map.masked_fill(empty[:, None, None], 0.0)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)  # (B, N, C)
        return self.to_out(out), attn_map
