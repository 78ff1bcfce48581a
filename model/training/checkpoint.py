"""The resumable state of a training run: one ``state.pt`` with the weights, their EMA and the optimizer.

Pre-training (``model.training.train``) and preference tuning (``model.training.preference``) both resume from it
after being killed. It is written to a temporary file and renamed, so a kill never leaves half a
checkpoint; each caller adds its own extras (arguments, RNG state) beside the common keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import torch

# How the optimizer computes, chosen by the machine it runs on (one fused kernel on a GPU), not by the one that saved.
IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")


class Averaged(Protocol):
    """An exponential moving average of a model's parameters, as a list of fp32 tensors."""

    shadow: list[torch.Tensor]


def save_state(
    path: Path, *, step: int, model: torch.nn.Module, ema: Averaged, optimizer: torch.optim.Optimizer, **extra: Any
) -> None:
    """``torch.save`` the state after ``step`` to a temporary file, then rename it over ``path``."""
    state = {
        "step": step,
        "model": model.state_dict(),
        "ema": ema.shadow,
        "optimizer": optimizer.state_dict(),
        **extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(
    path: Path, model: torch.nn.Module, ema: Averaged, optimizer: torch.optim.Optimizer
) -> dict[str, Any] | None:
    """Restore model, EMA and optimizer from ``path`` in place; the whole state (step, extras), or None.

    The optimizer keeps its own implementation flags: a run saved on a CPU and resumed on a GPU takes the GPU's
    fused kernel, where loading the saved groups whole would bring the CPU's choice along.
    """
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    ema.shadow = [tensor.float() for tensor in state["ema"]]
    own = [{k: group[k] for k in IMPLEMENTATION_FLAGS if k in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    for group, flags in zip(optimizer.param_groups, own, strict=True):
        group.update(flags)
    return state
