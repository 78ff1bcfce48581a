"""A run kept in the repository as a snapshot resumes on a machine that never saw its run folder."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model.training.bundle import bundle
from model.training.curriculum import Stage, resume_point
from model.training.precision import resolve_mixed_precision
from model.training.snapshot import META, restore, save
from model.training.train import main
from model.unet.unet_raphael import RaphaelUNet
from tests.test_train import run_args

STAGES = [Stage(number=1, steps=6), Stage(number=2, steps=10, after=1), Stage(number=3, steps=4, after=2)]


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_restored_snapshot_resumes_the_run_with_its_record_and_rewarms_the_rate(tmp_path):
    runs, snapshots = tmp_path / "runs", tmp_path / "snapshots"
    run = runs / "stage2"
    main(run_args(tmp_path, 6, out=run, warmup=4, mixed_precision="bf16"))  # a CPU's bf16 autocast, emulated or not
    averaged = RaphaelUNet.from_pretrained(run / "unet").state_dict()
    for step in (4, 8):  # scores the run took, one of them past the checkpoint (a kill between them)
        (run / "eval" / f"step{step}-domain").mkdir(parents=True)
        (run / "eval" / f"step{step}-domain" / "results.md").write_text(f"report {step}\n")
    scores = [{"step": s, "set": "domain", "n": 2, "passed": {"identity": 1, "composition": 0}} for s in (4, 8)]
    (run / "evals.jsonl").write_text("".join(json.dumps(row) + "\n" for row in scores))
    kept = save(run, snapshots / "stage2")

    weights = load_file(kept / "unet" / "diffusion_pytorch_model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float16}  # half the size of the run's own EMA folder
    assert json.loads((kept / META).read_text())["step"] == 6 and not (kept / "state.pt").exists()

    shutil.rmtree(runs)  # a fresh machine: no run folder at all
    assert resume_point(STAGES, runs=runs, snapshots=snapshots) == STAGES[1:]  # restored, stage 1 not needed
    state = torch.load(run / "state.pt", weights_only=False)
    assert state["step"] == 6 and state["rewarm"] == 6 and state["optimizer"]["state"] == {}
    for key, value in averaged.items():  # the run goes on from its EMA weights, rounded to fp16
        torch.testing.assert_close(state["model"][key], value, atol=2e-3, rtol=2e-3, msg=key)
    assert not restore(kept, run)  # a run folder with its own checkpoint is never overwritten
    assert (run / "eval" / "step4-domain" / "results.md").read_text() == "report 4\n"
    assert not (run / "eval" / "step8-domain").exists()
    assert [json.loads(line)["step"] for line in (run / "evals.jsonl").read_text().splitlines()] == [4]

    main(run_args(tmp_path, 10, out=run, warmup=4, mixed_precision="bf16"))
    log = rows(run)
    assert [r["step"] for r in log] == list(range(1, 11))
    # Fresh moments warm up again over 4 steps from step 6; each row logs the rate of the step after it.
    assert [r["lr"] for r in log[6:]] == pytest.approx([3e-3 * 0.5, 3e-3 * 0.75, 3e-3, 3e-3])
    record = json.loads((bundle(run, tmp_path / "bundle") / "training.json").read_text())
    assert record["steps"] == 10 and record["step_time_hours"] == round(sum(r["sec"] for r in log) / 3600, 3)


def test_the_chain_goes_on_from_its_last_stage_with_a_checkpoint_or_a_snapshot(tmp_path):
    runs, snapshots = tmp_path / "runs", tmp_path / "snapshots"
    assert resume_point(STAGES, runs=runs, snapshots=snapshots) == STAGES  # nothing yet: from the first stage
    (runs / "stage1").mkdir(parents=True)
    (runs / "stage1" / "state.pt").touch()
    assert resume_point(STAGES, runs=runs, snapshots=snapshots) == STAGES
    (snapshots / "stage2").mkdir(parents=True)
    (snapshots / "stage2" / META).write_text("{}")
    assert resume_point(STAGES, runs=runs, snapshots=snapshots, dry_run=True) == STAGES[1:]
    assert not (runs / "stage2").exists()  # a dry run restores nothing
    (runs / "stage3-dense").mkdir(parents=True)
    (runs / "stage3-dense" / "state.pt").touch()
    assert resume_point(STAGES, "dense", runs=runs, snapshots=snapshots) == STAGES[2:]
    assert resume_point(STAGES, "no-edge", runs=runs, snapshots=snapshots) == STAGES  # each variant its own runs


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu sse2 avx512f avx512_bf16 avx512_vnni", "bf16"), ("fpu amx_bf16 amx_tile", "bf16"), ("fpu avx2", "no")],
)
def test_auto_precision_is_bf16_only_where_the_cpu_multiplies_it(tmp_path, monkeypatch, flags, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert resolve_mixed_precision("auto", cpuinfo) == expected
    assert resolve_mixed_precision("no", cpuinfo) == "no"
    assert resolve_mixed_precision("auto", tmp_path / "missing") == "no"


def test_make_snapshot_keeps_the_stage_run_of_the_variant():
    root = Path(__file__).resolve().parents[1]
    make = lambda *a: subprocess.run(["make", "-n", "snapshot", *a], cwd=root, capture_output=True, text=True)  # noqa: E731
    assert "-m model.training.snapshot save --run runs/stage10" in make("STAGE=10").stdout
    assert "--run runs/stage1-no-space" in make("STAGE=1", "VARIANT=no-space").stdout
    refused = make()
    assert refused.returncode != 0 and "make snapshot needs STAGE=n" in refused.stderr
