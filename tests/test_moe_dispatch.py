"""Both MoE dispatches (grouped and dense) against the paper's per-token formula and the per-expert loop.

Forward and backward, at batch 1 and 8 doubled for classifier-free guidance, on the token grids of
the aspect buckets, with the Time-MoE at shared and mixed timesteps; and the shipped checkpoint's
prediction is unchanged. The whole-U-Net comparison of the two dispatches and their host syncs are in
``test_moe_dense_dispatch.py``. ``looped_space_moe`` / ``looped_time_moe`` are the dispatch as it was
before (one mask, gather and ``index_add_`` per expert), swapped in by :func:`use_looped_dispatch`
so that the two can be compared output for output (``bench.moe_overhead`` times the package's).
"""

import copy
from types import MethodType

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model.pipeline.bundled import DEFAULT_BUNDLE
from model.unet.moe import MOE_DISPATCH, MoEOutput, SpaceMoE, TimeMoE, load_balancing_loss, region_masks
from model.unet.unet_raphael import RaphaelUNet

# RAPHAEL-tiny's transformer blocks: width 192, MiniLM text 384, FFN x2, gates 64.
DIM, TEXT_DIM, FFN_DIM, GATE_DIM = 192, 384, 384, 64
BUCKET_GRIDS = {"1:1": (8, 8), "3:4": (9, 7), "9:16": (10, 6)}  # token grid of each bucket at that width
TOKENS = 32  # padded prompt length


def naive_space_moe(moe: SpaceMoE, h: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, attn_map):
    """The paper's formula, one real token at a time: ``(1 / n_y) sum_i p_i e_route(i)(h ∘ M̂_i)``."""
    route = moe.router(text)
    rows = []
    for b in range(h.shape[0]):
        real = [i for i in range(text.shape[1]) if text_mask[b, i]]
        total = torch.zeros_like(h[b])
        for i in real:
            region = (attn_map[b, :, i] >= moe.threshold * attn_map[b, :, i].max()).to(h.dtype)[:, None]  # (N, 1)
            expert = moe.experts[int(route.expert_index[b, i])]
            total = total + route.expert_prob[b, i] * expert(h[b] * region)
        rows.append(total / max(len(real), 1))
    return torch.stack(rows)


def naive_time_moe(moe: TimeMoE, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    """One sample at a time: ``p_b e_route(b)(h_b)``."""
    route = moe.router(temb)
    return torch.stack(
        [route.expert_prob[b] * moe.experts[int(route.expert_index[b])](h[b]) for b in range(h.shape[0])]
    )


def looped_space_moe(moe: SpaceMoE, hidden_states, text, text_mask, attn_map) -> MoEOutput:
    """The Space-MoE dispatch before grouping: per used expert a nonzero mask, a gather and an ``index_add_``."""
    b, n, c = hidden_states.shape
    route = moe.router(text)
    masks = region_masks(attn_map.detach(), text_mask, moe.threshold)
    real = text_mask.to(masks.dtype)
    n_y = real.sum(dim=1).clamp(min=1.0)
    one_hot = F.one_hot(route.expert_index, moe.num_experts).to(masks.dtype) * real[..., None]
    token_weight = masks * route.expert_prob.to(masks.dtype)[:, None, :]
    weights = torch.einsum("bnl,ble->bne", token_weight, one_hot) / n_y[:, None, None]
    flat_h = hidden_states.reshape(b * n, c)
    flat_w = weights.reshape(b * n, moe.num_experts)
    out = torch.zeros_like(flat_h)
    counts = one_hot.sum(dim=(0, 1))
    for e in torch.nonzero(counts).flatten().tolist():
        rows = torch.nonzero(flat_w[:, e]).flatten()
        if rows.numel() == 0:
            continue
        expert_out = moe.experts[e](flat_h[rows]) * flat_w[rows, e, None].to(flat_h.dtype)
        out.index_add_(0, rows, expert_out.to(out.dtype))
    balance = load_balancing_loss(
        route.probs.reshape(-1, moe.num_experts), route.expert_index.reshape(-1), text_mask.reshape(-1).bool()
    )
    return MoEOutput(out.view(b, n, c), route, balance, counts.detach(), masks)


def looped_time_moe(moe: TimeMoE, hidden_states, temb) -> MoEOutput:
    """The Time-MoE dispatch before grouping: per used expert a gather and an ``index_add_`` of whole samples."""
    route = moe.router(temb)
    out = torch.zeros_like(hidden_states)
    one_hot = F.one_hot(route.expert_index, moe.num_experts)
    counts = one_hot.sum(dim=0)
    for e in torch.nonzero(counts).flatten().tolist():
        rows = torch.nonzero(route.expert_index == e).flatten()
        scale = route.expert_prob[rows].to(hidden_states.dtype)[:, None, None]
        out.index_add_(0, rows, (moe.experts[e](hidden_states[rows]) * scale).to(out.dtype))
    balance = load_balancing_loss(route.probs, route.expert_index)
    return MoEOutput(out, route, balance, counts.detach().float())


def use_looped_dispatch(model: nn.Module) -> nn.Module:
    """Give every Space-/Time-MoE of ``model`` the per-expert loop above (in place; same parameters)."""
    for module in model.modules():
        if isinstance(module, SpaceMoE):
            module.forward = MethodType(looped_space_moe, module)
        elif isinstance(module, TimeMoE):
            module.forward = MethodType(looped_time_moe, module)
    return model


@pytest.fixture(scope="module")
def shipped() -> RaphaelUNet:
    """The bundled RAPHAEL-tiny in fp32 and training mode: trained gates route real timesteps and tokens apart."""
    return RaphaelUNet.from_pretrained(DEFAULT_BUNDLE / "unet").float().train()


def space_moe() -> SpaceMoE:
    torch.manual_seed(0)
    return SpaceMoE(DIM, TEXT_DIM, 6, FFN_DIM, GATE_DIM, threshold=0.2, jitter=0.1)


def cfg_space_inputs(batch: int, grid: tuple[int, int], seed: int = 0):
    """A CFG batch of 2 * batch: empty prompts ([CLS] [SEP]) then prompts of 3..TOKENS tokens.

    The attention map is a softmax over each sample's real tokens, sharp enough that regions
    cover part of the image, and zero on pads, as cross-attention produces it.
    """
    g = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1]
    lengths = [2] * batch + torch.randint(3, TOKENS + 1, (batch,), generator=g).tolist()
    text_mask = torch.arange(TOKENS)[None, :] < torch.tensor(lengths)[:, None]  # (2B, L)
    h = torch.randn(2 * batch, n, DIM, generator=g)
    text = torch.randn(2 * batch, TOKENS, TEXT_DIM, generator=g)
    logits = 3 * torch.randn(2 * batch, n, TOKENS, generator=g)
    attn_map = logits.masked_fill(~text_mask[:, None, :], float("-inf")).softmax(dim=-1)  # (2B, N, L)
    return h, text, text_mask, attn_map


def grads(module: nn.Module, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of the inputs and parameters that received one.

    An expert that nothing chose is absent: it gets no gradient from the grouped dispatch and zeros from the dense.
    """
    found = {f"input{i}": x.grad for i, x in enumerate(inputs) if x.grad is not None}
    return found | {name: p.grad for name, p in module.named_parameters() if p.grad is not None and p.grad.any()}


def run(moe: nn.Module, forward, inputs: tuple[torch.Tensor, ...], probe: torch.Tensor, with_balance: bool):
    """Output and gradients of ``(out * probe).sum() (+ balance loss)``; router jitter seeded alike."""
    moe.zero_grad()
    inputs = tuple(x.clone().requires_grad_(x.is_floating_point()) for x in inputs)
    torch.manual_seed(1)
    out = forward(moe, *inputs)
    hidden = out.hidden_states if isinstance(out, MoEOutput) else out
    loss = (hidden * probe).sum() + (out.balance_loss if with_balance else 0)
    loss.backward()
    return out, hidden.detach(), grads(moe, *inputs)


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("dispatch", MOE_DISPATCH)
@pytest.mark.parametrize("bucket", BUCKET_GRIDS)
@pytest.mark.parametrize("batch", [1, 8])
def test_space_moe_equals_the_per_token_formula(batch: int, bucket: str, dispatch: str):
    moe = space_moe().train()
    moe.set_dispatch(dispatch)
    inputs = cfg_space_inputs(batch, BUCKET_GRIDS[bucket])
    probe = torch.randn(inputs[0].shape)
    _, fast, fast_grads = run(moe, SpaceMoE.__call__, inputs, probe, with_balance=False)
    _, slow, slow_grads = run(moe, naive_space_moe, inputs, probe, with_balance=False)
    assert fast.abs().max() > 0
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert_same(fast_grads, slow_grads)
    assert all(g.abs().sum() > 0 for name, g in fast_grads.items() if name.startswith(("experts", "router")))


@pytest.mark.parametrize("dispatch", MOE_DISPATCH)
@pytest.mark.parametrize("bucket", BUCKET_GRIDS)
@pytest.mark.parametrize("batch", [1, 8])
def test_space_moe_equals_the_looped_dispatch_with_its_routing_record(
    shipped: RaphaelUNet, batch: int, bucket: str, dispatch: str
):
    moe = copy.deepcopy(shipped.mid_transformer.blocks[0].space_ffn)  # trained: tokens spread over all six experts
    moe.set_dispatch(dispatch)
    inputs = cfg_space_inputs(batch, BUCKET_GRIDS[bucket], seed=batch)
    probe = torch.randn(inputs[0].shape)
    new, fast, fast_grads = run(moe, SpaceMoE.__call__, inputs, probe, with_balance=True)
    old, slow, slow_grads = run(moe, looped_space_moe, inputs, probe, with_balance=True)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert_same(fast_grads, slow_grads)
    assert torch.equal(new.router.expert_index, old.router.expert_index)
    assert torch.equal(new.router.logits, old.router.logits)
    assert torch.equal(new.token_masks, old.token_masks)
    assert torch.equal(new.expert_counts, old.expert_counts)
    assert torch.equal(new.balance_loss, old.balance_loss)


@pytest.mark.parametrize("dispatch", MOE_DISPATCH)
def test_space_moe_without_any_real_token_gives_zero(dispatch: str):
    moe = space_moe().eval()
    moe.set_dispatch(dispatch)
    h, text, text_mask, attn_map = cfg_space_inputs(1, (8, 8))
    out = moe(h, text, torch.zeros_like(text_mask), attn_map)
    assert torch.equal(out.hidden_states, torch.zeros_like(h))
    assert out.expert_counts.sum() == 0


# Sampling shares t across the CFG batch (one expert: the path without gather and scatter); training mixes t.
TIMESTEP_BATCHES = {
    "t=0 x2": [0, 0],
    "t=500 x2": [500, 500],
    "t=999 x16": [999] * 16,
    "mixed x2": [250, 750],
    "mixed x16": [0, 999, 500, 250, 750, 100, 900, 30, 600, 400, 999, 0, 333, 666, 50, 950],
}


@pytest.mark.parametrize("dispatch", MOE_DISPATCH)
@pytest.mark.parametrize("timesteps", TIMESTEP_BATCHES.values(), ids=TIMESTEP_BATCHES.keys())
def test_time_moe_equals_the_per_sample_formula_and_the_looped_dispatch(
    shipped: RaphaelUNet, timesteps: list[int], dispatch: str
):
    with torch.no_grad():
        temb = shipped.time_embedder(torch.tensor(timesteps))  # (B, T)
    h = torch.randn(len(timesteps), 64, DIM, generator=torch.Generator().manual_seed(0))
    probe = torch.randn(h.shape)
    mixed = len(set(timesteps)) > 1  # training mixes t and jitters the gates; sampling shares t, in eval
    layers = [copy.deepcopy(m).train(mixed) for m in shipped.modules() if isinstance(m, TimeMoE)]
    several_experts = 0
    for moe in layers:
        moe.set_dispatch(dispatch)
        new, fast, fast_grads = run(moe, TimeMoE.__call__, (h, temb), probe, with_balance=True)
        old, looped, looped_grads = run(moe, looped_time_moe, (h, temb), probe, with_balance=True)
        _, slow, _ = run(moe, naive_time_moe, (h, temb), probe, with_balance=False)
        torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast, looped, atol=1e-5, rtol=1e-5)
        assert_same(fast_grads, looped_grads)
        assert torch.equal(new.router.expert_index, old.router.expert_index)
        assert torch.equal(new.expert_counts, old.expert_counts)
        assert torch.equal(new.balance_loss, old.balance_loss)
        several_experts += len(new.router.expert_index.unique()) > 1
    assert several_experts > 0 if mixed else several_experts == 0


def test_tiny_unet_training_step_has_the_looped_dispatchs_gradients():
    """A whole training forward (edges, balance losses) and backward, mixed timesteps, 3:4 bucket."""
    config = dict(block_out_channels=(16, 32, 64), attention_head_dim=16, cross_attention_dim=TEXT_DIM)
    torch.manual_seed(0)
    unet = RaphaelUNet(**config).train()
    looped = use_looped_dispatch(RaphaelUNet(**config).train())
    looped.load_state_dict(unet.state_dict())
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(4, 3, 36, 28, generator=g)
    timesteps = torch.tensor([20, 400, 700, 990])
    text = torch.randn(4, TOKENS, TEXT_DIM, generator=g)
    text_mask = torch.arange(TOKENS)[None, :] < torch.tensor([[2], [7], [19], [32]])
    results = []
    for model in (unet, looped):
        torch.manual_seed(1)
        out = model(sample, timesteps, text, text_mask, compute_edges=True)
        loss = out.sample.square().mean() + out.routing.aux_loss + out.routing.edge_logits.mean()
        loss.backward()
        results.append((out, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}))
    (new, new_grads), (old, old_grads) = results
    torch.testing.assert_close(new.sample, old.sample, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new.routing.aux_loss, old.routing.aux_loss)
    assert torch.equal(new.routing.space_counts, old.routing.space_counts)
    assert torch.equal(new.routing.time_counts, old.routing.time_counts)
    assert_same(new_grads, old_grads)


@pytest.mark.parametrize("dispatch", MOE_DISPATCH)
def test_shipped_checkpoint_predicts_as_with_the_looped_dispatch(dispatch: str):
    """The bundled weights load unchanged and give the same prediction and routing for a fixed CFG step."""
    unet = RaphaelUNet.from_pretrained(DEFAULT_BUNDLE / "unet").float().eval()
    unet.set_moe_dispatch(dispatch)
    looped = use_looped_dispatch(RaphaelUNet.from_pretrained(DEFAULT_BUNDLE / "unet").float().eval())
    g = torch.Generator().manual_seed(1234)
    sample = torch.randn(4, 3, 32, 32, generator=g)
    text = torch.randn(4, TOKENS, TEXT_DIM, generator=g)
    text_mask = torch.arange(TOKENS)[None, :] < torch.tensor([[2], [2], [11], [23]])
    with torch.no_grad():
        new = unet(sample, torch.tensor(300), text, text_mask, return_routing=True)
        old = looped(sample, torch.tensor(300), text, text_mask, return_routing=True)
    torch.testing.assert_close(new.sample, old.sample, atol=1e-5, rtol=1e-5)
    for field in ("space_experts", "time_experts", "token_masks"):
        assert all(torch.equal(a, b) for a, b in zip(getattr(new.routing, field), getattr(old.routing, field)))
    assert torch.equal(new.routing.space_counts, old.routing.space_counts)
