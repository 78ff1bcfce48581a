"""Scores of a run's checkpoints taken while it trains (``--eval-every``): the curve that decides when a stage stops.

At every N-th step the run bundles its EMA weights as the shipped model would be bundled and hands them to the
evaluator (``model.evaluation.evaluate``, in a child process: training and evaluation are wings of one layer and do
not import each other). Training waits meanwhile, so the two never share the CPU and the step times stay honest.
Each set's full report lands in ``<run>/eval/step<S>-<set>/``, and one row per set in ``<run>/evals.jsonl``, which
``curves.png`` plots and a snapshot keeps. A failed evaluation is logged and training goes on.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from model.training.bundle import bundle
from model.training.run_log import log_rows

logger = logging.getLogger("model.training.checkpoint_eval")

EVALS = "evals.jsonl"
EVAL_DIR = "eval"


def parse_eval_sets(text: str) -> dict[str, list[str]]:
    """``--eval-sets``: a JSON object naming each set of held-out prompts with its evaluator arguments."""
    sets = json.loads(text)
    if not isinstance(sets, dict) or not sets:
        raise ValueError('it must be a JSON object with at least one set, e.g. {"domain": ["--n", "128"]}')
    for name, flags in sets.items():
        if not name.replace("-", "").isalnum():
            raise ValueError(f"set names are letters, digits and hyphens, not {name!r}")
        if not isinstance(flags, list) or not all(isinstance(flag, str) for flag in flags):
            raise ValueError(f"the set {name!r} must list the evaluator's arguments as strings")
    return sets


def eval_rows(run_dir: Path, step: float = math.inf) -> list[dict]:
    """The run's recorded scores up to ``step``, oldest first."""
    return log_rows(run_dir / EVALS, step)


def report_dir(run_dir: Path, step: int, name: str) -> Path:
    """Where the evaluator's full report of ``step`` on the set ``name`` lands."""
    return run_dir / EVAL_DIR / f"step{step}-{name}"


def evaluated(run_dir: Path, step: int) -> bool:
    return any(row["step"] == step for row in eval_rows(run_dir))


def evaluate_checkpoint(run_dir: Path, step: int, sets: dict[str, list[str]]) -> list[dict]:
    """Score the run's saved EMA weights (at ``step``) on each set; the rows appended to ``evals.jsonl``."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bundle-", dir=run_dir) as tmp:
        pipe_dir = bundle(run_dir, Path(tmp) / "bundle")
        for name, flags in sets.items():
            dest = report_dir(run_dir, step, name)
            command = [sys.executable, "-m", "model.evaluation.evaluate", "--model", str(pipe_dir)]
            command += ["--name", f"{run_dir.name}-step{step}", "--out", str(dest), *flags]
            logger.info("Scoring step %d on %s: %s", step, name, " ".join(flags))
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                logger.warning("The %s evaluation at step %d failed: %s", name, step, done.stderr.strip()[-2000:])
                continue
            model = next(iter(json.loads((dest / "results.json").read_text())["models"].values()))
            passed = {metric: sum(marks) for metric, marks in model["per_prompt"].items()}
            rows.append({"step": step, "set": name, "n": model["n"], "accuracy": model["accuracy"], "passed": passed})
            logger.info("Step %d, %s: %s", step, name, {k: f"{v:.1%}" for k, v in model["accuracy"].items()})
    with open(run_dir / EVALS, "a") as log:
        log.writelines(json.dumps(row) + "\n" for row in rows)
    return rows
