"""Growing a trained U-Net: new transformer levels start as identities; a stage can grow the weights it starts from."""

import json

import pytest
import torch

from model.training.bundle import bundle
from model.training.curriculum import load_curriculum
from model.training.train import main, parse_args
from model.unet.grow import block_names, grow
from model.unet.unet_raphael import RaphaelUNet
from tests.test_train import TINY, run_args

SMALL = {**TINY, "cross_attention_dim": 12}


def inputs(batch: int = 3) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(batch, 3, 16, 16, generator=generator)
    timesteps = torch.tensor([5, 480, 990])[:batch]
    text = torch.randn(batch, 6, 12, generator=generator)
    mask = torch.tensor([[True] * 4 + [False] * 2] * batch)
    return sample, timesteps, text, mask


def test_a_grown_model_computes_what_it_grew_from_and_its_edge_head_reads_the_same_block():
    torch.manual_seed(0)
    trained = RaphaelUNet(**SMALL).eval()
    grown = grow(trained, [0, 1, 1]).eval()
    assert list(grown.config.transformer_layers_per_level) == [0, 1, 1]
    old_names, new_names = block_names(trained), block_names(grown)
    assert len(new_names) == len(old_names) + 2  # one block on the way down, one on the way up
    assert new_names[grown.config.edge_block_index] == old_names[trained.config.edge_block_index]

    with torch.no_grad():
        before = trained(*inputs(), return_routing=True, compute_edges=True)
        after = grown(*inputs(), return_routing=True, compute_edges=True)
    torch.testing.assert_close(after.sample, before.sample, rtol=0, atol=1e-6)
    torch.testing.assert_close(after.routing.edge_logits, before.routing.edge_logits, rtol=0, atol=1e-6)
    assert len(after.routing.grids) == len(before.routing.grids) + 2 and (8, 8) in after.routing.grids

    # The new branch opens at the first step: its output projection gets a gradient.
    grown.train()
    grown(*inputs()).sample.pow(2).mean().backward()
    assert grown.down_levels[1][1].proj_out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("levels", "message"), [([0, 0, 2], "Only levels without"), ([0, 1], "needs 3 levels")])
def test_growth_that_would_change_trained_blocks_is_refused(levels, message):
    with pytest.raises(ValueError, match=message):
        grow(RaphaelUNet(**SMALL), levels)


def test_a_run_grows_the_weights_it_starts_from_and_records_it(tmp_path):
    main(run_args(tmp_path, 1, out=tmp_path / "before"))
    init = tmp_path / "before" / "unet"
    main(run_args(tmp_path, 2, init=init, grow_levels="0,1,1"))
    grown = RaphaelUNet.from_pretrained(tmp_path / "run" / "unet")
    assert list(grown.config.transformer_layers_per_level) == [0, 1, 1]
    main(run_args(tmp_path, 3, init=init, grow_levels="0,1,1"))  # resumed: the run's own layout, grown once
    record = json.loads((bundle(tmp_path / "run", tmp_path / "bundle") / "training.json").read_text())
    assert record["steps"] == 3 and record["recipe"]["grow_levels"] == "0,1,1"
    with pytest.raises(SystemExit):  # nothing to grow without weights to start from
        parse_args(run_args(tmp_path, 2, grow_levels="0,1,1"))
    with pytest.raises(SystemExit):
        parse_args(run_args(tmp_path, 2, init=init, grow_levels="0,one,1"))


def test_a_curriculum_stage_grows_with_a_list_of_blocks_per_level(tmp_path):
    path = tmp_path / "curriculum.toml"
    path.write_text(
        "shipped = 1\n[stage.1]\nsteps = 5\n[stage.2]\nafter = 1\nsteps = 5\ngrow = [0, 1, 2]\n"
        "data = { max_objects = 3 }\n"
    )
    stage = load_curriculum(path).stages[2]
    args = parse_args(stage.train_args())
    assert args.grow_levels == "0,1,2" and args.init == "runs/stage1/unet"
