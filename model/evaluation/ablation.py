"""Each part of RAPHAEL on its own: ``python -m model.evaluation.ablation --stage 1`` (``make ablation-eval``).

The paper's ablation table for RAPHAEL-tiny: the full model of a curriculum stage (``runs/stage<n>``) beside each
variant trained with one part left out (``runs/stage<n>-<variant>``, trained by ``make ablation``), every model
drawing the same held-out prompts of the stage's slice from the same seeds, so that each variant's composition is
paired with the full model's prompt by prompt and its difference gets a paired bootstrap interval.

A comparison says something only at equal compute, so the runs must have trained the same steps and images at every
stage of their chains and on the same slice; otherwise the command refuses, naming the folders, unless
``--allow-unequal``. Each run's step and arguments come from its own ``state.pt``, and the prompts' slice from the
full run's arguments: the slice it trained on.

Parameters count every weight stored. Active parameters per image position count what one image position runs
through at inference: the edge head is left out (it runs in training only); a Time-MoE picks one expert for a whole
image, so each Time-MoE counts one expert; a Space-MoE runs at a position every expert that some text token covering
the position was routed to, which can be all of them, so all its experts count (an upper bound). The routers run, so
they count; a dense FFN counts once.
"""

import argparse
import inspect
import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from model.data.config import SceneConfig
from model.evaluation.evaluate import (
    EVAL_SEED,
    GROUPED_METRICS,
    config_note,
    generate_and_score,
    heldout_prompts,
    paired_difference,
    prompt_config,
    save_grid,
    training_chain,
    training_record,
)
from model.evaluation.recognizer import Recognizer, load_default
from model.offline import apply_offline_defaults
from model.pipeline.pipeline_raphael import RaphaelPipeline
from model.pipeline.samplers import DEFAULT_SAMPLER, build_sampler
from model.pipeline.schedule import default_scheduler
from model.pipeline.text_encoder import load_text_encoder
from model.unet.moe import TimeMoE
from model.unet.unet_raphael import RaphaelUNet

logger = logging.getLogger("model.evaluation.ablation")

FULL = "full"  # the table's name of runs/stage<n>
STATE = "state.pt"
PARTS = ("Space-MoE", "Time-MoE", "edge supervision")
# The pipeline's own call defaults (25 steps, CFG 2.0), which model.evaluation.evaluate also reports at.
CALL_DEFAULTS = {name: p.default for name, p in inspect.signature(RaphaelPipeline.__call__).parameters.items()}


def run_folders(runs: Path, stage: int) -> dict[str, Path]:
    """The stage's full run, then every variant's run beside it, by name: ``{"full": runs/stage1, "dense": ...}``.

    The folders are named as ``model.training.curriculum.run_dir`` names them (``stage<n>`` and
    ``stage<n>-<variant>``; evaluation sits beside training, so it finds them rather than importing it). A folder
    counts as a run when it holds ``state.pt`` and ``unet/``, so a bundle such as ``stage1-bundle`` is left out.
    """
    full = runs / f"stage{stage}"
    if not is_run(full):
        raise FileNotFoundError(f"{full} holds no training run ({STATE} and unet/): train it with make train.")
    variants = {path.name.removeprefix(full.name + "-"): path for path in sorted(runs.glob(f"{full.name}-*"))}
    return {FULL: full, **{name: path for name, path in variants.items() if is_run(path)}}


def is_run(folder: Path) -> bool:
    return (folder / STATE).is_file() and (folder / "unet").is_dir()


def run_record(run: Path) -> dict:
    """What a run trained, in ``training.json``'s keys: steps, batch, images seen, and the chain it continued.

    The stage before is the run (or the bundle) its ``--init`` weights came from; an ``--init`` path is read as the
    training command gave it, relative to the folder the command ran in.
    """
    state = torch.load(run / STATE, map_location="cpu", weights_only=False, mmap=True)
    args, batch = state["args"], state["args"]["batch_size"] * state.get("world_size", 1)
    record = {
        "steps": state["step"],
        "batch_size": batch,
        "images_seen": state["step"] * batch,
        "edge_coef": args.get("edge_coef"),
        "slice": asdict(prompt_config(argparse.Namespace(**args))),  # the scenes it trained on, as prompt flags
    }
    if args.get("init"):
        earlier = Path(args["init"]).parent
        record["continued_from"] = run_record(earlier) if is_run(earlier) else training_record(earlier)
    return record


def stage_steps(record: dict) -> list[tuple[int, int]]:
    """``[(steps, images), ...]`` of every stage of a run's chain, earliest first."""
    return [(stage["steps"], stage["images_seen"]) for stage in training_chain(record)]


def unequal_training(records: dict[str, dict], folders: dict[str, Path]) -> str | None:
    """Why the runs are not at equal steps and data, in one sentence naming the folders; None when they are."""
    full = records[FULL]
    differ = [
        name
        for name, record in records.items()
        if stage_steps(record) != stage_steps(full) or record["slice"] != full["slice"]
    ]
    if not differ:
        return None
    listed = ", ".join(
        f"{folders[name]} {steps_and_images(records[name])}"
        + ("" if records[name]["slice"] == full["slice"] else " on another slice")
        for name in (FULL, *differ)
    )
    return (
        f"The runs are not at equal steps and data ({listed}): train each to the same steps (make ablation resumes "
        "them) or pass --allow-unequal."
    )


def steps_and_images(record: dict) -> str:
    """``"5,550 + 1,700 steps, 464,000 images"`` over a run's chain."""
    chain = stage_steps(record)
    steps = " + ".join(f"{steps:,}" for steps, _ in chain)
    return f"{steps} steps, {sum(images for _, images in chain):,} images"


def parts(unet: RaphaelUNet, edge_coef: float | None) -> dict[str, float]:
    """How much of each part of RAPHAEL a model has: experts of each MoE, the edge loss's weight (0: left out)."""
    return dict(zip(PARTS, (unet.config.num_space_experts, unet.config.num_time_experts, edge_coef or 0.0)))


def active_parameters(unet: RaphaelUNet) -> int:
    """Parameters one image position runs through at inference (counted as the module docstring says)."""
    total = sum(p.numel() for p in unet.parameters()) - sum(p.numel() for p in unet.edge_head.parameters())
    for module in unet.modules():
        if isinstance(module, TimeMoE):
            total -= sum(p.numel() for expert in module.experts[1:] for p in expert.parameters())
    return total


def compare_with_full(results: dict[str, dict]) -> None:
    """Add to each variant the parts it left out and its paired difference from the full model, prompt by prompt."""
    full = results[FULL]
    for name, row in results.items():
        if name == FULL:
            continue
        row["left_out"] = [part for part in PARTS if full["parts"][part] and not row["parts"][part]]
        row["difference"] = {
            metric: paired_difference(row["per_prompt"][metric], full["per_prompt"][metric])
            for metric in GROUPED_METRICS
        }


def did_not_help(results: dict[str, dict]) -> list[str]:
    """The variants whose part did not help: leaving it out did not lower composition beyond its interval."""
    return [
        name
        for name, row in results.items()
        if name != FULL and row["left_out"] and row["difference"]["composition"]["ci95"][1] >= 0
    ]


def verdict(name: str, row: dict) -> str:
    """One sentence on what leaving a variant's part out did to composition."""
    c = row["difference"]["composition"]
    low, high = (100 * x for x in c["ci95"])
    change = f"{100 * c['difference']:+.1f} points of composition (95% paired interval {low:+.1f} to {high:+.1f})"
    if not row["left_out"]:
        return f"{name} leaves out no part of the full model: {change}."
    what, it = " and ".join(row["left_out"]), "them" if len(row["left_out"]) > 1 else "it"
    if high < 0:
        return f"{what} helped: leaving {it} out ({name}) cost {change}."
    where = "contains zero" if low <= 0 else "lies above zero"
    return f"{what} did not help: leaving {it} out ({name}) gave {change}, an interval that {where}."


def markdown(results: dict) -> str:
    """The ablation table (as the paper's), then one sentence per variant and which parts did not help."""
    lines = [
        f"Stage {results['stage']}, held-out prompts: {results['config_note']}; {results['steps']} "
        f"{results['sampler']} steps, CFG {results['cfg']}; every model draws each prompt from the same seed.",
        "",
        "| variant | left out | parameters | active per image position | training steps | training images | "
        "identity | composition | composition − full (95% paired interval) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["runs"].items():
        chain = stage_steps(row["training"])
        if name == FULL:
            left_out = difference = "–"
        else:
            c = row["difference"]["composition"]
            left_out = ", ".join(row["left_out"]) or "nothing"
            difference = f"{100 * c['difference']:+.1f} ({100 * c['ci95'][0]:+.1f} to {100 * c['ci95'][1]:+.1f})"
        lines.append(
            f"| {name} | {left_out} | {row['parameters']:,} | {row['active_parameters']:,} | "
            f"{' + '.join(f'{steps:,}' for steps, _ in chain)} | {sum(images for _, images in chain):,} | "
            f"{100 * row['accuracy']['identity']:.1f}% | {100 * row['accuracy']['composition']:.1f}% | {difference} |"
        )
    lines += [
        "",
        "Active parameters per image position: one expert of each Time-MoE, every expert of each Space-MoE (a "
        "position covered by text tokens routed to all of them), the routers; not the edge head, which only trains.",
    ]
    if results["unequal_training"]:
        lines += ["", f"**Not at equal compute** (run with --allow-unequal): {results['unequal_training']}"]
    variants = [name for name in results["runs"] if name != FULL]
    lines += ["", *(verdict(name, results["runs"][name]) for name in variants)]
    if variants:
        unhelpful = [f"{' and '.join(results['runs'][name]['left_out'])} ({name})" for name in results["did_not_help"]]
        lines += ["", f"Parts that did not help: {', '.join(unhelpful)}." if unhelpful else "Every part helped."]
    else:
        lines.append("No variant was trained beside the full model: make ablation trains them.")
    return "\n".join(lines) + "\n"


def score_run(
    folder: Path, training: dict, text: tuple, recognizer: Recognizer, groups: dict, args: argparse.Namespace
) -> dict:
    """One run's EMA weights drawn and scored on the held-out prompts, beside its size and ``training`` record.

    ``text`` is the (tokenizer, text encoder) pair every model shares, loaded once.
    """
    unet = RaphaelUNet.from_pretrained(folder / "unet").eval()
    scheduler = build_sampler(DEFAULT_SAMPLER, default_scheduler().config)
    pipe = RaphaelPipeline(unet=unet, scheduler=scheduler, tokenizer=text[0], text_encoder=text[1]).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    result = generate_and_score(pipe, recognizer, groups, args.steps, args.cfg, args.batch)
    save_grid(result.pop("grid"), args.out / f"samples_{folder.name}.png")
    return {
        "folder": str(folder),
        "parts": parts(unet, training["edge_coef"]),
        "parameters": sum(p.numel() for p in unet.parameters()),
        "active_parameters": active_parameters(unet),
        "training": training,
        **result,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stage", type=int, required=True, help="the curriculum stage whose runs are compared")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="holds stage<n> and stage<n>-<variant>")
    p.add_argument("--n", type=int, default=256, help="held-out prompts")
    p.add_argument("--steps", type=int, default=CALL_DEFAULTS["num_inference_steps"], help="DDIM steps")
    p.add_argument("--cfg", type=float, default=CALL_DEFAULTS["guidance_scale"], help="classifier-free guidance")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where the models draw")
    p.add_argument("--allow-unequal", action="store_true", help="compare runs of different steps, images or slices")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: eval/ablation-stage<n>)")
    return p


def main(argv: list[str] | None = None) -> None:
    apply_offline_defaults()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = parser()
    args = p.parse_args(argv)
    args.out = args.out or Path("eval") / f"ablation-stage{args.stage}"
    try:
        folders = run_folders(args.runs, args.stage)
    except FileNotFoundError as error:
        p.error(str(error))
    records = {name: run_record(folder) for name, folder in folders.items()}
    unequal = unequal_training(records, folders)
    if unequal and not args.allow_unequal:
        p.error(unequal)
    config = SceneConfig(**records[FULL]["slice"])
    args.out.mkdir(parents=True, exist_ok=True)
    groups = heldout_prompts(config, args.n, EVAL_SEED)
    recognizer, text = load_default(), load_text_encoder()
    runs = {}
    for name, folder in tqdm(folders.items(), desc="runs"):
        runs[name] = score_run(folder, records[name], text, recognizer, groups, args)
    compare_with_full(runs)
    results = {
        "stage": args.stage,
        "config": asdict(config),
        "config_note": config_note(config, args.n),
        "steps": args.steps,
        "sampler": DEFAULT_SAMPLER,
        "cfg": args.cfg,
        "prompt_seed": EVAL_SEED,
        "unequal_training": unequal,
        "runs": runs,
        "did_not_help": did_not_help(runs),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out / "results.md").write_text(table)
    logger.info("\n%s", table)


if __name__ == "__main__":
    main()
