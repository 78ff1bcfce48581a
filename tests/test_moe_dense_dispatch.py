"""The dense MoE dispatch: the grouped dispatch's outputs and gradients, with fixed shapes and no host sync.

A whole tiny U-Net runs both ways on the same weights (``RaphaelUNet.set_moe_dispatch``); the layer edge
cases that a U-Net cannot take (cross-attention over no real token gives NaN) run on a Space-MoE. The
no-sync claim is checked by ``torch.compile(fullgraph=True)``, which refuses any graph break (``.tolist()``,
``.item()``, ``nonzero``, a branch on a tensor's value), and on a GPU by CUDA's sync debug mode.
"""

import pytest
import torch
from torch import nn

from model.unet.blocks import RaphaelTransformerBlock
from model.unet.moe import MOE_DISPATCH, MoEOutput, SpaceMoE, TimeMoE
from model.unet.unet_raphael import RaphaelUNet
from tests.test_moe_dispatch import TEXT_DIM, TOKENS, cfg_space_inputs, space_moe

CONFIG = dict(block_out_channels=(16, 32, 64), attention_head_dim=16, cross_attention_dim=TEXT_DIM)
# Empty prompts ([CLS] [SEP], as CFG's unconditional half) beside prompts of several lengths: regions of many sizes.
PROMPT_LENGTHS = [2, 2, 5, 11, 24, TOKENS]


def tiny_unet() -> RaphaelUNet:
    """A tiny U-Net whose cross-attention is sharpened, so that token regions cover parts of the image as after
    training (a fresh one attends almost uniformly: every region is the whole image)."""
    torch.manual_seed(0)
    unet = RaphaelUNet(**CONFIG)
    with torch.no_grad():
        for module in unet.modules():
            if isinstance(module, RaphaelTransformerBlock):
                module.cross_attn.to_q.weight.mul_(8.0)
    return unet


def unet_inputs(timesteps: list[int], device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """A 3:4 batch (a 9 x 7 token grid at the transformer level) with a prompt length per sample."""
    g = torch.Generator().manual_seed(0)
    b = len(timesteps)
    sample = torch.randn(b, 3, 36, 28, generator=g)
    text = torch.randn(b, TOKENS, TEXT_DIM, generator=g)
    text_mask = torch.arange(TOKENS)[None, :] < torch.tensor(PROMPT_LENGTHS[:b])[:, None]  # (B, L)
    return tuple(x.to(device) for x in (sample, torch.tensor(timesteps), text, text_mask))


def probed(x: torch.Tensor) -> torch.Tensor:
    """``x`` weighted element by element, each differently; made where ``x`` is, without a generator, so that it
    neither copies from the host nor breaks a compiled graph."""
    return (x * torch.arange(x.numel(), device=x.device).reshape(x.shape).cos()).sum()


def training_loss(out) -> torch.Tensor:
    """Everything a training step backpropagates: a probe of the prediction, the balance losses, the edge head."""
    return probed(out.sample) + out.routing.aux_loss + out.routing.edge_logits.mean()


def outputs_and_grads(model: nn.Module, dispatch: str, forward, *inputs: torch.Tensor):
    """``forward(model, *inputs)`` under ``dispatch`` and the gradients of every parameter; router jitter seeded alike.

    A parameter without a gradient (an expert nothing chose, under the grouped dispatch) counts as zeros.
    """
    if isinstance(model, RaphaelUNet):
        model.set_moe_dispatch(dispatch)
    else:
        model.set_dispatch(dispatch)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    out, loss = forward(model, *inputs)
    loss.backward()
    grads = {name: torch.zeros_like(p) if p.grad is None else p.grad for name, p in model.named_parameters()}
    return out, grads


def unet_step(unet: RaphaelUNet, *inputs: torch.Tensor):
    out = unet(*inputs, compute_edges=True)
    return out, training_loss(out)


def assert_same_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal within 1e-5, the absolute part scaled by a gradient's largest entry where that is above 1.

    A gradient summed over a whole batch carries float noise in proportion to its size: the grouped dispatch
    and the per-expert loop it replaced differ by some 3e-6 of the largest entry of a convolution's gradient.
    """
    assert a.keys() == b.keys()
    for name in a:
        atol = 1e-5 * max(1.0, b[name].abs().max().item())
        msg = lambda m, name=name: f"{name}: {m}"  # noqa: E731
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=1e-5, msg=msg)


# Training mixes timesteps (samples routed to different Time experts); sampling shares t (one expert for all).
TIME_CASES = {"mixed t": ([20, 400, 700, 990, 150, 850], True), "shared t": ([300] * 6, False)}


@pytest.mark.parametrize("timesteps, training", TIME_CASES.values(), ids=TIME_CASES.keys())
def test_unet_gives_the_same_prediction_and_gradients_with_both_dispatches(timesteps: list[int], training: bool):
    unet = tiny_unet().train(training)
    inputs = unet_inputs(timesteps)
    grouped, grouped_grads = outputs_and_grads(unet, "grouped", unet_step, *inputs)
    dense, dense_grads = outputs_and_grads(unet, "dense", unet_step, *inputs)

    torch.testing.assert_close(dense.sample, grouped.sample, atol=1e-5, rtol=1e-5)
    assert_same_grads(dense_grads, grouped_grads)
    assert any(g.any() for name, g in dense_grads.items() if "router" in name)
    routing, reference = dense.routing, grouped.routing
    torch.testing.assert_close(routing.aux_loss, reference.aux_loss)
    assert torch.equal(routing.space_counts, reference.space_counts)
    assert torch.equal(routing.time_counts, reference.time_counts)
    assert all(torch.equal(a, b) for a, b in zip(routing.token_masks, reference.token_masks))
    # the cases are what they claim: samples routed to one or several Time experts, regions of many sizes
    experts_per_layer = [len(e.unique()) for e in routing.time_experts]
    assert max(experts_per_layer) > 1 if training else max(experts_per_layer) == 1
    region_sizes = torch.cat([m.sum(1)[m.sum(1) > 0] for m in routing.token_masks])
    assert len(region_sizes.unique()) > 5


def space_step(moe: SpaceMoE, *inputs: torch.Tensor):
    out = moe(*inputs)
    return out, probed(out.hidden_states) + out.balance_loss


@pytest.mark.parametrize("pad_only", ["one sample", "the whole batch"])
def test_space_moe_without_real_tokens_is_zero_with_both_dispatches(pad_only: str):
    """A sample with pads only gets zero from either dispatch, and the other samples the same gradients."""
    h, text, text_mask, attn_map = cfg_space_inputs(2, (8, 8))
    rows = slice(None) if pad_only == "the whole batch" else slice(0, 1)
    text_mask[rows] = False
    attn_map[rows] = 0.0  # cross-attention puts no weight on pads
    moe = space_moe().train()
    grouped, grouped_grads = outputs_and_grads(moe, "grouped", space_step, h, text, text_mask, attn_map)
    dense, dense_grads = outputs_and_grads(moe, "dense", space_step, h, text, text_mask, attn_map)
    torch.testing.assert_close(dense.hidden_states, grouped.hidden_states, atol=1e-5, rtol=1e-5)
    assert torch.equal(dense.hidden_states[rows], torch.zeros_like(h[rows]))
    assert_same_grads(dense_grads, grouped_grads)
    assert torch.equal(dense.balance_loss, grouped.balance_loss)
    assert torch.equal(dense.expert_counts, grouped.expert_counts)


def test_set_moe_dispatch_reaches_every_moe_layer_and_is_not_saved():
    unet = tiny_unet()
    keys = unet.state_dict().keys()
    unet.set_moe_dispatch("dense")
    layers = [m for m in unet.modules() if isinstance(m, (SpaceMoE, TimeMoE))]
    assert layers and all(m.dispatch == "dense" for m in layers)
    assert unet.state_dict().keys() == keys  # the experts stay separate modules: checkpoints load either way
    assert not any("dispatch" in k for k in unet.config)
    for model in (unet, RaphaelUNet(**CONFIG, num_space_experts=0, num_time_experts=0)):
        with pytest.raises(ValueError, match="grouped, dense"):
            model.set_moe_dispatch("sparse")
    assert all(m.dispatch == "dense" for m in layers)


def moe_layers_step(space: SpaceMoE, time: TimeMoE, h, text, text_mask, attn_map, temb) -> tuple[torch.Tensor, ...]:
    """A Space-MoE and a Time-MoE, forward, balance losses and counts, as one function to compile."""
    outs: list[MoEOutput] = [space(h, text, text_mask, attn_map), time(h, temb)]
    hidden = sum(out.hidden_states for out in outs)
    return hidden, sum(out.balance_loss for out in outs), *(out.expert_counts for out in outs)


def moe_layer_inputs() -> tuple[torch.Tensor, ...]:
    h, text, text_mask, attn_map = cfg_space_inputs(2, (8, 8))
    text_mask[0] = False  # a pad-only sample
    temb = 3 * torch.randn(h.shape[0], 10, generator=torch.Generator().manual_seed(2))  # samples routed apart
    return h.requires_grad_(), text, text_mask, attn_map, temb


@pytest.mark.parametrize("dispatch", MOE_DISPATCH)
def test_only_the_dense_dispatch_compiles_into_one_graph(dispatch: str):
    """Forward and backward of both MoE layers in one graph; the grouped dispatch's host reads break it.

    ``aot_eager`` traces the backward as well and generates no code, so this takes seconds on a CPU.
    """
    torch._dynamo.reset()
    torch.manual_seed(0)
    space, time = space_moe().train(), TimeMoE(192, 10, 4, 384, 64, jitter=0.1).train()
    space.set_dispatch(dispatch)
    time.set_dispatch(dispatch)
    compiled = torch.compile(moe_layers_step, backend="aot_eager", fullgraph=True)
    inputs = moe_layer_inputs()
    torch.manual_seed(1)  # router jitter alike
    if dispatch == "grouped":
        with pytest.raises(RuntimeError, match="data-dependent"):
            compiled(space, time, *inputs)
        return
    hidden, balance, space_counts, time_counts = compiled(space, time, *inputs)
    (hidden.square().mean() + balance).backward()
    assert inputs[0].grad is not None and all(p.grad is not None for p in space.router.parameters())
    torch.manual_seed(1)
    eager = moe_layers_step(space, time, *inputs)
    assert torch.equal(space_counts, eager[2]) and torch.equal(time_counts, eager[3])
    assert (time_counts > 0).sum() > 1


@pytest.mark.slow
def test_dense_unet_training_step_compiles_into_one_graph():
    """The whole training forward (edges, balance losses) and its backward: no graph break anywhere."""
    torch._dynamo.reset()
    unet = tiny_unet().train()
    unet.set_moe_dispatch("dense")
    inputs = unet_inputs(TIME_CASES["mixed t"][0])
    torch.manual_seed(1)  # router jitter alike
    eager = unet(*inputs).sample
    torch.manual_seed(1)
    out, loss = torch.compile(unet_step, backend="aot_eager", fullgraph=True)(unet, *inputs)
    loss.backward()
    torch.testing.assert_close(out.sample, eager, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
def test_dense_dispatch_makes_no_host_sync_on_cuda():
    """A training forward and backward of the dense U-Net under CUDA's sync debug mode; the grouped one syncs."""
    unet = tiny_unet().cuda().train()
    inputs = unet_inputs(TIME_CASES["mixed t"][0], "cuda")
    for dispatch in MOE_DISPATCH:
        outputs_and_grads(unet, dispatch, unet_step, *inputs)  # warm-up: cuBLAS handles, the allocator's pools
    torch.cuda.synchronize()
    try:
        torch.cuda.set_sync_debug_mode("error")
        outputs_and_grads(unet, "dense", unet_step, *inputs)
        with pytest.raises(RuntimeError, match="synchroniz"):
            outputs_and_grads(unet, "grouped", unet_step, *inputs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
