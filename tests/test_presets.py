"""The ablation presets: each MoE left out alone builds, runs forward and backward, and round-trips through a save."""

import pytest
import torch

from model.unet.moe import FeedForward, SpaceMoE, TimeMoE
from model.unet.presets import RAPHAEL_PRESETS
from tests.test_unet import TINY, active_parameters, inputs

# preset -> (the MoE it keeps, the MoE it replaces by a dense FFN)
ALONE = {"tiny-no-space": (TimeMoE, SpaceMoE), "tiny-no-time": (SpaceMoE, TimeMoE)}


def build(preset: str):
    torch.manual_seed(0)
    return RAPHAEL_PRESETS[preset](**TINY)


@pytest.mark.parametrize("preset", ALONE)
def test_one_moe_left_out_becomes_a_dense_ffn_of_the_same_active_size(preset: str):
    kept, left_out = ALONE[preset]
    unet = build(preset)
    blocks = [m for m in unet.modules() if m.__class__.__name__ == "RaphaelTransformerBlock"]
    ffn = "space_ffn" if left_out is SpaceMoE else "time_ffn"
    assert blocks and all(type(getattr(block, ffn)) is FeedForward for block in blocks)
    kinds = {type(m) for m in unet.modules()}
    assert kept in kinds and left_out not in kinds
    assert active_parameters(unet) == active_parameters(build("tiny")) == active_parameters(build("tiny-dense"))


@pytest.mark.parametrize("preset", ALONE)
def test_forward_and_backward_route_only_the_moe_kept(preset: str):
    unet = build(preset).train()
    out = unet(*inputs(), return_routing=True, compute_edges=True)
    r = out.routing
    assert out.sample.shape == (2, 3, 32, 32) and r.edge_logits.shape == (2, 1, 32, 32)
    if preset == "tiny-no-space":
        assert all(e is None for e in r.space_experts) and r.space_balance_loss is None
        assert all(e is not None for e in r.time_experts) and r.time_balance_loss > 0
    else:
        assert all(e is None for e in r.time_experts) and r.time_balance_loss is None
        assert all(e is not None for e in r.space_experts) and r.space_balance_loss > 0
    (out.sample.pow(2).mean() + r.aux_loss + r.edge_logits.mean()).backward()
    grads = {name: p.grad for name, p in unet.named_parameters()}
    dense = [name for name in grads if ".space_ffn.fc" in name or ".time_ffn.fc" in name]
    assert dense and all(grads[name] is not None and grads[name].abs().sum() > 0 for name in dense)
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)


@pytest.mark.parametrize("preset", ALONE)
def test_save_and_load_round_trip_keeps_the_ablation(preset: str, tmp_path):
    unet = build(preset).eval()
    unet.save_pretrained(tmp_path)
    loaded = type(unet).from_pretrained(tmp_path).eval()
    assert (loaded.config.num_space_experts, loaded.config.num_time_experts) == (
        unet.config.num_space_experts,
        unet.config.num_time_experts,
    )
    assert loaded.state_dict().keys() == unet.state_dict().keys()
    torch.testing.assert_close(loaded(*inputs()).sample, unet(*inputs()).sample, rtol=0, atol=0)
