"""Training throughput: images per second of the real training CLI, per batch size and set of speed options. JSON.

Each setting runs ``python -m model.training.train`` in its own process (so a compiled step's cache and a worker
pool start fresh) for a few steps on the whole domain's scenes and reads the step times from its log: the median
over the steps after the warm-up (compilation, workers' first batches). What it measures is what a run pays per
step: rendering, text encoding, forward, losses, backward, optimiser and EMA. Settings:

- ``plain``: the CPU recipe (scenes drawn in the training process, grouped MoE dispatch, losses read every step);
- ``fast``: scenes rendered ahead by ``--workers`` processes, the sync-free MoE dispatch, losses read every 10 steps;
- ``fast-compile``: ``fast`` with ``torch.compile``.

Goal (issue 31, GPU path): RAPHAEL-tiny training at ≥ 20,000 images/s on one H100 (the FLOP count puts the limit
near 30,000 at a third of peak). On a GPU run it as ``python -m bench.train_throughput --batch-sizes 256 1024 4096``
(bf16 there by ``--mixed-precision auto``); on the CPU the defaults take a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from model.training.precision import MIXED_PRECISION, resolve_mixed_precision

ROOT = Path(__file__).resolve().parents[1]
GOAL_IMAGES_PER_S = 20_000  # one H100
SETTINGS: dict[str, list[str]] = {
    "plain": [],
    "fast": ["--moe-dispatch", "dense", "--log-every", "10"],  # plus --workers
    "fast-compile": ["--moe-dispatch", "dense", "--log-every", "10", "--compile"],
}
WHOLE_DOMAIN = ["--max-objects", "3", "--max-count", "3", "--paraphrases"]  # stage 10's scenes


def run_setting(
    setting: str, batch: int, steps: int, warmup: int, workers: int, timeout: float, precision: str
) -> dict[str, Any]:
    """One training run of ``steps`` steps at ``batch``; its median step time after ``warmup`` steps."""
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        command = [sys.executable, "-m", "model.training.train", "--out", tmp, "--steps", str(steps)]
        command += ["--batch-size", str(batch), "--save-every", str(10 * steps), "--warmup", "1", *WHOLE_DOMAIN]
        command += ["--mixed-precision", precision]
        command += SETTINGS[setting] + (["--workers", str(workers)] if setting != "plain" and workers else [])
        started = time.perf_counter()
        try:
            subprocess.run(command, cwd=ROOT, check=True, timeout=timeout, capture_output=True, text=True)
        except subprocess.CalledProcessError as error:
            return {"error": (error.stderr.strip().splitlines() or [f"exit code {error.returncode}"])[-1]}
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        wall = time.perf_counter() - started
        rows = [json.loads(line) for line in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    seconds = [row["sec"] for row in rows[warmup:]]
    if not seconds:
        return {"error": f"no steps after the {warmup} warm-up steps"}
    median = statistics.median(seconds)
    return {
        "median_step_s": round(median, 4),
        "images_per_s": round(batch / median, 1),
        "timed_steps": len(seconds),
        "process_wall_s": round(wall, 1),
        "final_loss": round(rows[-1]["loss"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--settings", nargs="+", default=["plain", "fast"], choices=tuple(SETTINGS))
    parser.add_argument("--steps", type=int, default=8, help="steps per run, the warm-up included")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the timing")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2), help="for fast settings")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one run may take")
    parser.add_argument("--mixed-precision", default="auto", choices=MIXED_PRECISION, help="the runs' autocast")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "mixed_precision": resolve_mixed_precision(args.mixed_precision),
        "workers": args.workers,
        "goal_images_per_s": GOAL_IMAGES_PER_S,
        "runs": {},
    }
    for setting in args.settings:
        for batch in args.batch_sizes:
            entry = run_setting(
                setting, batch, args.steps, args.warmup, args.workers, args.timeout, args.mixed_precision
            )
            result["runs"][f"{setting}@{batch}"] = entry
            print(json.dumps({f"{setting}@{batch}": entry}), file=sys.stderr, flush=True)
    rates = [run["images_per_s"] for run in result["runs"].values() if "images_per_s" in run]
    result["best_images_per_s"] = max(rates, default=None)
    if cuda:
        result["goal_met"] = bool(rates) and max(rates) >= GOAL_IMAGES_PER_S
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
