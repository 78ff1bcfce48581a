"""Mixture-of-experts layers of RAPHAEL: a top-1 router, Space-MoE and Time-MoE.

Gradient into the gate: routing is a hard top-1 argmax, which has no gradient. We follow the
Switch Transformer: each expert's output is scaled by the gate probability of the chosen
expert, so the gate learns through that product, and a load-balancing loss (Switch eqs. 4-6)
keeps the experts from collapsing onto one.

Experts are bias-free GELU FFNs. That is what makes the efficient Space-MoE exact: with
``e(0) = 0`` and a per-position FFN, ``e(h * m) = e(h) * m`` for every binary mask ``m``, so each
used expert runs once, only on the positions that some of its tokens cover.

Two dispatches compute the same sums (``MOE_DISPATCH``, chosen at run time per layer, not saved with
the weights). "grouped" runs each expert only on the rows routed to it: the least work, but the
grouping is read on the host (a device-to-host sync per layer) and its shapes depend on the routing.
"dense" has fixed shapes and no sync, for CUDA graphs, ``torch.compile`` and large GPU batches: the
Space-MoE runs every expert on every position (E times the FFN work), the Time-MoE gathers each
sample's expert weights and runs one batched matmul (one expert per sample, as grouped). An expert
that nothing chose gets a zero gradient from "dense" and none from "grouped": AdamW still decays and
moves a parameter by its momentum on a zero gradient, and skips one without a gradient.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

MOE_DISPATCH = ("grouped", "dense")  # the first is the default


def check_dispatch(mode: str) -> str:
    """``mode`` if it names a dispatch of ``MOE_DISPATCH``, else a one-sentence ValueError."""
    if mode not in MOE_DISPATCH:
        raise ValueError(f"Unknown MoE dispatch {mode!r}; choose one of {', '.join(MOE_DISPATCH)}.")
    return mode


class FeedForward(nn.Module):
    """A GELU FFN applied per position; bias-free so that an all-zero input maps to zero."""

    def __init__(self, dim: int, hidden_dim: int, out_dim: int | None = None, bias: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


@dataclass
class RouterOutput:
    """What a router decided: logits and probabilities (..., E), and the chosen expert (...)."""

    logits: torch.Tensor
    probs: torch.Tensor
    expert_index: torch.Tensor
    expert_prob: torch.Tensor


class TopOneRouter(nn.Module):
    """Gate ``G``: a GELU FFN over the routing input, then top-1 with jitter noise in training."""

    def __init__(self, in_dim: int, num_experts: int, hidden_dim: int, jitter: float = 0.0):
        super().__init__()
        self.num_experts = num_experts
        self.jitter = jitter
        self.gate = FeedForward(in_dim, hidden_dim, num_experts, bias=True)

    def forward(self, x: torch.Tensor) -> RouterOutput:
        logits = self.gate(x).float()  # (..., E)
        if self.training and self.jitter > 0:
            logits = logits + torch.randn_like(logits) * self.jitter  # ε in argmax(softmax(G(y) + ε))
        probs = logits.softmax(dim=-1)  # (..., E)
        expert_prob, expert_index = probs.max(dim=-1)  # (...), (...)
        return RouterOutput(logits, probs, expert_index, expert_prob)


def load_balancing_loss(probs: torch.Tensor, expert_index: torch.Tensor, valid: torch.Tensor | None = None):
    """Switch-Transformer balance loss ``E * sum_e f_e * P_e`` over the valid routed items.

    ``probs`` (N, E), ``expert_index`` (N,), ``valid`` (N,) bool; pad tokens are left out.
    Equals 1.0 when routing is perfectly uniform.
    """
    num_experts = probs.shape[-1]
    if valid is None:
        valid = torch.ones(expert_index.shape, dtype=torch.bool, device=probs.device)
    weight = valid.float()
    denom = weight.sum().clamp(min=1.0)
    one_hot = F.one_hot(expert_index, num_experts).float()  # (N, E)
    fraction = (one_hot * weight[:, None]).sum(0) / denom  # f_e: share of items routed to e
    mean_prob = (probs * weight[:, None]).sum(0) / denom  # P_e: mean gate probability of e
    return num_experts * (fraction * mean_prob).sum()


class MoEOutput:
    """Hidden states plus the routing record of one MoE layer.

    ``balance_loss`` and ``expert_counts`` may be given as zero-argument functions: they are then
    computed on first access, so that a sampling step, which never reads them, does not pay for them
    (about fifteen small operators per layer: some 2% of a batch-1 CFG step of RAPHAEL-tiny on the CPU).
    """

    def __init__(
        self,
        hidden_states: torch.Tensor,
        router: RouterOutput,
        balance_loss: torch.Tensor | Callable[[], torch.Tensor],
        expert_counts: torch.Tensor | Callable[[], torch.Tensor],
        token_masks: torch.Tensor | None = None,
    ):
        self.hidden_states = hidden_states
        self.router = router
        self.token_masks = token_masks
        self._balance_loss = balance_loss
        self._expert_counts = expert_counts

    @property
    def balance_loss(self) -> torch.Tensor:
        if callable(self._balance_loss):
            self._balance_loss = self._balance_loss()
        return self._balance_loss

    @property
    def expert_counts(self) -> torch.Tensor:
        if callable(self._expert_counts):
            self._expert_counts = self._expert_counts()
        return self._expert_counts


def region_masks(attn_map: torch.Tensor, text_mask: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """Binary region of every text token: ``M[j, i] >= threshold * max_j M[j, i]``.

    ``attn_map`` (B, N, L) is softmax over tokens; the threshold is relative to each token's
    own maximum over image positions. Pad tokens get an empty region: their map is all zero, so
    the comparison ``0 >= 0`` would otherwise select every position.
    """
    peak = attn_map.amax(dim=1, keepdim=True)  # (B, 1, L)
    masks = attn_map >= threshold * peak  # (B, N, L)
    return (masks & text_mask.bool()[:, None, :]).to(attn_map.dtype)


def mix_experts(experts: nn.ModuleList, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``out[r] = sum_e weights[r, e] * experts[e](x[r])``, running each expert only where its weight is nonzero.

    ``x`` (R, C) rows, ``weights`` (R, E). The (row, expert) pairs are gathered once, grouped by
    expert and without padding, so each used expert is one matmul pair over a contiguous slice,
    and the weighted outputs go back to their rows with a single ``index_add_``: a loop with a
    mask, a gather and an ``index_add_`` per expert spent about as long in ``index_add_`` as in
    the experts' matmuls on a busy CPU (see ``bench/moe_overhead.py``'s profiles). A row that no
    expert covers gets zero.
    """
    hit = weights.t() != 0  # (E, R)
    expert, rows = hit.nonzero(as_tuple=True)  # (P,), (P,): the pairs, grouped by expert
    grouped = x.index_select(0, rows).split(hit.sum(dim=1).tolist())  # per expert: (P_e, C)
    outputs = [experts[e](chunk) for e, chunk in enumerate(grouped) if len(chunk)]
    if not outputs:  # no row is covered, e.g. no real text token
        return torch.zeros_like(x)
    y = torch.cat(outputs) * weights[rows, expert, None].to(x.dtype)  # (P, C)
    return torch.zeros_like(x).index_add_(0, rows, y.to(x.dtype))  # (R, C)


def stacked_weights(experts: nn.ModuleList) -> tuple[torch.Tensor, torch.Tensor]:
    """The experts' fc1 and fc2 weights stacked, (E, H, C) and (E, C, H); gradients flow back to each expert."""
    return torch.stack([e.fc1.weight for e in experts]), torch.stack([e.fc2.weight for e in experts])


def mix_experts_dense(experts: nn.ModuleList, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """What :func:`mix_experts` computes, with fixed shapes and no host sync: every expert on every row.

    Stacked, the experts are one FFN of hidden width E*H; scaling expert e's hidden units by
    ``weights[:, e]`` scales its output (fc2 is linear and bias-free), so the weighted sum over experts is
    the second matmul's contraction over (e, h). ``x`` (R, C), ``weights`` (R, E).
    """
    w1, w2 = stacked_weights(experts)  # (E, H, C), (E, C, H)
    hidden = F.gelu(torch.einsum("rc,ehc->reh", x, w1), approximate="tanh")  # (R, E, H)
    return torch.einsum("reh,ech->rc", hidden * weights.to(x.dtype)[..., None], w2)  # (R, C)


class DispatchChoice:
    """A MoE layer's runtime dispatch, one of ``MOE_DISPATCH``; an attribute, not a weight or a config field."""

    dispatch: str = MOE_DISPATCH[0]

    def set_dispatch(self, mode: str) -> None:
        self.dispatch = check_dispatch(mode)


class SpaceMoE(DispatchChoice, nn.Module):
    """Space-MoE: each text token picks one expert, applied to that token's image region.

    ``h_out = (1 / n_y) * sum_i p_i * e_route(i)(h ∘ M̂_i)`` over the n_y real tokens, computed
    as ``sum_e e(h) ∘ W_e`` where ``W_e`` sums ``p_i / n_y * M̂_i`` of the tokens routed to expert e.
    """

    def __init__(
        self,
        dim: int,
        text_dim: int,
        num_experts: int,
        hidden_dim: int,
        gate_hidden_dim: int,
        threshold: float = 0.2,
        jitter: float = 0.0,
    ):
        super().__init__()
        self.num_experts = num_experts
        self.threshold = threshold
        self.router = TopOneRouter(text_dim, num_experts, gate_hidden_dim, jitter)
        self.experts = nn.ModuleList([FeedForward(dim, hidden_dim) for _ in range(num_experts)])

    def forward(
        self, hidden_states: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, attn_map: torch.Tensor
    ) -> MoEOutput:
        b, n, c = hidden_states.shape
        route = self.router(text)  # per token: (B, L, E), (B, L)
        masks = region_masks(attn_map.detach(), text_mask, self.threshold)  # (B, N, L)
        real = text_mask.to(masks.dtype)  # (B, L)
        share = route.expert_prob.to(masks.dtype) * real / real.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, L)
        routed = masks.new_zeros(*share.shape, self.num_experts)  # (B, L, E): p_i / n_y at each token's expert
        routed.scatter_(2, route.expert_index[..., None], share[..., None])  # 0 on pads, whose share is 0
        weights = torch.bmm(masks, routed)  # (B, N, E): W_e at every position
        mix = mix_experts_dense if self.dispatch == "dense" else mix_experts
        out = mix(self.experts, hidden_states.reshape(b * n, c), weights.reshape(b * n, self.num_experts))

        def balance() -> torch.Tensor:
            probs, index = route.probs.reshape(-1, self.num_experts), route.expert_index.reshape(-1)
            return load_balancing_loss(probs, index, text_mask.reshape(-1).bool())

        def counts() -> torch.Tensor:  # (E,) real tokens routed to each expert
            one_hot = F.one_hot(route.expert_index, self.num_experts).to(masks.dtype) * real[..., None]  # (B, L, E)
            return one_hot.sum(dim=(0, 1)).detach()

        return MoEOutput(out.view(b, n, c), route, balance, counts, masks)


class TimeMoE(DispatchChoice, nn.Module):
    """Time-MoE: one expert per sample, chosen from the timestep embedding."""

    def __init__(self, dim: int, time_dim: int, num_experts: int, hidden_dim: int, gate_hidden_dim: int, jitter=0.0):
        super().__init__()
        self.num_experts = num_experts
        self.router = TopOneRouter(time_dim, num_experts, gate_hidden_dim, jitter)
        self.experts = nn.ModuleList([FeedForward(dim, hidden_dim) for _ in range(num_experts)])

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor) -> MoEOutput:
        b, n, c = hidden_states.shape
        route = self.router(temb)  # per sample: (B, E), (B,)
        scale = route.expert_prob.to(hidden_states.dtype)[:, None, None]  # (B, 1, 1)
        if self.dispatch == "dense":  # each sample's expert weights gathered: one batched FFN, no host sync
            w1, w2 = stacked_weights(self.experts)  # (E, H, C), (E, C, H)
            index = route.expert_index  # (B,)
            w1, w2 = w1.index_select(0, index), w2.index_select(0, index)  # (B, H, C), (B, C, H)
            hidden = F.gelu(torch.bmm(hidden_states, w1.transpose(1, 2)), approximate="tanh")  # (B, N, H)
            out = torch.bmm(hidden, w2.transpose(1, 2)) * scale  # (B, N, C)
        else:
            chosen = route.expert_index.tolist()  # one read of B ints, instead of a bincount and its read
            if len(set(chosen)) == 1:  # one expert for the whole batch, as in sampling, where the batch shares t
                out = self.experts[chosen[0]](hidden_states) * scale  # (B, N, C)
            else:  # timesteps routed apart, as in training
                one_hot = F.one_hot(route.expert_index, self.num_experts)  # (B, E)
                weights = (one_hot * route.expert_prob[:, None]).repeat_interleave(n, dim=0)  # (B*N, E): p_b each
                out = mix_experts(self.experts, hidden_states.reshape(b * n, c), weights).view(b, n, c)
        return MoEOutput(
            out,
            route,
            lambda: load_balancing_loss(route.probs, route.expert_index),
            # a one-hot sum rather than bincount, which reads its input's maximum on the host
            lambda: F.one_hot(route.expert_index, self.num_experts).sum(dim=0).float(),
        )
