"""A training run kept in the repository: ``python -m model.training.snapshot save|restore`` (``make snapshot``).

A run folder (``runs/stageN``) lives only on the machine that trains it, and a fresh machine starts without one, so
a stage that needs more CPU hours than one machine gives would start again at its first step each time. A snapshot
is the run's EMA weights in fp16 with its arguments, step, log, held-out scores (``evals.jsonl`` and each report's
``results.md``) and the record of what it started from: small enough to commit. The curriculum restores it into an
empty run folder and the run resumes at the snapshot's step.

The optimiser's moments are not kept (they would triple the size): the restored run starts with the EMA weights as
its weights, fresh moments, and warms its rate up again over its warm-up steps (``state.pt``'s ``rewarm``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import torch

from model.offline import apply_offline_defaults
from model.training.bundle import INIT_RECORD
from model.training.checkpoint import save_state
from model.training.checkpoint_eval import EVALS, eval_rows, report_dir
from model.training.optimisation import EMA
from model.training.run_log import RUN_LOG, log_rows, write_log
from model.unet.unet_raphael import RaphaelUNet

logger = logging.getLogger("model.training.snapshot")

SNAPSHOTS = Path("snapshots")
META = "snapshot.json"
LOG = "log.jsonl.gz"
REPORT = "results.md"  # of each scored checkpoint: the table a reader wants, without its images and per-prompt lists


def snapshot_dir(run_dir: Path, snapshots: Path = SNAPSHOTS) -> Path:
    """Where the snapshot of ``run_dir`` is kept: one folder per run name (stage10, stage10-dense, …)."""
    return snapshots / run_dir.name


def copy_record(src: Path, dest: Path, step: int) -> None:
    """What a run folder records besides its weights and log, up to ``step``: where it started and its scores."""
    if (src / INIT_RECORD).exists():
        shutil.copy2(src / INIT_RECORD, dest / INIT_RECORD)
    if scores := eval_rows(src, step):
        write_log(dest / EVALS, scores)
    for row in scores:
        report = report_dir(src, row["step"], row["set"]) / REPORT
        if report.exists():
            kept = report_dir(dest, row["step"], row["set"])
            kept.mkdir(parents=True, exist_ok=True)
            shutil.copy2(report, kept / REPORT)


def save(run_dir: Path, dest: Path) -> Path:
    """Write the snapshot of ``run_dir``'s last checkpoint to ``dest``, replacing an older one whole."""
    state = torch.load(run_dir / "state.pt", map_location="cpu", weights_only=False)
    step = state["step"]
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    RaphaelUNet.from_pretrained(run_dir / "unet").to(torch.float16).save_pretrained(tmp / "unet")
    with gzip.open(tmp / LOG, "wt") as log:
        log.writelines(json.dumps(row) + "\n" for row in log_rows(run_dir / RUN_LOG, step))
    copy_record(run_dir, tmp, step)
    meta = {
        "step": step,
        "world_size": state.get("world_size", 1),
        "args": state["args"],
        "saved": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    logger.info("Snapshot of %s at step %d in %s (%.1f MB)", run_dir, step, dest, size / 1e6)
    return dest


def restore(src: Path, run_dir: Path) -> bool:
    """Make ``run_dir`` resumable from the snapshot ``src``; False (and nothing written) when the run has its own
    checkpoint already, which is never older than what this machine last trained."""
    if (run_dir / "state.pt").exists():
        return False
    meta = json.loads((src / META).read_text())
    args = meta["args"]
    unet = RaphaelUNet.from_pretrained(src / "unet").float()
    ema = EMA(unet)  # the weights and their average start equal
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args["lr"], weight_decay=args["weight_decay"])
    for group in optimizer.param_groups:  # what a resumed rate schedule reads, as a saved optimizer carries it
        group["initial_lr"] = args["lr"]
    run_dir.mkdir(parents=True, exist_ok=True)
    with gzip.open(src / LOG, "rt") as log:
        (run_dir / RUN_LOG).write_text(log.read())
    copy_record(src, run_dir, meta["step"])
    unet.save_pretrained(run_dir / "unet")
    save_state(
        run_dir / "state.pt",
        step=meta["step"],
        model=unet,
        ema=ema,
        optimizer=optimizer,
        args=args,
        world_size=meta["world_size"],
        rewarm=meta["step"],
    )
    logger.info("Restored %s at step %d from %s (saved %s)", run_dir, meta["step"], src, meta["saved"])
    return True


def main(argv: list[str] | None = None) -> None:
    apply_offline_defaults()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("save", "restore"))
    p.add_argument("--run", type=Path, required=True, help="the run folder, e.g. runs/stage10")
    p.add_argument("--snapshot", type=Path, default=None, help=f"the snapshot folder (default: {SNAPSHOTS}/<run>)")
    args = p.parse_args(argv)
    where = args.snapshot or snapshot_dir(args.run)
    if args.action == "save":
        if not (args.run / "state.pt").exists():
            p.error(f"--run: {args.run} has no state.pt to keep.")
        save(args.run, where)
    elif not (where / META).exists():
        p.error(f"--snapshot: {where} holds no snapshot.")
    elif not restore(where, args.run):
        logger.info("%s has its own checkpoint; nothing restored.", args.run)


if __name__ == "__main__":
    main()
