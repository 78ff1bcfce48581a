"""Edge supervision: Sobel targets, focal loss, and the t < 500 gate."""

import torch

from model.unet.edge import EdgeHead, edge_loss, focal_loss, sobel_edges


def square_image() -> torch.Tensor:
    img = -torch.ones(1, 3, 16, 16)
    img[:, :, 4:12, 4:12] = 1.0
    return img


def test_sobel_edges_trace_the_outline():
    edges = sobel_edges(square_image())[0, 0]
    assert edges[8, 8] == 0 and edges[0, 0] == 0  # flat inside and outside
    assert edges[8, 4] == 1 and edges[4, 8] == 1  # on the square's border


def test_edge_head_has_five_conv_layers_and_image_size_output():
    head = EdgeHead(channels=8)
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5
    assert head(torch.rand(2, 1, 4, 4), (16, 12)).shape == (2, 1, 16, 12)


def test_focal_loss_down_weights_easy_pixels():
    target = torch.tensor([[1.0, 0.0]])
    easy = focal_loss(torch.tensor([[4.0, -4.0]]), target)
    hard = focal_loss(torch.tensor([[-4.0, 4.0]]), target)
    bce_ratio = torch.nn.functional.softplus(torch.tensor(4.0)) / torch.nn.functional.softplus(torch.tensor(-4.0))
    assert hard / easy > bce_ratio  # (1 - p_t)^γ sharpens the gap beyond plain BCE


def test_edge_loss_is_zero_for_t_at_or_above_500():
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    images = square_image().repeat(2, 1, 1, 1)
    loss = edge_loss(logits, images, torch.tensor([500, 999]))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad.abs().sum() == 0


def test_edge_loss_counts_only_samples_below_500():
    logits = torch.randn(2, 1, 16, 16)
    images = square_image().repeat(2, 1, 1, 1)
    mixed = edge_loss(logits, images, torch.tensor([10, 800]))
    only_first = edge_loss(logits[:1], images[:1], torch.tensor([10]))
    torch.testing.assert_close(mixed, only_first)
