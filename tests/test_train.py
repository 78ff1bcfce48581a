"""The training CLI: a short run learns, and a killed run resumes from its last checkpoint."""

import json
import logging
import multiprocessing
import subprocess
from pathlib import Path

import pytest
import torch

from model.pipeline.bundled import load_bundle
from model.pipeline.schedule import make_noise_scheduler
from model.training.bundle import bundle
from model.training.checkpoint import load_state, save_state
from model.training.optimisation import EMA, warmup_schedule
from model.training.train import main, min_snr_weight, parse_args
from model.unet.unet_raphael import RaphaelUNet

TINY = {
    "block_out_channels": [8, 16, 32],
    "transformer_layers_per_level": [0, 0, 1],
    "mid_transformer_layers": 1,
    "attention_head_dim": 8,
    "gate_hidden_dim": 8,
    "norm_num_groups": 4,
    "edge_channels": 4,
}


def run_args(tmp_path, steps: int, **extra) -> list[str]:
    config = tmp_path / "unet.json"
    config.write_text(json.dumps(TINY))
    args = [
        "--out",
        str(tmp_path / "run"),
        "--unet-config",
        str(config),
        "--steps",
        str(steps),
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--warmup",
        "1",
        "--num-emoji",
        "4",
        "--max-objects",
        "1",
        "--max-count",
        "1",
        "--styles",
        "flat",
        "--buckets",
        "1:1",
        "--save-every",
        "5",
        "--threads",
        "1",
        "--mixed-precision",  # the same arithmetic on every CPU; the float-noise comparisons below assume fp32
        "no",
    ]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def log_rows(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]


def test_min_snr_weight_caps_at_gamma_over_snr_plus_one():
    scheduler = make_noise_scheduler()
    w = min_snr_weight(scheduler, torch.tensor([0, 999]))
    alphas = scheduler.alphas_cumprod[[0, 999]]
    snr = alphas / (1 - alphas)
    torch.testing.assert_close(w, torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))


def rates(steps: range, start: int, **schedule) -> list[float]:
    """The learning rate each step of ``steps`` trains with, for a run resumed at ``start``."""
    # initial_lr is what a resumed optimizer's state brings along
    optimizer = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "initial_lr": 1.0}], lr=1.0)
    lr_scheduler = warmup_schedule(optimizer, start=start, **schedule)
    used = []
    for _ in steps:
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        lr_scheduler.step()
    return used


def test_cooldown_decays_to_zero_over_the_last_steps_and_extends_a_finished_run():
    planned = rates(range(0, 40), start=0, warmup=4, total=40, cooldown=10)
    assert planned[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert planned[4:30] == pytest.approx([1.0] * 26)  # constant until the last 10 steps
    assert planned[30:] == pytest.approx([(40 - s) / 10 for s in range(30, 40)])  # 1.0 ... 0.1
    # A run that ran 25 steps without a cool-down, resumed with one, trains at the planned rates.
    assert rates(range(0, 25), start=0, warmup=4) == pytest.approx(planned[:25])
    assert rates(range(25, 40), start=25, warmup=4, total=40, cooldown=10) == pytest.approx(planned[25:])


def test_a_run_can_stop_before_the_end_of_its_planned_schedule(tmp_path):
    """``--schedule-steps`` plans the cool-down for a longer run: this one stops at 6 of 10, partly cooled."""
    main(run_args(tmp_path, 6, schedule_steps=10, cooldown=5))
    rows = log_rows(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert [r["lr"] for r in rows] == pytest.approx([3e-3] * 5 + [3e-3 * 4 / 5])  # the rate of the next step
    with pytest.raises(SystemExit):  # past its schedule's end the rate would turn negative
        parse_args(run_args(tmp_path, 12, schedule_steps=10))


@pytest.mark.parametrize("preset", ["tiny", "tiny-no-space", "tiny-no-time"])
def test_the_ablation_variants_train_without_the_edge_loss(tmp_path, preset):
    """Each ablation run trains: the edge weight 0 (no-edge) still logs the balance of whichever MoE is left."""
    main(run_args(tmp_path, 2, edge_coef=0, preset=preset))
    rows = log_rows(tmp_path)
    assert [r["step"] for r in rows] == [1, 2] and all(r["edge"] == 0 for r in rows)
    assert all((r["space_usage"] is None) == (preset == "tiny-no-space") for r in rows)
    assert all((r["time_usage"] is None) == (preset == "tiny-no-time") for r in rows)


@pytest.mark.slow
def test_twenty_steps_lower_the_loss(tmp_path):
    main(run_args(tmp_path, 20))
    rows = log_rows(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 21))
    first = sum(r["mse"] for r in rows[:5]) / 5
    last = sum(r["mse"] for r in rows[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    assert all(r["space_usage"] and r["time_usage"] for r in rows)
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    RaphaelUNet.from_pretrained(tmp_path / "run" / "unet")


@pytest.mark.slow
def test_resume_continues_from_the_saved_step(tmp_path, caplog):
    main(run_args(tmp_path, 5))
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    assert state["step"] == 5
    with open(tmp_path / "run" / "log.jsonl", "a") as log:  # killed at step 6, after logging it
        log.write(json.dumps({**log_rows(tmp_path)[-1], "step": 6}) + "\n")
    main(run_args(tmp_path, 8))
    steps = [r["step"] for r in log_rows(tmp_path)]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]
    assert torch.load(tmp_path / "run" / "state.pt", weights_only=False)["step"] == 8
    saved = (tmp_path / "run" / "state.pt").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="model.training.train"):
        main(run_args(tmp_path, 8))  # `make train` passes through a finished stage this way
    assert "Stopped at step 8;" in caplog.text and (tmp_path / "run" / "state.pt").stat().st_mtime_ns == saved

    out = bundle(tmp_path / "run", tmp_path / "bundle")
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 8 and record["images_seen"] == 64 and record["batch_size"] == 8
    assert record["data"]["num_emoji"] == 4 and record["recipe"]["preset"] == "tiny"
    assert record["recipe"]["schedule_steps"] == 8
    assert record["step_time_hours"] == round(sum(r["sec"] for r in log_rows(tmp_path)) / 3600, 3)
    assert record["mse_last_100_steps"] == pytest.approx(sum(r["mse"] for r in log_rows(tmp_path)) / 8)
    assert list(load_bundle(out).unet.config.block_out_channels) == TINY["block_out_channels"]


@pytest.mark.slow
@pytest.mark.parametrize("saved, resumed", [(False, True), (True, False)])
def test_a_resumed_optimizer_keeps_this_machines_kernel_choice(tmp_path, saved: bool, resumed: bool):
    """A run saved where AdamW was not fused (a CPU) and resumed where it is (a GPU) takes the fused kernel."""
    unet = RaphaelUNet(**TINY)
    before = torch.optim.AdamW(unet.parameters(), lr=1e-3, fused=saved)
    for param in unet.parameters():
        param.grad = torch.ones_like(param)
    before.step()
    save_state(tmp_path / "state.pt", step=3, model=unet, ema=EMA(unet), optimizer=before)
    after = torch.optim.AdamW(unet.parameters(), lr=5e-4, fused=resumed)
    assert load_state(tmp_path / "state.pt", unet, EMA(unet), after)["step"] == 3
    assert after.param_groups[0]["fused"] is resumed
    assert after.param_groups[0]["lr"] == 1e-3  # the run's own hyper-parameters come back
    after.step()  # and its moments, with either kernel
    assert all(after.state[param]["step"] == 2 for param in unet.parameters())


def test_a_curriculum_stage_starts_from_the_stage_before_and_records_it(tmp_path):
    main(run_args(tmp_path, 5))
    stage1 = RaphaelUNet.from_pretrained(tmp_path / "run" / "unet")
    main(run_args(tmp_path, 1, out=tmp_path / "probe", init=tmp_path / "run" / "unet", lr=0))
    probe = RaphaelUNet.from_pretrained(tmp_path / "probe" / "unet").state_dict()
    for key, value in stage1.state_dict().items():  # a step at lr 0 keeps the weights it started from
        torch.testing.assert_close(probe[key], value, msg=key)

    main(
        run_args(
            tmp_path, 3, out=tmp_path / "stage2", init=tmp_path / "run" / "unet", max_objects=2, object_weights="1,3"
        )
    )
    main(run_args(tmp_path, 7))  # the folder stage 2 started from moves on; its record keeps the 5 steps it had
    record = json.loads((bundle(tmp_path / "stage2", tmp_path / "bundle") / "training.json").read_text())
    assert (record["steps"], record["data"]["max_objects"], record["data"]["object_weights"]) == (3, 2, "1,3")
    assert record["continued_from"]["steps"] == 5 and record["continued_from"]["data"]["max_objects"] == 1


@pytest.mark.slow
def test_a_resumed_run_matches_an_uninterrupted_one(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    main(run_args(tmp_path / "a", 6))
    main(run_args(tmp_path / "b", 3))
    main(run_args(tmp_path / "b", 6))
    straight, resumed = (torch.load(tmp_path / d / "run" / "state.pt", weights_only=False) for d in ("a", "b"))
    for key, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, msg=key)


def test_the_gpu_options_train_what_the_plain_run_trains(tmp_path):
    """Batches rendered by worker processes, the sync-free MoE dispatch and losses read back every third step
    give the run the same scenes, losses (to float noise) and log rows as the plain run, resumed included."""
    plain, fast = tmp_path / "plain", tmp_path / "fast"
    plain.mkdir(), fast.mkdir()
    main(run_args(plain, 4))
    gpu_options = {"workers": 2, "moe_dispatch": "dense", "log_every": 3}
    main(run_args(fast, 2, **gpu_options))  # stopped at step 2 (a save: 2 rows read back), then resumed to 4
    main(run_args(fast, 4, **gpu_options))
    assert not multiprocessing.active_children()  # the workers ended with their runs (a waiting one hangs teardown)
    rows, fast_rows = log_rows(plain), log_rows(fast)
    assert [r["step"] for r in fast_rows] == [1, 2, 3, 4]
    for row, fast_row in zip(rows, fast_rows, strict=True):
        assert fast_row["bucket"] == row["bucket"] and fast_row["space_usage"] == row["space_usage"]
        for key in ("loss", "mse", "edge", "balance"):
            assert fast_row[key] == pytest.approx(row[key], rel=1e-4), key


@pytest.mark.parametrize(("target", "suffix"), [("train", ""), ("train-dense", "-dense")])
def test_make_train_runs_every_stage_up_to_the_shipped_one(target: str, suffix: str):
    """``make train`` reproduces the shipped weights from scratch: each stage in full, each from the one before."""
    root = Path(__file__).resolve().parents[1]
    make = subprocess.run(
        ["make", "-n", target, "TRAIN_STEPS=9", "ARGS=--time-limit 5 --dry-run"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert make.returncode == 0, make.stderr
    command = next(line for line in make.stdout.splitlines() if "model.training.curriculum" in line).split()
    dry_run = subprocess.run(command, cwd=root, capture_output=True, text=True)
    assert dry_run.returncode == 0, dry_run.stderr
    stages = [
        line.split("model.training.train ")[1].split() for line in dry_run.stderr.splitlines() if "Stage " in line
    ]
    stage_1, stage_2, stage_3, stage_4, stage_5, stage_6, stage_7, stage_8, stage_9 = stages
    assert stage_1[stage_1.index("--out") + 1] == f"runs/stage1{suffix}" and "--init" not in stage_1
    assert stage_1[stage_1.index("--steps") + 1] == "5550" and "--time-limit" not in stage_1  # ARGS are stage 9's
    assert stage_2[stage_2.index("--init") + 1] == f"runs/stage1{suffix}/unet"
    assert stage_2[stage_2.index("--steps") + 1] == "4000" and "--time-limit" not in stage_2
    assert "--max-objects 2 --max-count 2" in " ".join(stage_2) and "--object-weights" not in stage_2
    assert stage_2[stage_2.index("--cooldown") + 1] == "1000" and "--cooldown" not in stage_1
    assert stage_3[stage_3.index("--init") + 1] == f"runs/stage2{suffix}/unet"
    assert stage_3[stage_3.index("--steps") + 1] == "1500" and "--time-limit" not in stage_3
    assert stage_3[stage_3.index("--object-weights") + 1] == "0,1" and stage_3[stage_3.index("--seed") + 1] == "3"
    assert stage_3[stage_3.index("--cooldown") + 1] == "600"
    assert stage_4[stage_4.index("--init") + 1] == f"runs/stage3{suffix}/unet"
    assert stage_4[stage_4.index("--steps") + 1] == "2554" and "--time-limit" not in stage_4
    assert "--max-objects 2 --max-count 2" in " ".join(stage_4) and stage_4[stage_4.index("--seed") + 1] == "4"
    assert stage_4[stage_4.index("--batch-size") + 1] == "128" and stage_4[stage_4.index("--cooldown") + 1] == "797"
    assert stage_4[stage_4.index("--schedule-steps") + 1] == "2659"
    assert stage_5[stage_5.index("--init") + 1] == f"runs/stage4{suffix}/unet"
    assert stage_5[stage_5.index("--steps") + 1] == "2600" and "--time-limit" not in stage_5
    assert stage_5[stage_5.index("--seed") + 1] == "5" and stage_5[stage_5.index("--cooldown") + 1] == "800"
    assert "--batch-size" not in stage_5 and "--schedule-steps" not in stage_5
    assert stage_6[stage_6.index("--init") + 1] == f"runs/stage5{suffix}/unet"
    assert stage_6[stage_6.index("--steps") + 1] == "1000" and "--time-limit" not in stage_6
    assert stage_6[stage_6.index("--seed") + 1] == "6" and stage_6[stage_6.index("--cooldown") + 1] == "500"
    assert stage_7[stage_7.index("--init") + 1] == f"runs/stage6{suffix}/unet"
    assert stage_7[stage_7.index("--steps") + 1] == "2800" and "--time-limit" not in stage_7
    assert stage_7[stage_7.index("--seed") + 1] == "7" and stage_7[stage_7.index("--cooldown") + 1] == "800"
    assert stage_8[stage_8.index("--init") + 1] == f"runs/stage7{suffix}/unet"
    assert stage_8[stage_8.index("--steps") + 1] == "2800" and "--time-limit" not in stage_8
    assert stage_8[stage_8.index("--seed") + 1] == "8" and stage_8[stage_8.index("--cooldown") + 1] == "800"
    assert stage_8[stage_8.index("--object-weights") + 1] == "0,1" and "--batch-size" not in stage_8
    assert stage_9[stage_9.index("--init") + 1] == f"runs/stage8{suffix}/unet"
    assert stage_9[stage_9.index("--steps") + 1] == "9" and stage_9[-2:] == ["--time-limit", "5"]
    assert stage_9[stage_9.index("--seed") + 1] == "9" and stage_9[stage_9.index("--cooldown") + 1] == "800"
    assert "--paraphrases" in stage_9 and not any("--paraphrases" in stage for stage in stages[:-1])
