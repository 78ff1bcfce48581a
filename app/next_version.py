"""``make next-version``: the raters' feedback becomes a candidate version, which is registered only if it holds up.

The loop the page promises, in one command: read the feedback database, leave out the raters the agreement
check flags, export what they said about the current version's images (pairs for Diffusion-DPO when there are
any, else 👍/👎 for Diffusion-KTO), tune the current version on it, then score candidate and current on the same
held-out prompts of the current version's slice. The candidate joins the versions folder (which ``make run``
serves in the arena with ``--versions``) unless composition fell: by more than ``MAX_COMPOSITION_FALL`` or
significantly (the paired bootstrap interval of the difference wholly below zero).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.settings import from_env
from feedback.cli import add_store_arguments, open_store
from feedback.export import ExportFilters, ExportResult, export
from feedback.store import FeedbackStore
from model.data.config import SceneConfig
from model.evaluation.evaluate import generate_and_score, heldout_prompts, paired_difference, save_grid
from model.evaluation.recognizer import load_default
from model.offline import apply_offline_defaults
from model.pipeline.bundled import DEFAULT_BUNDLE, load_bundle
from model.pipeline.identity import model_name, weights_hash
from model.pipeline.limits import DEFAULT_GUIDANCE_SCALE, DEFAULT_INFERENCE_STEPS
from model.pipeline.samplers import DEFAULT_SAMPLER, build_sampler
from model.prompts.trained_domain import TrainedDomain
from model.training import preference

log = logging.getLogger(__name__)

MAX_COMPOSITION_FALL = 0.01  # a candidate may lose at most one point of composition on the held-out prompts
MIN_EXAMPLES = 2  # pairs or rated images below which there is nothing to tune on


@dataclass(frozen=True)
class Decision:
    """What ``make next-version`` did and why; written as ``decision.json`` in the run folder."""

    registered: bool
    reason: str
    candidate: str  # the tuned pipeline folder
    version: str | None  # where it was registered
    export: dict[str, Any]
    evaluation: dict[str, Any]


def export_feedback(store: FeedbackStore, current: Path, out: Path) -> ExportResult:
    """Pairs on the current version's images, else its 👍/👎, without the raters the agreement check flags."""
    filters = ExportFilters(model=weights_hash(current), exclude_flagged=True)
    pairs = export(store, "pickapic", out / "pairs", "parquet", filters)
    if pairs.rows >= MIN_EXAMPLES:
        return pairs
    votes = export(store, "kto", out / "votes", "parquet", filters)
    if votes.rows >= MIN_EXAMPLES:
        return votes
    raise ValueError(
        f"There is too little feedback on {model_name(current)} to tune on: {pairs.rows} pairs and {votes.rows} "
        "rated images after leaving out flagged raters."
    )


def evaluation_config(current: Path) -> SceneConfig:
    """The slice the current version was trained on, for held-out prompts (the whole domain without a record)."""
    domain = TrainedDomain.from_bundle(current)
    return domain.config if domain is not None else SceneConfig()


def compare(candidate: Path, current: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Identity and composition of both on the same held-out prompts, by kind, with paired intervals."""
    out.mkdir(parents=True, exist_ok=True)
    groups = heldout_prompts(evaluation_config(current), args.eval_n)
    recognizer = load_default()
    scores = {}
    for name, path in (("candidate", candidate), ("current", current)):
        pipe = load_bundle(path)
        pipe.scheduler = build_sampler(args.eval_sampler, pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        result = generate_and_score(pipe, recognizer, groups, args.eval_steps, args.eval_cfg, batch=8)
        save_grid(result.pop("grid"), out / f"samples_{name}.png")
        scores[name] = result
    new, old = scores["candidate"]["per_prompt"], scores["current"]["per_prompt"]
    return {
        "prompts": scores["current"]["n"],
        "steps": args.eval_steps,
        "cfg": args.eval_cfg,
        "sampler": args.eval_sampler,
        "accuracy": {name: s["accuracy"] for name, s in scores.items()},
        "composition_by_kind": {name: s["composition_by_kind"] for name, s in scores.items()},
        "difference": {m: paired_difference(new[m], old[m]) for m in ("identity", "composition")},
    }


def verdict(evaluation: dict[str, Any]) -> tuple[bool, str]:
    """Register unless composition fell by more than the tolerance or significantly."""
    composition = evaluation["difference"]["composition"]
    change, (low, high) = composition["difference"], composition["ci95"]
    said = f"composition {100 * change:+.1f} points (95% paired interval {100 * low:+.1f} to {100 * high:+.1f})"
    if change < -MAX_COMPOSITION_FALL:
        return False, f"{said}: fell by more than {100 * MAX_COMPOSITION_FALL:.0f} point"
    if high < 0:
        return False, f"{said}: a significant fall"
    return True, f"{said}: did not fall"


def next_version(store: FeedbackStore, args: argparse.Namespace) -> Decision:
    """Export, tune, compare and register; every step's output stays in ``args.out``."""
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose a new --out folder for this round.")
    data = export_feedback(store, args.current, out / "export")
    log.info("Exported %d %s rows to %s", data.rows, data.format, data.out_dir)
    loss = "dpo" if data.format == "pickapic" else "kto"
    name = args.name or f"{model_name(args.current)}-{loss}-{out.name}"
    tuning = ["--data", str(data.out_dir), "--model", str(args.current), "--out", str(out / "tuning")]
    tuning += ["--name", name, "--steps", str(args.steps), "--seed", str(args.seed), *args.tune_args]
    candidate = preference.finetune(preference.parse_args(tuning))
    evaluation = compare(candidate, args.current, args, out / "evaluation")
    registered, reason = verdict(evaluation)
    version = None
    if registered:
        target = args.versions / name
        if target.exists():
            raise FileExistsError(f"{target} already holds a version; choose another --name.")
        shutil.copytree(candidate, target)
        (target / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
        version = str(target)
    decision = Decision(
        registered=registered,
        reason=reason,
        candidate=str(candidate),
        version=version,
        export={"format": data.format, "rows": data.rows, "counts": data.counts, "folder": str(data.out_dir)},
        evaluation=evaluation,
    )
    (out / "decision.json").write_text(json.dumps(asdict(decision), indent=2))
    log.info("%s %s: %s", name, "registered" if registered else "not registered", reason)
    return decision


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.next_version",
        description="Tune the current version on the raters' feedback and register the candidate in the versions "
        "folder if composition on held-out prompts did not fall.",
    )
    add_store_arguments(parser)
    parser.add_argument("--current", type=Path, default=DEFAULT_BUNDLE, help="the version to tune (a pipeline folder)")
    parser.add_argument(
        "--versions",
        type=Path,
        default=from_env().versions_dir,
        help="where versions are registered, the folder the app serves [RAPHAEL_VERSIONS; default: %(default)s]",
    )
    parser.add_argument("--out", type=Path, required=True, help="a new folder for this round's export, run and scores")
    parser.add_argument("--name", help="the new version's name (default: current name, loss and the --out folder)")
    parser.add_argument("--steps", type=int, default=200, help="tuning steps (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--eval-n", type=int, default=256, help="held-out prompts to compare on (default: %(default)s)"
    )
    parser.add_argument("--eval-steps", type=int, default=DEFAULT_INFERENCE_STEPS)
    parser.add_argument("--eval-cfg", type=float, default=DEFAULT_GUIDANCE_SCALE)
    parser.add_argument("--eval-sampler", default=DEFAULT_SAMPLER)
    parser.add_argument(
        "--tune-args", nargs=argparse.REMAINDER, default=[], help="further flags for model.training.preference"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    apply_offline_defaults()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    with open_store(parser, args) as store:
        try:
            decision = next_version(store, args)
        except (ValueError, FileExistsError) as err:
            parser.exit(2, f"{parser.prog}: {err}\n")
    json.dump({k: v for k, v in asdict(decision).items() if k != "evaluation"}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
