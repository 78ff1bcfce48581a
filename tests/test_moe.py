"""Semantics of Space-MoE, Time-MoE and the router: each test fails if the paper's rule is broken."""

import pytest
import torch

from model.unet.moe import SpaceMoE, TimeMoE, TopOneRouter, load_balancing_loss, region_masks


def make_space_moe(dim=16, text_dim=12, experts=4, seed=0) -> SpaceMoE:
    torch.manual_seed(seed)
    return SpaceMoE(dim, text_dim, experts, hidden_dim=24, gate_hidden_dim=8, threshold=0.2, jitter=0.5).eval()


def space_inputs(b=2, n=10, length=6, dim=16, text_dim=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, n, dim, generator=g)
    text = torch.randn(b, length, text_dim, generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    mask[0, 4:] = 0  # sample 0 has 4 real tokens, sample 1 has 6
    attn = torch.randn(b, n, length, generator=g).masked_fill(~mask.bool()[:, None, :], float("-inf")).softmax(-1)
    return h, text, mask, attn


def naive_space_moe(moe: SpaceMoE, h, text, mask, attn) -> torch.Tensor:
    """Reference: loop over every real token, run its expert on h ∘ M̂_i, average over real tokens."""
    out = torch.zeros_like(h)
    route = moe.router(text)
    for b in range(h.shape[0]):
        real = [i for i in range(text.shape[1]) if mask[b, i]]
        for i in range(text.shape[1]):
            if not mask[b, i]:
                continue
            m = (attn[b, :, i] >= 0.2 * attn[b, :, i].max()).to(h.dtype)[:, None]  # (N, 1)
            e = route.expert_index[b, i].item()
            out[b] += route.expert_prob[b, i] * moe.experts[e](h[b] * m)
        out[b] /= len(real)
    return out


def test_mask_threshold_is_relative_to_each_tokens_max():
    # token 0 peaks at 0.5, token 1 at 0.05; an absolute 0.2 * global-max rule would give token 1 nothing
    attn = torch.tensor([[[0.50, 0.050], [0.11, 0.011], [0.09, 0.009], [0.30, 0.030]]])  # (1, N=4, L=2)
    masks = region_masks(attn, torch.ones(1, 2), threshold=0.2)
    expected = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]])
    assert torch.equal(masks, expected)


def test_pad_tokens_get_empty_regions():
    attn = torch.tensor([[[0.6, 0.4, 0.0], [0.2, 0.8, 0.0]]])  # third token is padding (all zero)
    masks = region_masks(attn, torch.tensor([[1, 1, 0]]), threshold=0.2)
    assert masks[0, :, 2].sum() == 0
    assert masks[0, :, :2].sum() == 4


def test_router_is_top1_and_noisy_only_in_training():
    torch.manual_seed(0)
    router = TopOneRouter(8, 5, 16, jitter=1.0)
    x = torch.randn(64, 8)
    router.eval()
    out = router(x)
    assert out.expert_index.shape == (64,)
    assert torch.equal(out.expert_index, out.logits.argmax(-1))
    assert torch.allclose(out.expert_prob, out.probs.max(-1).values)
    assert torch.equal(router(x).logits, out.logits)  # deterministic in eval
    router.train()
    assert not torch.equal(router(x).logits, router(x).logits)  # jitter in training


def test_space_moe_routes_each_token_to_exactly_one_expert():
    moe = make_space_moe()
    h, text, mask, attn = space_inputs()
    out = moe(h, text, mask, attn)
    assert out.router.expert_index.shape == text.shape[:2]
    assert out.expert_counts.sum() == mask.sum()  # one route per real token, none for pads


def test_efficient_dispatch_equals_naive_loop():
    moe = make_space_moe()
    h, text, mask, attn = space_inputs()
    fast = moe(h, text, mask, attn).hidden_states
    slow = naive_space_moe(moe, h, text, mask, attn)
    assert fast.abs().max() > 0
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_pad_tokens_are_excluded_from_the_average():
    moe = make_space_moe()
    h, text, mask, attn = space_inputs()
    base = moe(h, text, mask, attn).hidden_states
    text2 = text.clone()
    text2[0, 4:] = torch.randn(2, text.shape[-1]) * 10  # change only pad embeddings of sample 0
    torch.testing.assert_close(moe(h, text2, mask, attn).hidden_states, base)
    # averaging over all L tokens instead of the 4 real ones would scale sample 0 by 4/6
    slow = naive_space_moe(moe, h, text, mask, attn)
    torch.testing.assert_close(base[0], slow[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", ["space", "time"])
def test_gates_receive_gradients(layer):
    if layer == "space":
        moe = make_space_moe().train()
        h, text, mask, attn = space_inputs()
        out = moe(h, text, mask, attn)
    else:
        torch.manual_seed(0)
        moe = TimeMoE(16, 10, 4, 24, 8, jitter=0.1).train()
        out = moe(torch.randn(6, 10, 16), torch.randn(6, 10))
    (out.hidden_states.pow(2).sum() + out.balance_loss).backward()
    gate_grads = [p.grad for p in moe.router.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in gate_grads)


def test_time_route_is_the_same_for_all_positions_of_a_sample():
    torch.manual_seed(0)
    moe = TimeMoE(16, 10, 4, 24, 8).eval()
    h = torch.randn(5, 7, 16)
    temb = torch.randn(5, 10)
    out = moe(h, temb)
    assert out.router.expert_index.shape == (5,)
    for b in range(5):
        e = out.router.expert_index[b].item()
        expected = moe.experts[e](h[b]) * out.router.expert_prob[b]
        torch.testing.assert_close(out.hidden_states[b], expected)


def test_balance_loss_is_one_when_uniform_and_masks_pads():
    probs = torch.full((8, 4), 0.25)
    index = torch.arange(8) % 4
    assert load_balancing_loss(probs, index).item() == pytest.approx(1.0)
    skewed = torch.tensor([[0.97, 0.01, 0.01, 0.01]] * 8)
    assert load_balancing_loss(skewed, torch.zeros(8, dtype=torch.long)).item() > 3.5
    valid = torch.tensor([True] * 4 + [False] * 4)
    collapsed_pads = torch.cat([probs[:4], skewed[:4]])
    mixed_index = torch.cat([index[:4], torch.zeros(4, dtype=torch.long)])
    assert load_balancing_loss(collapsed_pads, mixed_index, valid).item() == pytest.approx(1.0)


def looped_space_moe(moe: SpaceMoE, h, text, mask, attn) -> torch.Tensor:
    """Reference dispatch: every expert on every position, weighted by ``W_e = sum_i p_i / n_y * M̂_i``."""
    route = moe.router(text)
    regions = (attn >= moe.threshold * attn.amax(dim=1, keepdim=True)) & mask.bool()[:, None, :]  # (B, N, L)
    real = mask.to(h.dtype)  # (B, L)
    out = torch.zeros_like(h)
    for e, expert in enumerate(moe.experts):
        token_weight = route.expert_prob * (route.expert_index == e) * real / real.sum(1, keepdim=True).clamp(min=1)
        out = out + (regions * token_weight[:, None, :]).sum(-1, keepdim=True) * expert(h)  # (B, N, C)
    return out


def looped_time_moe(moe: TimeMoE, h, temb) -> torch.Tensor:
    """Reference dispatch: every expert on every sample, kept where the sample chose it, times its gate probability."""
    route = moe.router(temb)
    out = torch.zeros_like(h)
    for e, expert in enumerate(moe.experts):
        out = out + ((route.expert_index == e) * route.expert_prob)[:, None, None] * expert(h)  # (B, N, C)
    return out


def outputs_and_gradients(moe, forward, inputs):
    """Output and the gradients of inputs and parameters of ``(out * probe).sum()``; router jitter seeded alike."""
    moe.zero_grad(set_to_none=True)
    inputs = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    torch.manual_seed(3)
    out = forward(moe, *inputs)
    out = out.hidden_states if not torch.is_tensor(out) else out
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
    (out * probe).sum().backward()
    grads = {f"input{i}": x.grad for i, x in enumerate(inputs) if x.grad is not None}
    # an expert no token chose gets no gradient from the dispatch and zeros from the reference
    grads |= {name: p.grad if p.grad is not None else torch.zeros_like(p) for name, p in moe.named_parameters()}
    return out.detach(), grads


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("batch", [1, 8])
def test_space_dispatch_equals_the_loop_over_experts(batch, training):
    moe = make_space_moe(experts=6).train(training)
    g = torch.Generator().manual_seed(batch)
    b, n, length = 2 * batch, 12, 7  # a CFG batch: empty prompts ([CLS] [SEP]), then prompts of 3..7 tokens
    lengths = torch.tensor([2] * batch + torch.randint(3, length + 1, (batch,), generator=g).tolist())
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    logits = 3 * torch.randn(b, n, length, generator=g)
    attn = logits.masked_fill(~mask.bool()[:, None, :], float("-inf")).softmax(-1)  # (B, N, L), zero on pads
    inputs = (torch.randn(b, n, 16, generator=g), torch.randn(b, length, 12, generator=g), mask, attn)
    fast, fast_grads = outputs_and_gradients(moe, SpaceMoE.__call__, inputs)
    slow, slow_grads = outputs_and_gradients(moe, looped_space_moe, inputs)
    assert fast.abs().max() > 0
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert fast_grads.keys() == slow_grads.keys()
    for name in fast_grads:
        torch.testing.assert_close(fast_grads[name], slow_grads[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("shared_t", [True, False])
def test_time_dispatch_equals_the_loop_over_experts(shared_t):
    torch.manual_seed(0)
    moe = TimeMoE(16, 10, 4, 24, 8, jitter=0.0)
    g = torch.Generator().manual_seed(5)
    h = torch.randn(8, 9, 16, generator=g)
    temb = 3 * torch.randn(1 if shared_t else 8, 10, generator=g).expand(8, 10)  # sampling shares t, training mixes
    fast, fast_grads = outputs_and_gradients(moe, TimeMoE.__call__, (h, temb))
    slow, slow_grads = outputs_and_gradients(moe, looped_time_moe, (h, temb))
    used = len(moe.router(temb).expert_index.unique())
    assert used == 1 if shared_t else used > 1  # the single-expert path, or samples routed apart
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    for name in fast_grads:
        torch.testing.assert_close(fast_grads[name], slow_grads[name], atol=1e-5, rtol=1e-5, msg=name)


def test_routing_record_is_computed_when_read():
    """Balance loss and counts are left to the reader, and equal the eager formulas when read."""
    moe = make_space_moe().train()
    h, text, mask, attn = space_inputs()
    out = moe(h, text, mask, attn)
    route = out.router
    expected = load_balancing_loss(route.probs.reshape(-1, 4), route.expert_index.reshape(-1), mask.reshape(-1).bool())
    assert torch.equal(out.balance_loss, expected)
    assert out.balance_loss is out.balance_loss  # computed once
    assert out.expert_counts.tolist() == torch.bincount(route.expert_index[mask.bool()], minlength=4).float().tolist()
    time_out = TimeMoE(16, 10, 4, 24, 8).eval()(torch.randn(3, 5, 16), torch.randn(3, 10))
    assert time_out.expert_counts.sum() == 3
    assert time_out.balance_loss.ndim == 0
