"""Edge-supervised learning: an edge head on a cross-attention map, with focal loss.

The paper supervises with HED edges. HED is a learned network we cannot fetch offline, so the
target here is a deterministic Sobel edge map of the clean image: its luminance gradient
magnitude above a fixed threshold. On flat-coloured emoji scenes Sobel finds the same outlines
HED would. The loss only applies for ``t < 500`` (of 1000), where image structure is decided.
"""

import torch
import torch.nn.functional as F
from torch import nn

EDGE_T_MAX = 500
EDGE_THRESHOLD = 0.25


class EdgeHead(nn.Module):
    """Five conv layers that predict edge logits at image size from one token's attention map."""

    def __init__(self, channels: int = 16, num_layers: int = 5):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for i in range(num_layers):
            out_ch = 1 if i == num_layers - 1 else channels
            layers.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
            if i < num_layers - 1:
                layers.append(nn.GELU())
            in_ch = out_ch
        self.net = nn.Sequential(*layers)

    def forward(self, attn_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``attn_map`` (B, 1, h, w), normalised per sample to [0, 1]; returns logits (B, 1, H, W)."""
        peak = attn_map.amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)
        x = F.interpolate(attn_map / peak, size=size, mode="bilinear", align_corners=False)  # (B, 1, H, W)
        return self.net(x)


def sobel_edges(images: torch.Tensor, threshold: float = EDGE_THRESHOLD) -> torch.Tensor:
    """Binary edge map (B, 1, H, W) of images (B, 3, H, W) in [-1, 1]."""
    rgb = (images.float().clamp(-1, 1) + 1) / 2
    luma = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])[:, None]  # (B, 1, H, W)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device) / 4
    gx = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), kx[None, None])
    gy = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), kx.t()[None, None])
    return ((gx**2 + gy**2).sqrt() > threshold).float()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss per sample (B,): ``-α_t (1 - p_t)^γ log p_t`` averaged over pixels."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # -log p_t
    p = logits.sigmoid()
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * (1 - p_t) ** gamma * bce).flatten(1).mean(dim=1)


def edge_loss(logits: torch.Tensor, clean_images: torch.Tensor, timesteps: torch.Tensor, t_max: int = EDGE_T_MAX):
    """Focal loss against Sobel edges of the clean images, averaged over samples with ``t < t_max``.

    Samples with ``t >= t_max`` contribute exactly zero, and so does a batch with none below it.
    """
    active = (timesteps < t_max).float()  # (B,)
    per_sample = focal_loss(logits, sobel_edges(clean_images))  # (B,)
    return (per_sample * active).sum() / active.sum().clamp(min=1.0)
