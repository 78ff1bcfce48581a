"""Every command-line tool answers ``--help`` under its module path, as the Makefile and README call it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIS = [
    "model.training.train",
    "model.training.curriculum",
    "model.training.bundle",
    "model.training.snapshot",
    "model.training.preference",
    "model.training.distill_guidance",
    "model.evaluation.evaluate",
    "model.evaluation.ablation",
    "model.evaluation.recognizer",
    "model.evaluation.learning_curve",
    "model.evaluation.reward",
    "model.data.build_atlas",
    "feedback.export",
    "feedback.backup",
    "feedback.agreement",
    "feedback.leaderboard",
    "feedback.migrate",
    "feedback.campaigns",
    "app.campaigns",
    "app.next_version",
    "app.loop",
    "bench.moe_overhead",
    "bench.data_throughput",
    "bench.admission_load",
    "bench.vote_throughput",
    "bench.export_throughput",
    "bench.shared_runs",
    "bench.first_image",
    "bench.train_throughput",
]


@pytest.mark.slow
@pytest.mark.parametrize("module", CLIS)
def test_cli_answers_help(module: str):
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:") and module.rsplit(".", 1)[-1] in done.stdout.split("\n")[0]


def test_every_module_the_makefile_runs_is_listed():
    makefile = (ROOT / "Makefile").read_text()
    modules = ("model.", "feedback.", "bench.", "app.")
    called = {word for word in makefile.split() if word.startswith(modules) and not word.endswith(".py")}
    assert called <= set(CLIS), called - set(CLIS)
