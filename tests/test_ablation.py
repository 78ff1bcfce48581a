"""The ablation table: run folders as the curriculum names them, equal compute, the paired difference, the rows."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.evaluation import ablation
from model.evaluation.ablation import FULL, PARTS, active_parameters, compare_with_full, did_not_help, markdown
from model.evaluation.evaluate import add_prompt_arguments, prompt_config
from model.training import train
from model.training.curriculum import VARIANTS, load_curriculum
from model.unet.moe import TimeMoE
from model.unet.presets import RAPHAEL_PRESETS
from tests.test_train import TINY


def make_run(runs: Path, stage: int, variant: str | None, steps: int) -> Path:
    """A run folder as ``make ablation`` leaves it: tiny EMA weights of the variant's preset and its ``state.pt``."""
    args = train.parse_args(load_curriculum().stages[stage].train_args(variant, runs=runs))
    torch.manual_seed(0)
    RAPHAEL_PRESETS[args.preset](**TINY).save_pretrained(Path(args.out) / "unet")
    torch.save({"step": steps, "args": vars(args), "world_size": 1}, Path(args.out) / "state.pt")
    return Path(args.out)


def test_the_runs_found_are_the_curriculums_and_only_runs(tmp_path: Path):
    runs = tmp_path / "runs"
    stage = load_curriculum().stages[1]
    for variant in (None, *VARIANTS):
        make_run(runs, 1, variant, steps=3)
    (runs / "stage1-bundle" / "unet").mkdir(parents=True)  # a bundle beside the runs: no state.pt
    make_run(runs, 10, None, steps=3)  # another stage whose name starts alike
    assert ablation.run_folders(runs, 1) == {
        FULL: stage.run_dir(None, runs),
        **{variant: stage.run_dir(variant, runs) for variant in sorted(VARIANTS)},
    }
    with pytest.raises(FileNotFoundError, match="stage2"):
        ablation.run_folders(runs, 2)


def test_the_slice_read_from_a_run_is_its_stages_evaluation_slice():
    """A run's own arguments give the held-out prompts that ``make eval`` draws for its stage."""
    parser = argparse.ArgumentParser()
    add_prompt_arguments(parser)
    for stage in load_curriculum().stages.values():
        trained = train.parse_args(stage.train_args())
        assert prompt_config(trained) == prompt_config(parser.parse_args(stage.eval_args())), stage.number


def test_active_parameters_count_one_time_expert_and_every_space_expert():
    torch.manual_seed(0)
    unet = RAPHAEL_PRESETS["tiny"](**TINY)
    time_moes = [m for m in unet.modules() if isinstance(m, TimeMoE)]
    expert = sum(p.numel() for p in time_moes[0].experts[0].parameters())
    edge = sum(p.numel() for p in unet.edge_head.parameters())
    total = sum(p.numel() for p in unet.parameters())
    assert active_parameters(unet) == total - edge - len(time_moes) * (len(time_moes[0].experts) - 1) * expert


def test_runs_at_unequal_steps_are_refused_naming_the_folders(tmp_path: Path, capsys: pytest.CaptureFixture):
    """Stage 2 runs at equal steps whose stage 1 runs were not: the whole chain must match."""
    runs = tmp_path / "runs"
    make_run(runs, 1, None, steps=10), make_run(runs, 1, "dense", steps=12)
    full, dense = make_run(runs, 2, None, steps=5), make_run(runs, 2, "dense", steps=5)
    with pytest.raises(SystemExit):
        ablation.main(["--stage", "2", "--runs", str(runs), "--out", str(tmp_path / "eval")])
    error = capsys.readouterr().err
    assert f"{full} 10 + 5 steps, 960 images" in error and f"{dense} 12 + 5 steps, 1,088 images" in error
    assert "--allow-unequal" in error and not (tmp_path / "eval").exists()
    folders = ablation.run_folders(runs, 2)
    records = {name: ablation.run_record(folder) for name, folder in folders.items()}
    records["dense"]["continued_from"]["steps"] = 10
    records["dense"]["continued_from"]["images_seen"] = 640
    assert ablation.unequal_training(records, folders) is None
    records["dense"]["slice"] = {**records["dense"]["slice"], "max_count": 3}
    assert "on another slice" in ablation.unequal_training(records, folders)


def hand_made(composition: list[int], parts: dict[str, float]) -> dict:
    return {
        "parts": parts,
        "per_prompt": {"composition": [bool(c) for c in composition], "identity": [True] * len(composition)},
        "accuracy": {"composition": float(np.mean(composition)), "identity": 1.0},
        "parameters": 1000,
        "active_parameters": 900,
        "training": {"steps": 10, "images_seen": 640},
    }


def test_the_paired_difference_is_the_direct_one_prompt_by_prompt():
    rng = np.random.default_rng(1)
    full = rng.random(200) < 0.7
    worse = full & (rng.random(200) < 0.6)  # fails some prompts the full model draws right
    noisy = np.where(rng.random(200) < 0.1, ~full, full)  # flips a few either way
    every = dict.fromkeys(PARTS, 1.0)
    results = {
        FULL: hand_made(full, every),
        "no-time": hand_made(worse, {**every, "Time-MoE": 0}),
        "no-edge": hand_made(noisy, {**every, "edge supervision": 0.0}),
    }
    compare_with_full(results)
    draws = rng.integers(0, 200, size=(20_000, 200))  # the same prompts resampled for both models
    for name, variant in (("no-time", worse), ("no-edge", noisy)):
        diff = variant.astype(float) - full.astype(float)
        c = results[name]["difference"]["composition"]
        assert c["difference"] == pytest.approx(variant.mean() - full.mean(), abs=1e-12)
        assert c["ci95"] == pytest.approx(np.percentile(diff[draws].mean(axis=1), [2.5, 97.5]), abs=0.01)
    assert results["no-time"]["left_out"] == ["Time-MoE"] and results["no-edge"]["left_out"] == ["edge supervision"]
    no_time, no_edge = (results[name]["difference"]["composition"]["ci95"] for name in ("no-time", "no-edge"))
    assert no_time[1] < 0 <= no_edge[1]
    assert did_not_help(results) == ["no-edge"]
    table = markdown(
        {
            "stage": 1,
            "config_note": "200 prompts",
            "steps": 25,
            "sampler": "DDIM",
            "cfg": 2.0,
            "unequal_training": None,
            "runs": results,
            "did_not_help": did_not_help(results),
        }
    )
    c = results["no-time"]["difference"]["composition"]
    assert f"| full | – | 1,000 | 900 | 10 | 640 | 100.0% | {100 * full.mean():.1f}% | – |" in table
    assert (
        f"| no-time | Time-MoE | 1,000 | 900 | 10 | 640 | 100.0% | {100 * worse.mean():.1f}% | "
        f"{100 * c['difference']:+.1f} ({100 * c['ci95'][0]:+.1f} to {100 * c['ci95'][1]:+.1f}) |"
    ) in table
    assert "Time-MoE helped" in table and "edge supervision did not help" in table
    assert "Parts that did not help: edge supervision (no-edge)." in table


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # the domain FD of two prompts
def test_main_scores_every_run_on_the_same_prompts_and_writes_the_table(tmp_path: Path):
    runs, out = tmp_path / "runs", tmp_path / "eval"
    for variant in (None, "no-space", "no-edge"):
        make_run(runs, 1, variant, steps=4)
    ablation.main(["--stage", "1", "--runs", str(runs), "--n", "2", "--steps", "1", "--batch", "2", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    rows = results["runs"]
    assert list(rows) == [FULL, "no-edge", "no-space"] and results["unequal_training"] is None
    assert (results["steps"], results["sampler"], results["config"]["max_objects"]) == (1, "DDIM", 1)
    assert all(row["prompts"] == rows[FULL]["prompts"] and row["n"] == 2 for row in rows.values())
    assert rows["no-space"]["left_out"] == ["Space-MoE"] and rows["no-edge"]["left_out"] == ["edge supervision"]
    assert rows["no-edge"]["parameters"] == rows[FULL]["parameters"] > rows["no-space"]["parameters"]
    assert rows[FULL]["active_parameters"] > rows["no-space"]["active_parameters"]
    assert all((row["training"]["steps"], row["training"]["images_seen"]) == (4, 256) for row in rows.values())
    table = (out / "results.md").read_text()
    for name, row in rows.items():
        cells = f" | {row['parameters']:,} | {row['active_parameters']:,} | 4 | 256 | "
        assert any(line.startswith(f"| {name} | ") and cells in line for line in table.splitlines()), name
    assert all((out / f"samples_{Path(row['folder']).name}.png").is_file() for row in rows.values())
