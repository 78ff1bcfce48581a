"""RaphaelUNet: shapes, routing record, dense baseline, save/load round trip, paper scale."""

import pytest
import torch

from model.unet.moe import FeedForward, SpaceMoE, TimeMoE, TopOneRouter
from model.unet.presets import raphael_paper
from model.unet.unet_raphael import RaphaelUNet

TINY = dict(
    block_out_channels=(8, 16, 32),
    transformer_layers_per_level=(0, 0, 1),
    mid_transformer_layers=1,
    attention_head_dim=8,
    cross_attention_dim=24,
    gate_hidden_dim=8,
    norm_num_groups=4,
    edge_channels=4,
)


def tiny_unet(**kw) -> RaphaelUNet:
    torch.manual_seed(0)
    return RaphaelUNet(**{**TINY, **kw}).eval()


def inputs(b=2, h=32, w=32, length=7):
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(b, length, dtype=torch.long)
    mask[0, 5:] = 0
    sample = torch.randn(b, 3, h, w, generator=g)
    return sample, torch.tensor([100, 900])[:b], torch.randn(b, length, 24, generator=g), mask


def test_forward_shapes_and_routing_record():
    unet = tiny_unet()
    x, t, text, mask = inputs(h=36, w=28)
    out = unet(x, t, text, mask, return_routing=True, compute_edges=True)
    assert out.sample.shape == x.shape
    r = out.routing
    assert len(r.space_experts) == unet.num_transformer_blocks == 3
    assert r.space_experts[0].shape == (2, 7) and r.time_experts[0].shape == (2,)
    assert r.token_masks[0].shape == (2, 9 * 7, 7)
    assert r.token_masks[0][0, :, 5:].sum() == 0  # pad tokens have no region
    assert r.edge_logits.shape == (2, 1, 36, 28)
    assert r.space_counts.shape == (3, 6) and r.time_counts.shape == (3, 4)
    assert r.aux_loss.ndim == 0 and r.aux_loss > 0


def test_plain_forward_returns_no_record():
    unet = tiny_unet()
    out = unet(*inputs())
    assert out.routing is None
    assert unet(*inputs(), return_dict=False)[0].shape == (2, 3, 32, 32)


def test_a_caption_without_real_tokens_gets_no_context_and_no_nan():
    """An all-pad mask (a caller's empty encoding) must not turn the step into NaN through a 0/0 softmax."""
    unet = tiny_unet().train()
    x, t, text, mask = inputs()
    mask[1] = 0
    out = unet(x, t, text, mask, return_routing=True, compute_edges=True)
    assert torch.isfinite(out.sample).all()
    assert out.routing.token_masks[0][1].sum() == 0  # no token, no region, no Space-MoE expert
    out.sample.pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in unet.parameters() if p.grad is not None)

    # The empty row's text does not reach its image: any text gives the same output.
    with torch.no_grad():
        other = unet.eval()(x, t, torch.randn_like(text), mask).sample
        same = unet(x, t, text, mask).sample
    torch.testing.assert_close(other[1], same[1])
    assert not torch.allclose(other[0], same[0])


def test_bad_size_raises_a_clear_error():
    with pytest.raises(ValueError, match="divisible by 4"):
        tiny_unet()(*inputs(h=30, w=32))


def active_parameters(unet: RaphaelUNet) -> int:
    """Parameters one token passes through: one expert per MoE, no gates."""
    total = sum(p.numel() for p in unet.parameters())
    for m in unet.modules():
        if isinstance(m, (SpaceMoE, TimeMoE)):
            per_expert = sum(p.numel() for p in m.experts[0].parameters())
            total -= per_expert * (len(m.experts) - 1)
        if isinstance(m, TopOneRouter):
            total -= sum(p.numel() for p in m.parameters())
    return total


def test_zero_experts_gives_a_dense_block_with_equal_active_parameters():
    moe, dense = tiny_unet(), tiny_unet(num_space_experts=0, num_time_experts=0)
    assert not any(isinstance(m, (SpaceMoE, TimeMoE)) for m in dense.modules())
    assert any(isinstance(m, FeedForward) for m in dense.modules())
    assert active_parameters(moe) == sum(p.numel() for p in dense.parameters())
    assert dense(*inputs()).sample.shape == (2, 3, 32, 32)


def test_save_and_load_round_trip_exactly(tmp_path):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path)
    loaded = RaphaelUNet.from_pretrained(tmp_path).eval()
    strip = lambda c: {k: list(v) if isinstance(v, tuple) else v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert strip(loaded.config) == strip(unet.config)
    for (name, a), (_, b) in zip(unet.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    torch.testing.assert_close(loaded(*inputs()).sample, unet(*inputs()).sample, rtol=0, atol=0)


def test_paper_configuration_counts_about_three_billion_parameters():
    with torch.device("meta"):
        unet = raphael_paper()
    n = sum(p.numel() for p in unet.parameters())
    assert 2.5e9 < n < 3.5e9
    assert unet.num_transformer_blocks == 16
    space = [m for m in unet.modules() if isinstance(m, SpaceMoE)]
    time = [m for m in unet.modules() if isinstance(m, TimeMoE)]
    assert len(space) == len(time) == 16
    assert {len(m.experts) for m in space} == {6} and {len(m.experts) for m in time} == {4}


def test_block_order_is_self_cross_time_space():
    block = next(m for m in tiny_unet().modules() if m.__class__.__name__ == "RaphaelTransformerBlock")
    order = [name for name, _ in block.named_children() if not name.startswith("norm")]
    assert order == ["self_attn", "cross_attn", "time_ffn", "space_ffn"]


def test_guidance_embedding_starts_silent_and_leaves_time_routing_alone():
    """A guidance-embedding U-Net with the teacher's weights predicts what the teacher does until it is trained;
    once its embedding speaks, the scale changes the prediction but Time-MoE still routes on the timestep alone."""
    teacher = tiny_unet()
    student = tiny_unet(guidance_embeds=True)
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    assert not unexpected and missing and all(key.startswith("guidance_embedder.") for key in missing)
    sample, t, text, mask = inputs()
    with torch.no_grad():
        expected = teacher(sample, t, text, mask).sample
        for scale in (None, 1.0, 3.5, torch.tensor([1.0, 4.0])):
            torch.testing.assert_close(student(sample, t, text, mask, guidance=scale).sample, expected)
        torch.nn.init.normal_(student.guidance_embedder.mlp[-1].weight, std=0.5)
        low = student(sample, t, text, mask, guidance=1.0, return_routing=True)
        high = student(sample, t, text, mask, guidance=4.0, return_routing=True)
    assert (low.sample - high.sample).abs().max() > 1e-3
    for a, b in zip(low.routing.time_experts, high.routing.time_experts):
        assert a is None or torch.equal(a, b)
    assert any(a is not None for a in low.routing.time_experts)


def test_guidance_embedding_config_round_trips_and_bad_range_is_refused(tmp_path):
    student = tiny_unet(guidance_embeds=True, guidance_range=(1.5, 3.0))
    student.save_pretrained(tmp_path / "unet")
    loaded = RaphaelUNet.from_pretrained(tmp_path / "unet")
    assert loaded.config.guidance_embeds and tuple(loaded.config.guidance_range) == (1.5, 3.0)
    with pytest.raises(ValueError, match="guidance_range"):
        tiny_unet(guidance_embeds=True, guidance_range=(3.0, 1.0))
