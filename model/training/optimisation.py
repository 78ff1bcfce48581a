"""What pre-training and preference tuning share: EMA weights, the warm-up/cool-down schedule and one optimiser step.

Both CLIs resume from the same ``state.pt`` layout, so they must agree on these pieces exactly.
"""

import torch
from accelerate import Accelerator

GRAD_CLIP = 1.0


class EMA:
    """Exponential moving average of the weights with decay ``min(0.999, (1 + step) / (10 + step))``."""

    def __init__(self, model: torch.nn.Module, max_decay: float = 0.999):
        self.max_decay = max_decay
        self.shadow = [p.detach().clone().float() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.max_decay, (1 + step) / (10 + step))
        params = [p.detach().float() for p in model.parameters()]
        torch._foreach_lerp_(self.shadow, params, 1 - decay)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        for s, p in zip(self.shadow, model.parameters()):
            p.copy_(s.to(p.dtype))


def warmup_schedule(
    optimizer: torch.optim.Optimizer, warmup: int, start: int, total: int = 0, cooldown: int = 0, rewarm: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, constant, then a linear cool-down to zero over the last
    ``cooldown`` of ``total`` steps; ``start`` > 0 resumes it at that step, and ``rewarm`` > 0 warms up again from
    that step (a run restored without its optimiser's moments).

    The constant phase does not depend on the run's length, so a finished run can be extended and
    cooled later with the same rates as if it had been planned that way from its first step.
    """

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1 - rewarm) / warmup)
        return min(warm, (total - step) / cooldown) if cooldown else warm

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=start - 1 if start else -1)


def optimiser_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: EMA,
    loss: torch.Tensor,
    step: int,
) -> torch.Tensor:
    """Backward, clip the gradient norm to ``GRAD_CLIP``, step optimiser and schedule, update the EMA.

    Returns the gradient norm before clipping, for the training log.
    """
    accelerator.backward(loss)
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    ema.update(accelerator.unwrap_model(model), step)
    return grad_norm
