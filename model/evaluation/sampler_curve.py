"""Composition against sampler steps, beside seconds per image: ``python -m model.evaluation.sampler_curve``.

Every setting (a sampler, a number of steps and the fraction of those steps that use CFG) draws the evaluator's
held-out prompts with the same seeds as the reference (DDIM, 25 steps, CFG on every step: the app's default) and
is scored by the evaluator's own functions. Each setting reports composition and identity with 95% bootstrap
intervals, the paired difference from the reference with a 95% paired bootstrap interval over prompts (as
``evaluate --baseline`` does), and the seconds one image takes at batch 1 (median of ``--repeats`` timed calls at
torch's default thread count). The timed calls come in rounds that go through every setting once, so that a
machine whose load changes during the run slows every setting alike rather than whichever ran at a busy moment.

``--reference-model`` draws the reference with another pipeline (a guidance-distilled student against its teacher's
25 DDIM steps, say); every other setting is drawn by ``--model``.

``--set-default`` (on validation prompts, ``--prompt-seed``) writes the cheapest setting within the margin into the
model's ``training.json`` (``sampling``, with its evidence): the app's controls start there and its guidance end
applies to the version's every image (``model.pipeline.sampling_defaults``).

For the bundled model pass the shipped stage's prompts, as ``make eval`` does:
``python -m model.evaluation.sampler_curve --n 128 --out DIR $(python -m model.training.curriculum --eval-flags)``.

Each setting's scores and times are cached under ``<out>/cache`` (``--cache``), tagged with the model's weights
and the prompts, so a killed run resumes where it stopped. Writes ``curve.json``, ``curve.md`` and ``curve.png``
(composition and its paired difference against steps, one line per sampler, and seconds per image).
"""

import argparse
import json
import logging
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from model.evaluation.evaluate import (  # noqa: E402
    GROUPED_METRICS,
    add_prompt_arguments,
    config_note,
    generate_and_score,
    heldout_prompts,
    mean_interval,
    paired_difference,
    prompt_config,
)
from model.evaluation.recognizer import Recognizer, load_default  # noqa: E402
from model.offline import apply_offline_defaults  # noqa: E402
from model.pipeline.bundled import DEFAULT_BUNDLE, load_bundle  # noqa: E402
from model.pipeline.identity import weights_hash  # noqa: E402
from model.pipeline.limits import DEFAULT_GUIDANCE_SCALE, DEFAULT_INFERENCE_STEPS  # noqa: E402
from model.pipeline.pipeline_raphael import RaphaelPipeline, guided_step_count  # noqa: E402
from model.pipeline.samplers import DEFAULT_SAMPLER, SAMPLERS, build_sampler  # noqa: E402
from model.pipeline.sampling_defaults import SAMPLING_KEY  # noqa: E402

logger = logging.getLogger("model.evaluation.sampler_curve")

DEFAULT_STEPS = (4, 5, 6, 8, 10, 15, 25)
REFERENCE_STEPS = DEFAULT_INFERENCE_STEPS  # the app's default with DEFAULT_SAMPLER
CACHE_VERSION = 1


@dataclass(frozen=True)
class Setting:
    """One way to draw an image: a sampler of the menu (``SAMPLERS``), its steps, the share of steps guided."""

    sampler: str
    steps: int
    guidance_end: float = 1.0

    @property
    def key(self) -> str:
        """``"DPM-Solver++_8"``, ``"UniPC_6_cfg0.5"``: the setting's name in the JSON and its cache files."""
        end = "" if self.guidance_end == 1.0 else f"_cfg{self.guidance_end:g}"
        return re.sub(r"[^A-Za-z0-9.+-]+", "-", self.sampler) + f"_{self.steps}{end}"

    @property
    def label(self) -> str:
        """``"UniPC, 6 steps, CFG on the first 50%"``: how tables and the plot name it."""
        end = "" if self.guidance_end == 1.0 else f", CFG on the first {100 * self.guidance_end:.0f}%"
        return f"{self.sampler}, {self.steps} steps{end}"

    def guided_steps(self, cfg: float, embedded: bool = False) -> int:
        """How many steps run the U-Net twice (prompt and empty prompt), as ``RaphaelPipeline`` counts them; none
        where the model takes the scale as an input (``embedded``)."""
        return guided_step_count(self.guidance_end, self.steps) if cfg > 1.0 and not embedded else 0

    def unet_evaluations(self, cfg: float, embedded: bool = False) -> int:
        """U-Net rows one image costs: two per guided step, one per other step."""
        return self.steps + self.guided_steps(cfg, embedded)


REFERENCE = Setting(DEFAULT_SAMPLER, REFERENCE_STEPS)


@dataclass
class ModelRun:
    """A pipeline that draws settings, its cache, and its scheduler config as loaded (before a setting swaps it)."""

    pipe: RaphaelPipeline
    cache: "Cache"
    scheduler_config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scheduler_config = self.scheduler_config or dict(self.pipe.scheduler.config)
        self.pipe.set_progress_bar_config(disable=True)


class Cache:
    """Per-setting JSON files under ``folder``: scores once, timed calls as they come; stale ``context``: ignored."""

    def __init__(self, folder: Path, context: dict) -> None:
        self.folder = folder
        self.context = json.loads(json.dumps({"version": CACHE_VERSION, **context}))  # as read back: lists, not tuples
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, setting: Setting) -> Path:
        return self.folder / f"{kind}_{setting.key}.json"

    def read(self, kind: str, setting: Setting):
        path = self._path(kind, setting)
        if not path.is_file():
            return None
        stored = json.loads(path.read_text())
        if stored.get("context") != self.context:
            logger.warning("%s was made for another model, prompts or settings; it is redone.", path.name)
            return None
        return stored["value"]

    def write(self, kind: str, setting: Setting, value) -> None:
        path = self._path(kind, setting)
        part = path.with_suffix(".part")
        part.write_text(json.dumps({"context": self.context, "value": value}))
        os.replace(part, path)  # a run killed mid-write leaves the old file or none, never half of one


def score_setting(
    pipe: RaphaelPipeline,
    recognizer: Recognizer,
    groups: dict,
    setting: Setting,
    scheduler_config: dict,
    cfg: float,
    batch: int,
) -> dict:
    """The evaluator's scores of one setting on the held-out prompts (``generate_and_score``), without its grid."""
    pipe.scheduler = build_sampler(setting.sampler, scheduler_config)
    result = generate_and_score(pipe, recognizer, groups, setting.steps, cfg, batch, guidance_end=setting.guidance_end)
    return {key: result[key] for key in ("accuracy", "per_prompt", "prompts", "n", "fd")}


def time_call(
    pipe: RaphaelPipeline, scheduler: SchedulerMixin, setting: Setting, prompt: str, cfg: float, seed: int
) -> float:
    """Seconds of one app-like call: one image, square, PIL output, from the prompt's text to the picture."""
    pipe.scheduler = scheduler
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    pipe(
        prompt,
        num_inference_steps=setting.steps,
        guidance_scale=cfg,
        guidance_end=setting.guidance_end,
        generator=generator,
    )
    return time.perf_counter() - start


def order_by_cost(settings: list[Setting], reference: Setting, cfg: float, embedded: bool = False) -> list[Setting]:
    """The reference first (every paired difference needs it), then the cheapest settings first."""
    rest = sorted(
        (s for s in dict.fromkeys(settings) if s != reference),
        key=lambda s: (s.unet_evaluations(cfg, embedded), s.key),
    )
    return [reference, *rest]


def run_curve(
    pipe: RaphaelPipeline,
    recognizer: Recognizer,
    groups: dict,
    settings: list[Setting],
    cache: Cache,
    reference: Setting = REFERENCE,
    cfg: float = DEFAULT_GUIDANCE_SCALE,
    batch: int = 8,
    repeats: int = 5,
    reference_run: ModelRun | None = None,
) -> dict:
    """Score every setting (cached), time each ``repeats`` times in interleaved rounds (cached), and compare each
    with ``reference`` on the same prompts. Returns ``{"reference": key, "settings": [row, ...]}``, cheapest first.
    ``reference_run`` draws the reference with another pipeline and its own cache.
    """
    model_run = ModelRun(pipe, cache)
    order = order_by_cost(settings, reference, cfg, pipe.embeds_guidance(cfg, None))
    runs = dict.fromkeys(order, model_run)
    if reference_run is not None:
        runs[reference] = reference_run
    scores: dict[Setting, dict] = {}
    for setting in tqdm(order, desc="settings"):
        run = runs[setting]
        if (cached := run.cache.read("scores", setting)) is not None:
            scores[setting] = cached
            continue
        logger.info("Scoring %s on %d held-out prompts.", setting.label, sum(len(v) for v in groups.values()))
        started = time.perf_counter()
        scores[setting] = score_setting(run.pipe, recognizer, groups, setting, run.scheduler_config, cfg, batch)
        scores[setting]["scoring_seconds"] = time.perf_counter() - started
        run.cache.write("scores", setting, scores[setting])
        logger.info("%s: composition %.1f%%", setting.label, 100 * scores[setting]["accuracy"]["composition"])

    times = {s: runs[s].cache.read("times", s) or [] for s in order}
    if any(len(t) < repeats for t in times.values()):
        times = time_settings(runs, order, times, groups, cfg, repeats)

    base = scores[reference]["per_prompt"]
    rows = []
    for setting in order:
        s, calls = scores[setting], times[setting][:repeats]  # a cache from a run with more repeats keeps its first
        if s["prompts"] != scores[reference]["prompts"]:
            raise ValueError(f"{setting.label} was scored on other prompts than the reference.")
        row = {
            "key": setting.key,
            "label": setting.label,
            **asdict(setting),
            "model": "model" if runs[setting] is model_run else "reference model",
            "unet_evaluations": setting.unet_evaluations(cfg, runs[setting].pipe.embeds_guidance(cfg, None)),
            "n": s["n"],
            "accuracy": s["accuracy"],
            "fd": s["fd"],
            "seconds_per_image": {"median": statistics.median(calls), "min": min(calls), "calls": calls},
            "scoring_seconds": s.get("scoring_seconds"),
        }
        for metric in GROUPED_METRICS:
            value, interval = mean_interval(s["per_prompt"][metric])
            row[metric] = {"accuracy": value, "ci95": interval}
        row["difference"] = {m: paired_difference(s["per_prompt"][m], base[m]) for m in GROUPED_METRICS}
        row["per_prompt"] = s["per_prompt"]
        rows.append(row)
    return {"reference": reference.key, "settings": rows}


def time_settings(
    runs: dict[Setting, ModelRun],
    order: list[Setting],
    times: dict[Setting, list[float]],
    groups: dict,
    cfg: float,
    repeats: int,
) -> dict[Setting, list[float]]:
    """``repeats`` timed one-image calls per setting (each with its pipeline), in rounds that each go through every
    setting once."""
    prompt = next(iter(groups.values()))[0][1]  # the first held-out caption, drawn at the square size
    schedulers = {s: build_sampler(s.sampler, runs[s].scheduler_config) for s in order}
    # The first calls at new shapes are slow (page faults): warm both batch shapes, guided and not, untimed.
    for run in {id(r): r for r in runs.values()}.values():
        for guidance_end in sorted({1.0} | {0.0 for s in order if s.guidance_end < 1.0}):
            warm = Setting(order[0].sampler, 2, guidance_end)
            for _ in range(2):
                time_call(run.pipe, schedulers[order[0]], warm, prompt, cfg, seed=0)
    missing = sum(max(0, repeats - len(t)) for t in times.values())
    with tqdm(total=missing, desc="timing") as bar:
        for round_ in range(repeats):
            for setting in order:
                if len(times[setting]) > round_:
                    continue
                run = runs[setting]
                times[setting].append(time_call(run.pipe, schedulers[setting], setting, prompt, cfg, seed=round_))
                run.cache.write("times", setting, times[setting])
                bar.update()
            logger.info("Timing round %d of %d done (load average %.1f).", round_ + 1, repeats, os.getloadavg()[0])
    return times


def recommend(rows: list[dict], reference: str, margin: float, target_seconds: float) -> dict:
    """Which setting could replace the reference.

    Among the settings cheaper than the reference (fewer U-Net rows and fewer median seconds): the cheapest whose
    paired composition interval stays above ``-margin``, or, if none does, the closest (the highest lower end, then
    the higher difference, then the fewer seconds). Also the closest among those that meet ``target_seconds``.
    """

    def seconds(row: dict) -> float:
        return row["seconds_per_image"]["median"]

    def closeness(row: dict) -> tuple[float, float, float]:
        c = row["difference"]["composition"]
        return c["ci95"][0], c["difference"], -seconds(row)

    ref = next(r for r in rows if r["key"] == reference)
    cheaper = [
        r
        for r in rows
        if r["key"] != reference and r["unet_evaluations"] < ref["unet_evaluations"] and seconds(r) < seconds(ref)
    ]
    good = [r for r in cheaper if closeness(r)[0] > -margin]
    fast = [r for r in cheaper if seconds(r) <= target_seconds]
    pick = min(good, key=lambda r: (seconds(r), r["unet_evaluations"])) if good else None
    closest = None if good or not cheaper else max(cheaper, key=closeness)
    return {
        "margin": margin,
        "target_seconds": target_seconds,
        "cheapest_within_margin": pick["key"] if pick else None,
        "closest_to_margin": closest["key"] if closest else None,
        "meets_target": bool(pick or closest) and seconds(pick or closest) <= target_seconds,
        "closest_within_target": max(fast, key=closeness)["key"] if fast else None,
    }


def series(rows: list[dict]) -> dict[tuple[str, float], list[dict]]:
    """Rows grouped into one line per (sampler, guidance_end), by steps: CFG on every step first, in menu order."""
    menu = list(SAMPLERS)
    lines: dict[tuple[str, float], list[dict]] = {}
    for row in sorted(rows, key=lambda r: (-r["guidance_end"], menu.index(r["sampler"]), r["steps"])):
        lines.setdefault((row["sampler"], row["guidance_end"]), []).append(row)
    return lines


def plot(curve: dict, path: Path) -> None:
    """Composition, its paired difference from the reference and seconds per image, each against steps."""
    rows, margin = curve["settings"], curve["recommendation"]["margin"]
    target = curve["recommendation"]["target_seconds"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    lines = series(rows)
    offsets = {line: 0.12 * (k - (len(lines) - 1) / 2) for k, line in enumerate(lines)}  # bars side by side
    for (sampler, end), line in lines.items():
        x = [r["steps"] + offsets[(sampler, end)] for r in line]
        name = sampler if end == 1.0 else f"{sampler}, CFG on first {100 * end:.0f}%"
        linestyle = "-" if end == 1.0 else "--"
        for ax, values, key in (
            (axes[0], [r["composition"] for r in line], "accuracy"),
            (axes[1], [r["difference"]["composition"] for r in line], "difference"),
        ):
            y = np.array([100 * v[key] for v in values])
            low, high = (np.array([100 * v["ci95"][k] for v in values]) for k in (0, 1))
            ax.errorbar(x, y, yerr=[y - low, high - y], marker="o", capsize=3, linestyle=linestyle, label=name)
        seconds = [r["seconds_per_image"]["median"] for r in line]
        axes[2].plot(x, seconds, marker="o", linestyle=linestyle, label=name)
    reference = next(r for r in rows if r["key"] == curve["reference"])
    axes[0].axhline(100 * reference["composition"]["accuracy"], color="grey", linewidth=1, label="reference")
    axes[1].axhline(0, color="grey", linewidth=1)
    axes[1].axhline(-100 * margin, color="red", linewidth=1, linestyle=":", label=f"-{100 * margin:g} points")
    axes[2].axhline(target, color="red", linewidth=1, linestyle=":", label=f"target {target:g} s")
    titles = (
        "composition (95% bootstrap interval)",
        f"paired difference from {reference['label']} (95%)",
        "seconds per image, batch 1 (median)",
    )
    steps = sorted({r["steps"] for r in rows})
    for ax, title, unit in zip(axes, titles, ("%", "points", "s")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("steps")
        ax.set_ylabel(unit)
        ax.set_xscale("log")
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[2].set_ylim(bottom=0)
    axes[2].legend(fontsize=8)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(curve["config_note"] + f"; CFG {curve['cfg']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(curve: dict) -> str:
    """The table: each setting's composition and identity, its paired difference from the reference, its seconds."""
    rec = curve["recommendation"]
    model, reference_model = curve.get("model"), curve.get("reference_model")
    drawn = f" drawn by `{reference_model}`, the others by `{model}`" if reference_model != model else ""
    lines = [
        f"Held-out prompts: {curve['config_note']}; CFG {curve['cfg']}; reference {curve['reference']}{drawn}. "
        f"Seconds: median of {curve['repeats']} one-image calls, {curve['torch_threads']} torch threads, "
        f"load average {curve['load_average'][0]:.1f} at the end ({curve['machine']}).",
        "",
        "| setting | U-Net rows | composition (95%) | minus reference (95% paired) | identity (95%) "
        "| minus reference (95% paired) | s/image (median, min) |",
        "|---|---|---|---|---|---|---|",
    ]

    def pct(v: dict, key: str, sign: str = "") -> str:
        low, high = v["ci95"]
        return f"{100 * v[key]:{sign}.1f} ({100 * low:{sign}.1f} to {100 * high:{sign}.1f})"

    for r in curve["settings"]:
        d, s = r["difference"], r["seconds_per_image"]
        lines.append(
            f"| {r['label']} | {r['unet_evaluations']} | {pct(r['composition'], 'accuracy')} | "
            f"{pct(d['composition'], 'difference', '+')} | {pct(r['identity'], 'accuracy')} | "
            f"{pct(d['identity'], 'difference', '+')} | {s['median']:.3f}, {s['min']:.3f} |"
        )
    labels = {r["key"]: r["label"] for r in curve["settings"]}
    margin, target = f"-{100 * rec['margin']:g} points", f"{rec['target_seconds']:g} s"
    lines.append("")
    if rec["cheapest_within_margin"]:
        lines.append(
            f"Cheapest setting below the reference's cost whose paired interval stays above {margin}: "
            f"{labels[rec['cheapest_within_margin']]} ({'meets' if rec['meets_target'] else 'misses'} {target})."
        )
    elif rec["closest_to_margin"]:
        lines.append(
            f"No setting below the reference's cost keeps its paired interval above {margin}; the closest: "
            f"{labels[rec['closest_to_margin']]} ({'meets' if rec['meets_target'] else 'misses'} {target})."
        )
    if rec["closest_within_target"]:
        lines.append(f"Within {target}, the closest to the reference: {labels[rec['closest_within_target']]}.")
    return "\n".join(lines) + "\n"


def set_default(model_dir: Path, curve: dict, curve_path: Path) -> dict | None:
    """Write the cheapest setting within the margin into ``model_dir``'s ``training.json`` as its sampling defaults,
    with the evidence; the app starts its controls from them. None qualifying leaves the file alone. Returns what
    was written."""
    rec = curve["recommendation"]  # recommend()'s choice: the cheapest setting within the margin, or None
    if rec["cheapest_within_margin"] is None:
        logger.warning(
            "No cheaper setting stays within %g points: %s keeps its defaults.", 100 * rec["margin"], model_dir
        )
        return None
    rows = {r["key"]: r for r in curve["settings"]}
    pick, reference = rows[rec["cheapest_within_margin"]], rows[curve["reference"]]
    sampling = {
        "sampler": pick["sampler"],
        "num_inference_steps": pick["steps"],
        "guidance_scale": curve["cfg"],
        "guidance_end": pick["guidance_end"],
        "evidence": {
            "curve": str(curve_path),
            "prompts": curve["config_note"],
            "reference": f"{reference['label']} by {curve['reference_model']}",
            "composition": pick["composition"],
            "composition_minus_reference": pick["difference"]["composition"],
            "seconds_per_image": pick["seconds_per_image"]["median"],
            "reference_seconds_per_image": reference["seconds_per_image"]["median"],
            "date": time.strftime("%Y-%m-%d"),
        },
    }
    record_file = model_dir / "training.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    record[SAMPLING_KEY] = sampling
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    logger.info("%s now starts at %s (%s).", model_dir, pick["label"], record_file)
    return sampling


def parse_setting(text: str) -> Setting:
    """``"DPM-Solver++:8:0.5"`` (sampler, steps, guidance end; the last optional) as a :class:`Setting`."""
    sampler, steps, *end = text.split(":")
    if sampler not in SAMPLERS or len(end) > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not SAMPLER:STEPS[:GUIDANCE_END] with a sampler of the menu.")
    try:
        return Setting(sampler, int(steps), float(end[0]) if end else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: STEPS is a whole number and GUIDANCE_END a fraction.") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_BUNDLE, help="RaphaelPipeline folder")
    p.add_argument("--out", type=Path, default=Path("model/checkpoints/raphael-tiny/eval/sampler-curve"))
    p.add_argument("--cache", type=Path, default=None, help="per-setting results (default: OUT/cache)")
    p.add_argument("--n", type=int, default=128, help="held-out prompts (evaluate's default is 64)")
    p.add_argument("--samplers", nargs="+", choices=tuple(SAMPLERS), default=list(SAMPLERS))
    p.add_argument("--steps", nargs="+", type=int, default=list(DEFAULT_STEPS))
    p.add_argument(
        "--guidance-end",
        nargs="+",
        type=float,
        default=[1.0],
        help="fractions of the steps that use CFG (1.0: every step); each sampler and steps runs with each",
    )
    p.add_argument(
        "--add",
        type=parse_setting,
        action="append",
        default=[],
        metavar="SAMPLER:STEPS[:END]",
        help="a setting beside the grid, e.g. DPM-Solver++:8:0.5 (CFG on the first half of 8 steps); repeatable",
    )
    p.add_argument(
        "--reference-model",
        type=Path,
        default=None,
        help="draw the reference with this pipeline folder instead (e.g. a distilled model's teacher)",
    )
    p.add_argument("--reference-sampler", choices=tuple(SAMPLERS), default=REFERENCE.sampler)
    p.add_argument("--reference-steps", type=int, default=REFERENCE.steps)
    p.add_argument("--cfg", type=float, default=DEFAULT_GUIDANCE_SCALE, help="the pipeline's default")
    p.add_argument("--batch", type=int, default=8, help="images per pipeline call while scoring (as evaluate)")
    p.add_argument("--repeats", type=int, default=5, help="timed one-image calls per setting")
    p.add_argument("--margin", type=float, default=1.0, help="points of composition a setting may lose")
    p.add_argument("--target-seconds", type=float, default=0.25, help="seconds per image the default should meet")
    p.add_argument(
        "--set-default",
        action="store_true",
        help="write the cheapest setting within the margin into the model's training.json (run on validation prompts)",
    )
    add_prompt_arguments(p)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.n < 1:
        p.error("--n and --repeats must be 1 or more.")
    if not all(0.0 <= g <= 1.0 for g in [*args.guidance_end, *(s.guidance_end for s in args.add)]):
        p.error("--guidance-end takes fractions from 0 to 1.")
    return args


def main(argv: list[str] | None = None) -> None:
    apply_offline_defaults()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    config = prompt_config(args)
    args.out.mkdir(parents=True, exist_ok=True)
    reference = Setting(args.reference_sampler, args.reference_steps)
    settings = [Setting(s, n, g) for s in args.samplers for n in args.steps for g in args.guidance_end] + args.add
    context = {
        "model": weights_hash(args.model),
        "n": args.n,
        "config": asdict(config),
        "prompt_seed": args.prompt_seed,
        "cfg": args.cfg,
        "batch": args.batch,
        "torch_threads": torch.get_num_threads(),
    }
    cache_dir = args.cache or args.out / "cache"
    cache = Cache(cache_dir, context)
    pipe = load_bundle(args.model)
    reference_run = None
    if args.reference_model:  # its own cache folder: the same setting names, another model
        reference_cache = Cache(cache_dir / "reference", {**context, "model": weights_hash(args.reference_model)})
        reference_run = ModelRun(load_bundle(args.reference_model), reference_cache)
    groups = heldout_prompts(config, args.n, args.prompt_seed)
    curve = run_curve(
        pipe, load_default(), groups, settings, cache, reference, args.cfg, args.batch, args.repeats, reference_run
    )
    curve.update(
        model=str(args.model),
        reference_model=str(args.reference_model or args.model),
        config=asdict(config),
        config_note=config_note(config, args.n, args.prompt_seed),
        cfg=args.cfg,
        batch=args.batch,
        repeats=args.repeats,
        torch_threads=torch.get_num_threads(),
        load_average=list(os.getloadavg()),
        machine=f"{os.cpu_count()} CPUs",
        recommendation=recommend(curve["settings"], curve["reference"], args.margin / 100, args.target_seconds),
    )
    (args.out / "curve.json").write_text(json.dumps(curve, indent=2))
    table = markdown(curve)
    (args.out / "curve.md").write_text(table)
    plot(curve, args.out / "curve.png")
    logger.info("\n%s", table)
    if args.set_default:
        set_default(args.model, curve, args.out / "curve.json")


if __name__ == "__main__":
    main()
