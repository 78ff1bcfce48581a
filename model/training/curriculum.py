"""The training curriculum as data: ``python -m model.training.curriculum --stage 9`` (``make train``).

``curriculum.toml`` lists every stage once (its data slice, steps, rate schedule, seed, batch and the stage
it starts from). This module reads it, turns a stage into the arguments of ``model.training.train`` and runs
a stage after the stages before it, each resumed where it stopped or passed through once it is done, so
``make train`` reproduces the shipped weights from scratch and a killed chain goes on where it was. A stage kept as a
snapshot in the repository (``make snapshot``, ``model.training.snapshot``) is restored into its empty run folder
and the chain goes on from there, so a fresh machine continues a long stage instead of starting it again.

An ablation variant (``--variant``, ``make train VARIANT=no-space``) trains the same chain with one part of RAPHAEL
left out, into ``runs/stage<n>-<variant>``, each stage from the variant's own stage before; ``--ablation`` (``make
ablation``) trains the full model and then every variant, which ``model.evaluation.ablation`` compares.
"""

from __future__ import annotations

import argparse
import json
import logging
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from model.data.config import SceneConfig
from model.training import train
from model.training.snapshot import META, SNAPSHOTS, restore, snapshot_dir

logger = logging.getLogger(__name__)

CURRICULUM = Path(__file__).with_name("curriculum.toml")
RUNS = Path("runs")
# The paper's ablations: each variant's name, its run folders' suffix, and the training flags that leave its part out.
VARIANTS: dict[str, tuple[str, ...]] = {
    "dense": ("--preset", "tiny-dense"),  # neither MoE: the dense baseline
    "no-space": ("--preset", "tiny-no-space"),  # Time-MoE only
    "no-time": ("--preset", "tiny-no-time"),  # Space-MoE only
    "no-edge": ("--edge-coef", "0"),  # no edge supervision
}
# Stage keys and the training flags they set; [data] keys are SceneConfig fields.
STAGE_FLAGS = {
    "steps": "--steps",
    "cooldown": "--cooldown",
    "lr": "--lr",
    "warmup": "--warmup",
    "seed": "--seed",
    "batch_size": "--batch-size",
    "schedule_steps": "--schedule-steps",
    "grow": "--grow-levels",  # a list: transformer blocks per level, grown from the stage before (unet/grow.py)
}
DATA_KEYS = {f.name for f in fields(SceneConfig)} - {"split"}
SAVE_EVERY = 50


def run_dir(number: int, variant: str | None = None, runs: Path = RUNS) -> Path:
    """``runs/stage3`` for the full model, ``runs/stage3-no-space`` for an ablation variant."""
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"The variant must be one of {sorted(VARIANTS)}, not {variant!r}.")
    return runs / (f"stage{number}" if variant is None else f"stage{number}-{variant}")


def flag_value(value: int | float | list) -> str:
    """A curriculum value as the training CLI reads it: floats without trailing zeros, lists comma-separated."""
    if isinstance(value, list):
        return ",".join(map(flag_value, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Replay:
    """A share of each batch drawn from an earlier stage's scenes (``replay = { stage = 2, share = 0.25 }``)."""

    stage: int
    share: float
    data: dict[str, object]  # that stage's [data], with the replay's own data settings over it


@dataclass(frozen=True)
class Scoring:
    """Held-out scores taken while the stage trains (``eval = { every = 500, sets = {...} }``, ``--eval-every``).

    Each set names the stage whose slice its prompts come from (this one unless ``stage`` is given) and how many
    prompts it draws, e.g. ``sets = { domain = { n = 128 }, slice = { stage = 2, n = 256 } }``.
    """

    every: int
    sets: dict[str, list[str]]  # set name -> the evaluator's arguments


@dataclass(frozen=True)
class Stage:
    """One stage of the curriculum: its training settings, its scenes and the stage it starts from."""

    number: int
    steps: int
    after: int | None = None
    settings: dict[str, int | float | list[int]] = field(default_factory=dict)  # STAGE_FLAGS keys other than steps
    data: dict[str, object] = field(default_factory=dict)
    replay: Replay | None = None
    scoring: Scoring | None = None

    def run_dir(self, variant: str | None = None, runs: Path = RUNS) -> Path:
        return run_dir(self.number, variant, runs)

    def scene_config(self) -> SceneConfig:
        """The scenes this stage draws (validated by SceneConfig itself)."""
        return SceneConfig.from_dict(self.data)

    def train_args(self, variant: str | None = None, runs: Path = RUNS, init: Path | None = None) -> list[str]:
        """The ``model.training.train`` command line of this stage (of an ablation ``variant``); ``init`` replaces
        the stage before."""
        args = ["--out", str(self.run_dir(variant, runs)), "--save-every", str(SAVE_EVERY)]
        if variant is not None:
            args += VARIANTS[variant]
        if init is not None:
            args += ["--init", str(init)]
        elif self.after is not None:
            args += ["--init", str(run_dir(self.after, variant, runs) / "unet")]
        for key, flag in STAGE_FLAGS.items():
            value = self.steps if key == "steps" else self.settings.get(key)
            if value is not None:
                args += [flag, flag_value(value)]
        if self.replay is not None:
            args += ["--replay-share", f"{self.replay.share:g}", "--replay-scenes", json.dumps(self.replay.data)]
        if self.scoring is not None:
            args += ["--eval-every", str(self.scoring.every), "--eval-sets", json.dumps(self.scoring.sets)]
        for key, value in self.data.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                args.append(flag)
            elif isinstance(value, list):
                args += [flag, flag_value(value)]
            else:
                args += [flag, str(value)]
        return args

    def eval_args(self) -> list[str]:
        """The evaluator's flags for held-out prompts of this stage's slice (emoji, objects, counts, styles)."""
        config = self.scene_config()
        args = ["--max-objects", str(config.max_objects), "--max-count", str(config.max_count)]
        if config.num_emoji is not None:
            args += ["--num-emoji", str(config.num_emoji)]
        if config.styles is not None:
            args += ["--styles", ",".join(config.styles)]
        return args


@dataclass(frozen=True)
class Curriculum:
    """All stages by number, and the stage the bundled weights come from."""

    stages: dict[int, Stage]
    shipped: int

    def chain(self, number: int) -> list[Stage]:
        """Stage ``number`` and every stage it builds on, first stage first."""
        if number not in self.stages:
            raise ValueError(f"STAGE must be one of {sorted(self.stages)}, not {number}.")
        chain = [self.stages[number]]
        while chain[-1].after is not None:
            chain.append(self.stages[chain[-1].after])
        return chain[::-1]


def resume_point(
    chain: list[Stage],
    variant: str | None = None,
    runs: Path = RUNS,
    snapshots: Path = SNAPSHOTS,
    dry_run: bool = False,
) -> list[Stage]:
    """The part of ``chain`` still to run: from its last stage with a checkpoint, a committed snapshot restored into
    an empty run folder first (not in a dry run). The stages before it only made the weights it started from, which
    its own record keeps."""
    for i in range(len(chain) - 1, -1, -1):
        run = chain[i].run_dir(variant, runs)
        kept = snapshot_dir(run, snapshots)
        if (run / "state.pt").exists() or (kept / META).exists() and (dry_run or restore(kept, run)):
            return chain[i:]
    return chain


def replay_of(number: int, table: dict | None, stages: dict[int, Stage]) -> Replay | None:
    """Stage ``number``'s ``replay`` table checked against the stages listed before it, or None.

    ``{ stage = 2, share = 0.25 }`` replays stage 2's scenes; a ``data`` table changes some of their settings, e.g.
    ``data = { paraphrases = true }`` for stage 2's scenes worded as the later stages word them.
    """
    if table is None:
        return None
    if set(table) - {"stage", "share", "data"} or not {"stage", "share"} <= set(table):
        raise ValueError(f"Stage {number}'s replay takes 'stage', 'share' and optionally 'data', got {sorted(table)}.")
    if table["stage"] not in stages:
        raise ValueError(f"Stage {number} replays stage {table['stage']}, which must be listed before it.")
    if not 0 < table["share"] < 1:
        raise ValueError(f"Stage {number}'s replay share must be between 0 and 1 (exclusive), got {table['share']}.")
    if unknown := set(table.get("data", {})) - DATA_KEYS:
        known = sorted(DATA_KEYS)
        raise ValueError(f"Stage {number}'s replay has unknown data keys {sorted(unknown)}; known: {known}.")
    data = {**stages[table["stage"]].data, **table.get("data", {})}
    SceneConfig.from_dict(data)
    return Replay(table["stage"], float(table["share"]), data)


def scoring_of(number: int, table: dict | None, stages: dict[int, Stage], own: Stage) -> Scoring | None:
    """Stage ``number``'s ``eval`` table checked, each set's prompts turned into the evaluator's arguments."""
    if table is None:
        return None
    if set(table) != {"every", "sets"} or not isinstance(table["every"], int) or table["every"] < 1:
        raise ValueError(f"Stage {number}'s eval takes 'every' (a number of steps) and 'sets', got {table}.")
    sets = {}
    for name, spec in table["sets"].items():
        if set(spec) - {"stage", "n"} or not isinstance(spec.get("n"), int) or spec["n"] < 1:
            raise ValueError(f"Stage {number}'s eval set {name!r} takes 'n' (prompts) and optionally 'stage'.")
        source = stages.get(spec["stage"]) if "stage" in spec else own
        if source is None:
            raise ValueError(f"Stage {number}'s eval set {name!r} uses stage {spec['stage']}, not listed before it.")
        sets[name] = ["--n", str(spec["n"]), *source.eval_args()]
    return Scoring(table["every"], sets)


def load_curriculum(path: Path = CURRICULUM) -> Curriculum:
    """Read and check ``curriculum.toml``: known keys only, each stage after an earlier one, valid scenes."""
    raw = tomllib.loads(path.read_text())
    stages: dict[int, Stage] = {}
    for name, table in raw["stage"].items():
        number = int(name)
        unknown = set(table) - set(STAGE_FLAGS) - {"after", "data", "replay", "eval"}
        if unknown:
            raise ValueError(f"Stage {number} has unknown keys {sorted(unknown)}; known: {sorted(STAGE_FLAGS)}.")
        if unknown := set(table.get("data", {})) - DATA_KEYS:
            raise ValueError(f"Stage {number} has unknown data keys {sorted(unknown)}; known: {sorted(DATA_KEYS)}.")
        after = table.get("after")
        if after is not None and (after not in stages or after >= number):
            raise ValueError(f"Stage {number} starts after stage {after}, which must be listed before it.")
        stage = Stage(
            number=number,
            steps=table["steps"],
            after=after,
            settings={k: v for k, v in table.items() if k in STAGE_FLAGS and k != "steps"},
            data=dict(table.get("data", {})),
            replay=replay_of(number, table.get("replay"), stages),
        )
        stage.scene_config()
        stage = replace(stage, scoring=scoring_of(number, table.get("eval"), stages, stage))
        stages[number] = stage
    if raw["shipped"] not in stages:
        raise ValueError(f"The shipped stage {raw['shipped']} is not in the curriculum.")
    return Curriculum(stages=stages, shipped=raw["shipped"])


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    curriculum = load_curriculum()
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Any other flags go to model.training.train for the last stage only, e.g. --time-limit 60.",
    )
    p.add_argument("--stage", type=int, default=curriculum.shipped, help="the stage to reach (default: shipped)")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--variant",
        choices=tuple(VARIANTS),
        default=None,
        help="train an ablation, one part of RAPHAEL left out, into runs/stageN-VARIANT (default: the full model)",
    )
    which.add_argument(
        "--ablation", action="store_true", help="the full model, then every variant in turn, each chain resumed"
    )
    p.add_argument("--steps", type=int, default=None, help="steps of the last stage instead of the curriculum's")
    p.add_argument(
        "--init", type=Path, default=None, help="start the stage from these UNet weights instead of running the chain"
    )
    p.add_argument("--dry-run", action="store_true", help="print each stage's training command, run nothing")
    p.add_argument(
        "--eval-flags",
        action="store_true",
        help="print the stage's slice as model.evaluation.evaluate flags (make eval), run nothing",
    )
    args, extra = p.parse_known_args(argv)
    if args.init is not None and args.ablation:
        p.error("--init starts one run from given weights; --ablation trains each variant's own chain.")
    return args, extra


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args, extra = parse_args(argv)
    chain = load_curriculum().chain(args.stage)
    if args.eval_flags:
        print(" ".join(chain[-1].eval_args()))
        return
    if args.init is not None:
        chain = chain[-1:]
    for variant in (None, *VARIANTS) if args.ablation else (args.variant,):
        for stage in resume_point(chain, variant, dry_run=args.dry_run):
            last = stage is chain[-1]
            if last and args.steps is not None:
                stage = replace(stage, steps=args.steps)
            command = stage.train_args(variant, init=args.init if last else None) + (extra if last else [])
            logger.info("Stage %d: python -m model.training.train %s", stage.number, " ".join(command))
            if not args.dry_run:
                train.main(command)


if __name__ == "__main__":
    main()
