"""``make loop``: the feedback loop proven with simulated raters, through the real app.

``make next-version`` registers a tuned version when composition did not fall; that does not show that what the
raters wanted reached the model. Here raters with a hidden, measurable taste (``app.simulated_raters``) use the
real server through ``gradio_client``, and the proof is whether *new* raters of that taste prefer the tuned version
to the base in the arena, on held-out prompts, beside the taste's own measure of both.

Each round:

1. ``python app.py`` serves the current version in a subprocess on a free loopback port. Its versions folder is
   an empty one: nothing in a round uses the arena, and every further version would cost a load.
2. The raters (``--raters`` noisy ones, agreeing with the taste 80-90% of the time, and ``--random-raters``
   random clickers) take turns drawing a page of a training-domain prompt through ``/generate``; every rater then
   votes on each image of the page (``/vote``) and compares each pair of it (``/compare``). The prompts are the
   same every round with new seeds, so the rounds' taste means differ by the version, not by the prompts.
3. The server stops and ``app.next_version`` runs in this process: export without the raters the agreement check
   flags, Diffusion-DPO, paired comparison on held-out prompts, registration unless composition fell. A registered
   version is the next round's current one; otherwise the next round's feedback adds to this one's.

After the rounds the server serves the base and the tuned version (the last registered one, else the last
candidate), and new raters of the same taste judge arena battles on held-out prompts, drawn with another seed than
next-version's evaluation. No random clicker joins them: the arena is the measurement, not training data.

Everything goes to ``--out``: ``loop.json`` (rewritten after every round, so a long run can be read as it goes),
``curve.png``, ``feedback.db``, ``images/``, ``versions/``, ``round-N/`` (``server.log``, ``next-version/``) and
``arena/server.log``. CPU seconds are this process's (``time.process_time``) and the servers' (``getrusage`` of
the finished children, counted once each server has exited).

The full run is a command, not a test: ``make loop ARGS="--taste size"`` and ``make loop ARGS="--taste
correctness"``, each with the defaults (3 rounds of 32 prompts x 4 images, 4 raters and a random clicker, 200 DPO
steps, next-version on 256 held-out prompts, 200 arena battles, 25 sampling steps). Timed on a busy 2-core CPU with
one torch thread: a page with its 50 judgements costs about 7.5 s of server CPU and 4 s here, a DPO step of 16
pairs 3.7 s, an evaluation image 1.5 s, an arena battle 6 s; so about 31 minutes of CPU a round and 2 hours a run.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from app.guard import Guard
from app.next_version import build_parser as next_version_parser
from app.next_version import evaluation_config, next_version
from app.served import ServedApp, ServerError
from app.settings import Settings, from_env
from app.simulated_raters import TASTES, Battle, Judge, Page, SimulatedRater, Taste, accuracies, make_taste
from feedback.agreement import agreement
from feedback.images import model_version
from feedback.store import FeedbackStore
from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.data.scene import Scene
from model.evaluation.evaluate import prompt_kind
from model.offline import apply_offline_defaults
from model.pipeline.bundled import DEFAULT_BUNDLE
from model.pipeline.identity import model_name, weights_hash
from model.pipeline.limits import DEFAULT_GUIDANCE_SCALE, DEFAULT_INFERENCE_STEPS, MAX_IMAGES, MAX_SEED

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)

ARENA_PROMPT_SEED = 515_151  # held-out prompts for the arena, not next-version's evaluation prompts (424242)
MAX_DRAWS_PER_PROMPT = 20  # a taste that refuses most prompts of a slice is a usage error, not an endless loop
BOOTSTRAP_RESAMPLES = 2000
Prompt = tuple[str, Scene]


@dataclass(frozen=True)
class LoopConfig:
    """One ``make loop`` run; the defaults are the documented full run."""

    taste: str
    out: Path
    rounds: int = 3
    prompts: int = 32  # training-domain prompts per round, the same every round
    raters: int = 4  # noisy raters; the arena gets as many new ones
    random_raters: int = 1
    images: int = 4  # per page
    steps: int = DEFAULT_INFERENCE_STEPS
    cfg: float = DEFAULT_GUIDANCE_SCALE
    tune_steps: int = 200
    eval_n: int = 256
    eval_steps: int = DEFAULT_INFERENCE_STEPS
    arena_battles: int = 200
    seed: int = 0
    model: Path = DEFAULT_BUNDLE
    device: str = "cpu"
    threads: int = 0  # torch CPU threads here and in the servers; 0 = torch's default
    tune_args: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()  # only prompts of these kinds ("2 emoji ×2", evaluate.prompt_kind); () = any

    def __post_init__(self) -> None:
        if self.taste not in TASTES:
            raise ValueError(f"Unknown taste {self.taste!r}; choose one of {', '.join(TASTES)}.")
        for name in ("rounds", "prompts", "arena_battles", "tune_steps", "eval_n", "steps", "eval_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.raters < 2:
            raise ValueError(f"--raters must be at least 2 (agreement compares raters), got {self.raters}.")
        if self.random_raters < 0:
            raise ValueError(f"--random-raters must not be negative, got {self.random_raters}.")
        for kind in self.kinds:
            if not re.fullmatch(r"[1-9] emoji ×[1-9]", kind):
                raise ValueError(f'--kind takes the form "2 emoji ×2" (emoji, then the most of one), not {kind!r}.')
        if not 2 <= self.images <= MAX_IMAGES:
            raise ValueError(
                f"--images must be from 2 to {MAX_IMAGES} (a page is judged in pairs), got {self.images}."
            )


@dataclass(frozen=True)
class LoopPaths:
    """Where a run keeps its state."""

    out: Path

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.out / 'feedback.db'}"

    @property
    def image_dir(self) -> Path:
        return self.out / "images"

    @property
    def versions(self) -> Path:
        return self.out / "versions"

    @property
    def no_versions(self) -> Path:
        """An empty versions folder, so a server serves exactly the ``--model`` folders it is given."""
        return self.out / "no-versions"

    @property
    def downloads(self) -> Path:
        return self.out / "downloads"


# -- the server -----------------------------------------------------------------------------------------------------


class AppServer:
    """``python app.py`` serving ``models`` (and no versions folder) for the length of a ``with`` block."""

    def __init__(self, models: Sequence[Path], paths: LoopPaths, log_path: Path, config: LoopConfig) -> None:
        self.models = list(models)
        args = [arg for model in self.models for arg in ("--model", str(model))]
        args += ["--versions", str(paths.no_versions), "--db", paths.db_url, "--image-dir", str(paths.image_dir)]
        env = {"GRADIO_TEMP_DIR": str(paths.out / "gradio")}
        if config.threads:
            env["RAPHAEL_TORCH_THREADS"] = str(config.threads)
        self._served = ServedApp([*args, "--device", config.device], log_path, env)

    def __enter__(self) -> str:
        url = self._served.__enter__()
        log.info("The app serves %s at %s", ", ".join(model_name(m) for m in self.models), url)
        return url

    def __exit__(self, *_exc: object) -> None:
        self._served.stop()


# -- measuring --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds so far of this process and of its reaped children (the servers)."""

    own: float
    children: float

    @classmethod
    def now(cls) -> CpuClock:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(time.process_time(), usage.ru_utime + usage.ru_stime)

    def since(self, start: CpuClock) -> tuple[float, float]:
        return self.own - start.own, self.children - start.children


def mean_interval(values: Sequence[float], seed: int = 0) -> dict[str, Any]:
    """Mean with a 95% percentile-bootstrap interval; a constant or single value is its own interval."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean()) if array.size else float("nan")
    if array.size < 2 or np.ptp(array) == 0:
        return {"mean": mean, "ci95": [mean, mean], "n": int(array.size)}
    interval = stats.bootstrap(
        (array,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile", rng=np.random.default_rng(seed)
    ).confidence_interval
    return {"mean": mean, "ci95": [float(interval.low), float(interval.high)], "n": int(array.size)}


def win_rate(wins: int, losses: int) -> dict[str, Any]:
    """Share of the decided battles won, with the Wilson 95% interval (sound for few battles and rates near 0 or 1)."""
    decided = wins + losses
    if decided == 0:
        return {"rate": None, "ci95": None, "decided": 0}
    interval = stats.binomtest(wins, decided).proportion_ci(confidence_level=0.95, method="wilson")
    return {"rate": wins / decided, "ci95": [float(interval.low), float(interval.high)], "decided": decided}


# -- prompts and raters -----------------------------------------------------------------------------------------------


def domain_prompts(
    config: SceneConfig, split: str, n: int, seed: int, taste: Taste, kinds: Sequence[str] = ()
) -> list[Prompt]:
    """``n`` prompts of the model's slice from ``split``, with the scenes they ask for, that ``taste`` may be shown;
    with ``kinds``, only prompts of those kinds (feedback is informative where the model still fails)."""
    data = EmojiScenes(replace(config, split=split), seed=seed)
    prompts: list[Prompt] = []
    for index in range(MAX_DRAWS_PER_PROMPT * n):
        caption, scene = data.describe(index)
        if taste.fits(caption) and (not kinds or prompt_kind(scene) in kinds):
            prompts.append((caption, scene))
            if len(prompts) == n:
                return prompts
    wanted = f" of kind {', '.join(kinds)}" if kinds else ""
    raise ValueError(
        f"Only {len(prompts)} of {MAX_DRAWS_PER_PROMPT * n} {split} prompts{wanted} suit the {taste.name} taste."
    )


def panel(taste: Taste, noisy: int, clickers: int, prefix: str, seed: int) -> list[SimulatedRater]:
    """``noisy`` raters with agreement rates spread over 0.8-0.9, then ``clickers`` random clickers."""
    rates: list[float | None] = [*accuracies(noisy), *[None] * clickers]
    names = [f"{prefix}-{i + 1}" for i in range(noisy)] + [f"{prefix}-random-{i + 1}" for i in range(clickers)]
    return [
        SimulatedRater(name, Judge(taste, rate, random.Random(f"{seed}/{name}"))) for name, rate in zip(names, rates)
    ]


def store_rater_id(store: FeedbackStore, rater: SimulatedRater) -> int:
    """The store's id of a simulated rater: the app keys its cookie with the install's secret (``Guard.rater``)."""
    return store.rater(Guard(Settings(), (), (), key=store.install_secret).rater(rater.token, None).anon_id)


def judge_pages(
    raters: Sequence[SimulatedRater], prompts: Sequence[Prompt], config: LoopConfig, rng: random.Random, title: str
) -> list[Page]:
    """Each rater in turn draws a page; every rater judges every page."""
    pages = []
    for index, (prompt, scene) in enumerate(tqdm(prompts, desc=title, unit="page")):
        seed = rng.randrange(MAX_SEED - MAX_IMAGES + 2)  # every image's seed (seed + i) stays a valid seed
        page = raters[index % len(raters)].generate(
            prompt, scene, images=config.images, steps=config.steps, cfg=config.cfg, seed=seed
        )
        for rater in raters:
            rater.rate(page)
        pages.append(page)
    return pages


def panel_agreement(
    store: FeedbackStore, current: Path, raters: Sequence[SimulatedRater]
) -> tuple[list[dict[str, Any]], int, int]:
    """Each rater's agreement with the others on the current version's images, as the export's check sees it,
    and the judgements (votes and comparisons) the export keeps and leaves out."""
    rows = store.preference_rows(model=weights_hash(current), with_images=False, with_events=False)
    table = agreement(rows, n_boot=0).raters.set_index("rater_id")
    flagged = set(table.index[table["flagged"]])
    report = []
    for rater in raters:
        rater_id = store_rater_id(store, rater)
        row = table.loc[rater_id] if rater_id in table.index else None
        report.append(
            {
                "name": rater.name,
                "accuracy": rater.judge.accuracy,
                "rater_id": rater_id,
                "agreement": None if row is None else float(row["agreement"]),
                "shared_items": 0 if row is None else int(row["shared_images"] + row["shared_pairs"]),
                "flagged": rater_id in flagged,
            }
        )
    judgements = [row.rater_id for row in (*rows.votes, *rows.comparisons)]
    left_out = sum(rater_id in flagged for rater_id in judgements)
    return report, len(judgements) - left_out, left_out


# -- one round ------------------------------------------------------------------------------------------------------


def tune(store: FeedbackStore, current: Path, index: int, config: LoopConfig, paths: LoopPaths) -> dict[str, Any]:
    """``app.next_version`` on the feedback so far; a round with too little feedback is recorded, not fatal."""
    name = f"{model_name(config.model)}-{config.taste}-r{index}"
    argv = ["--db", paths.db_url, "--image-dir", str(paths.image_dir), "--current", str(current)]
    argv += ["--versions", str(paths.versions), "--out", str(paths.out / f"round-{index}" / "next-version")]
    argv += ["--name", name, "--steps", str(config.tune_steps), "--seed", str(config.seed + index)]
    argv += ["--eval-n", str(config.eval_n), "--eval-steps", str(config.eval_steps), "--eval-cfg", str(config.cfg)]
    argv += ["--tune-args", *config.tune_args]
    try:
        decision = next_version(store, next_version_parser().parse_args(argv))
    except ValueError as err:
        log.warning("Round %d: %s", index, err)
        return {
            "registered": False,
            "reason": str(err),
            "name": name,
            "version": None,
            "candidate": None,
            "export": None,
            "evaluation": None,
        }
    evaluation = decision.evaluation
    return {
        "registered": decision.registered,
        "reason": decision.reason,
        "name": name,
        "version": decision.version,
        "candidate": decision.candidate,
        "export": decision.export,
        "evaluation": {
            "prompts": evaluation["prompts"],
            "composition": {who: acc["composition"] for who, acc in evaluation["accuracy"].items()},
            "identity": {who: acc["identity"] for who, acc in evaluation["accuracy"].items()},
            "difference": evaluation["difference"],
            "composition_by_kind": evaluation["composition_by_kind"],
        },
    }


def run_round(
    index: int,
    current: Path,
    prompts: Sequence[Prompt],
    raters: Sequence[SimulatedRater],
    config: LoopConfig,
    paths: LoopPaths,
    rng: random.Random,
) -> dict[str, Any]:
    """Serve ``current``, let the raters judge a page per prompt, stop, then tune; returns the round's record."""
    started, wall = CpuClock.now(), time.monotonic()
    cast_before = sum((rater.cast for rater in raters), Counter())
    with AppServer([current], paths, paths.out / f"round-{index}" / "server.log", config) as url:
        for rater in raters:
            rater.connect(url, paths.downloads)
        try:
            pages = judge_pages(raters, prompts, config, rng, f"round {index}: pages")
        finally:
            for rater in raters:
                rater.disconnect()
    rated = CpuClock.now()
    with FeedbackStore(paths.db_url, paths.image_dir) as store:
        agreement_report, used, left_out = panel_agreement(store, current, raters)
        decision = tune(store, current, index, config, paths)
    done = CpuClock.now()
    raters_cpu, server_cpu = rated.since(started)
    cast = sum((rater.cast for rater in raters), Counter())
    cast.subtract(cast_before)
    return {
        "round": index,
        "version": model_version(model_name(current), weights_hash(current)),
        "folder": str(current),
        "pages": len(pages),
        "images": sum(len(page.images) for page in pages),
        "cast": {key: cast[key] for key in ("generations", "votes", "comparisons")},
        "taste": mean_interval([float(np.mean(page.scores)) for page in pages], seed=index),
        "raters": agreement_report,
        "judgements_used": used,
        "judgements_left_out": left_out,
        "next_version": decision,
        "cpu_seconds": {
            "raters": round(raters_cpu, 1),
            "server": round(server_cpu, 1),
            "next_version": round(sum(done.since(rated)), 1),
            "total": round(sum(done.since(started)), 1),
        },
        "wall_seconds": round(time.monotonic() - wall, 1),
    }


# -- the arena ------------------------------------------------------------------------------------------------------


def run_arena(
    base: Path, tuned: Path, registered: bool, taste: Taste, config: LoopConfig, paths: LoopPaths
) -> dict[str, Any]:
    """New raters judge base against tuned on held-out prompts; win rate, the taste's measure of both, ratings."""
    started, wall = CpuClock.now(), time.monotonic()
    prompts = domain_prompts(
        evaluation_config(base), "heldout", config.arena_battles, ARENA_PROMPT_SEED + config.seed, taste, config.kinds
    )
    raters = panel(taste, config.raters, 0, "arena", config.seed)
    tuned_label = model_version(model_name(tuned), weights_hash(tuned))
    with AppServer([base, tuned], paths, paths.out / "arena" / "server.log", config) as url:
        for rater in raters:
            rater.connect(url, paths.downloads)
        try:
            battles = [
                raters[i % len(raters)].battle(prompt, scene, steps=config.steps, cfg=config.cfg)
                for i, (prompt, scene) in enumerate(tqdm(prompts, desc="arena: battles", unit="battle"))
            ]
            board = raters[0].predict(api_name="/leaderboard")
        finally:
            for rater in raters:
                rater.disconnect()
    raters_cpu, server_cpu = CpuClock.now().since(started)
    return {
        "base": model_version(model_name(base), weights_hash(base)),
        "tuned": tuned_label,
        "tuned_folder": str(tuned),
        "tuned_registered": registered,
        "raters": [{"name": r.name, "accuracy": r.judge.accuracy} for r in raters],
        **battle_summary(battles, tuned_label, taste),
        "leaderboard": board["ratings"],
        "cpu_seconds": {
            "raters": round(raters_cpu, 1),
            "server": round(server_cpu, 1),
            "total": round(raters_cpu + server_cpu, 1),
        },
        "wall_seconds": round(time.monotonic() - wall, 1),
    }


def battle_summary(battles: Sequence[Battle], tuned_label: str, taste: Taste) -> dict[str, Any]:
    """What the raters said (outcomes, win rate of tuned among decided battles) beside what the taste measures
    without noise (its own win rate, and the mean score of each version's images with the paired difference)."""
    outcomes: Counter[str] = Counter(dict.fromkeys(("tuned", "base", "tie", "both_bad"), 0))
    measured: Counter[str] = Counter()
    tuned_scores, base_scores = [], []
    for battle in battles:
        tuned_left = battle.model_a == tuned_label
        tuned_score, base_score = (battle.score_a, battle.score_b) if tuned_left else (battle.score_b, battle.score_a)
        tuned_scores.append(tuned_score)
        base_scores.append(base_score)
        if battle.outcome in ("left", "right"):
            outcomes["tuned" if (battle.outcome == "left") == tuned_left else "base"] += 1
        else:
            outcomes[battle.outcome] += 1
        measured[taste.outcome(tuned_score, base_score)] += 1  # "left": the taste prefers tuned
    return {
        "prompts": "held-out",
        "battles": len(battles),
        "outcomes": dict(outcomes),
        "win_rate": win_rate(outcomes["tuned"], outcomes["base"]),
        "taste_win_rate": win_rate(measured["left"], measured["right"]),
        "taste": {
            "base": mean_interval(base_scores),
            "tuned": mean_interval(tuned_scores),
            "difference": mean_interval(np.subtract(tuned_scores, base_scores).tolist()),
        },
    }


# -- the run --------------------------------------------------------------------------------------------------------


def run_loop(config: LoopConfig) -> dict[str, Any]:
    """Every round, then the arena; writes ``loop.json`` (after every round too) and ``curve.png``."""
    paths = LoopPaths(config.out)
    if config.out.exists() and any(config.out.iterdir()):
        raise FileExistsError(f"{config.out} is not empty; choose a new --out folder for this run.")
    for folder in (paths.versions, paths.no_versions, paths.image_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    taste = make_taste(config.taste)
    prompts = domain_prompts(
        evaluation_config(config.model), "train", config.prompts, config.seed, taste, config.kinds
    )
    raters = panel(taste, config.raters, config.random_raters, "rater", config.seed)
    rng = random.Random(config.seed)
    report: dict[str, Any] = {
        "taste": config.taste,
        "settings": {**asdict(config), "out": str(config.out), "model": str(config.model)},
        "raters": [{"name": r.name, "accuracy": r.judge.accuracy} for r in raters],
        "rounds": [],
        "arena": None,
        "totals": None,
    }
    current, candidate = config.model, None
    for index in range(1, config.rounds + 1):
        record = run_round(index, current, prompts, raters, config, paths, rng)
        report["rounds"].append(record)
        decision = record["next_version"]
        candidate = Path(decision["candidate"]) if decision["candidate"] else candidate
        if decision["registered"]:
            current = Path(decision["version"])
        log.info("Round %d: %s", index, decision["reason"])
        write_report(report, paths)
    # Tuned: the last registered version, else the last candidate (the arena then shows what was refused).
    if current != config.model:
        report["arena"] = run_arena(config.model, current, True, taste, config, paths)
    elif candidate is not None:
        report["arena"] = run_arena(config.model, candidate, False, taste, config, paths)
    else:
        report["arena"] = {"skipped": "no round had enough feedback to tune on"}
    report["totals"] = totals(report)
    write_report(report, paths)
    plot_curve(report, paths.out / "curve.png")
    return report


def totals(report: dict[str, Any]) -> dict[str, Any]:
    """Judgements cast and used, rows exported, and the CPU seconds of the whole process (start-up included) and
    of every server, with the wall seconds of the rounds and the arena."""
    rounds, arena = report["rounds"], report["arena"]
    parts = [*rounds, *([arena] if "wall_seconds" in arena else [])]
    clock = CpuClock.now()
    return {
        "judgements_cast": sum(r["cast"]["votes"] + r["cast"]["comparisons"] for r in rounds),
        "judgements_used": sum(r["judgements_used"] for r in rounds),
        "rows_exported": sum(r["next_version"]["export"]["rows"] for r in rounds if r["next_version"]["export"]),
        "arena_battles": arena.get("battles", 0),
        "cpu_seconds": round(clock.own + clock.children, 1),
        "wall_seconds": round(sum(p["wall_seconds"] for p in parts), 1),
    }


def write_report(report: dict[str, Any], paths: LoopPaths) -> None:
    (paths.out / "loop.json").write_text(json.dumps(report, indent=2) + "\n")


def plot_curve(report: dict[str, Any], png: Path) -> None:
    """Taste per round (and both versions in the arena) beside composition per round (current and candidate)."""
    rounds = report["rounds"]
    x = [r["round"] for r in rounds]
    fig, (taste_ax, comp_ax) = plt.subplots(1, 2, figsize=(11, 4))
    means = [r["taste"]["mean"] for r in rounds]
    errors = np.array([[m - r["taste"]["ci95"][0], r["taste"]["ci95"][1] - m] for m, r in zip(means, rounds)]).T
    taste_ax.errorbar(x, means, yerr=errors, marker="o", capsize=3, label="current version, training prompts")
    arena = report["arena"]
    title = f"taste: {report['taste']}"
    if arena and "taste" in arena:
        end = len(rounds) + 1
        for offset, who in ((-0.1, "base"), (0.1, "tuned")):
            value = arena["taste"][who]
            low, high = value["ci95"]
            taste_ax.errorbar(
                [end + offset],
                [value["mean"]],
                yerr=[[value["mean"] - low], [high - value["mean"]]],
                marker="s",
                capsize=3,
                linestyle="none",
                label=f"arena, held-out: {who}",
            )
        difference = arena["taste"]["difference"]
        low, high = difference["ci95"]
        title += f"\narena, tuned − base (paired): {difference['mean']:+.4f} [{low:+.4f}, {high:+.4f}]"
        rate = arena["win_rate"]
        if rate["rate"] is not None:
            low, high = rate["ci95"]
            title += f" · arena: tuned wins {100 * rate['rate']:.0f}% [{100 * low:.0f}, {100 * high:.0f}]"
            title += f" of {rate['decided']} decided"
    taste_ax.set_xlabel("round")
    taste_ax.set_ylabel("taste score (mean per page)")
    taste_ax.set_title(title, fontsize=9)
    taste_ax.legend(fontsize=8)
    evaluated = [r for r in rounds if r["next_version"]["evaluation"]]
    for who, style in (("current", "-o"), ("candidate", "--^")):
        values = [r["next_version"]["evaluation"]["composition"][who] for r in evaluated]
        comp_ax.plot([r["round"] for r in evaluated], values, style, label=who)
    for r in evaluated:
        if r["next_version"]["registered"]:
            point = (r["round"], r["next_version"]["evaluation"]["composition"]["candidate"])
            comp_ax.annotate("registered", point, fontsize=7, textcoords="offset points", xytext=(4, 4))
    comp_ax.set_xlabel("round")
    comp_ax.set_ylabel("composition, held-out prompts")
    comp_ax.set_title("next-version's paired evaluation", fontsize=9)
    comp_ax.legend(fontsize=8)
    taste_ax.set_xticks(range(1, len(rounds) + 2), [*map(str, x), "arena"])
    comp_ax.set_xticks(x)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    defaults = LoopConfig(taste="size", out=Path("."))
    parser = argparse.ArgumentParser(
        prog="python -m app.loop",
        description="Prove the feedback loop with simulated raters through the real app: rounds of rating and "
        "next-version, then new raters judge base against tuned in the arena on held-out prompts.",
    )
    parser.add_argument("--taste", choices=tuple(TASTES), required=True, help="the raters' hidden taste")
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the run")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="default: %(default)s")
    parser.add_argument(
        "--prompts",
        type=int,
        default=defaults.prompts,
        help="training-domain prompts per round (default: %(default)s)",
    )
    parser.add_argument(
        "--raters", type=int, default=defaults.raters, help="noisy raters, 80-90%% agreement (default: %(default)s)"
    )
    parser.add_argument("--random-raters", type=int, default=defaults.random_raters, help="default: %(default)s")
    parser.add_argument("--images", type=int, default=defaults.images, help="images per page (default: %(default)s)")
    parser.add_argument(
        "--steps", type=int, default=defaults.steps, help="sampling steps of pages and battles (default: %(default)s)"
    )
    parser.add_argument("--cfg", type=float, default=defaults.cfg, help="default: %(default)s")
    parser.add_argument("--tune-steps", type=int, default=defaults.tune_steps, help="default: %(default)s")
    parser.add_argument(
        "--eval-n", type=int, default=defaults.eval_n, help="next-version's held-out prompts (default: %(default)s)"
    )
    parser.add_argument("--eval-steps", type=int, default=defaults.eval_steps, help="default: %(default)s")
    parser.add_argument("--arena-battles", type=int, default=defaults.arena_battles, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--model", type=Path, default=defaults.model, help="the base version (default: bundled)")
    parser.add_argument("--device", default=defaults.device, help="the servers' torch device (default: %(default)s)")
    parser.add_argument(
        "--threads",
        type=int,
        default=from_env().torch_threads or 0,
        help="torch CPU threads here and in the servers, 0 = torch's default [RAPHAEL_TORCH_THREADS]",
    )
    parser.add_argument(
        "--kind",
        dest="kinds",
        action="append",
        default=[],
        help='only prompts of this kind, for rounds and arena, e.g. "2 emoji ×2" (two different emoji, the most '
        "of one of them two); repeat for several [default: every kind of the model's slice]",
    )
    parser.add_argument(
        "--tune-args", nargs=argparse.REMAINDER, default=[], help="further flags for model.training.preference"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    apply_offline_defaults()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call would bury the progress
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    try:
        report = run_loop(LoopConfig(**{**args, "tune_args": tuple(args["tune_args"]), "kinds": tuple(args["kinds"])}))
    except (ValueError, FileExistsError, ServerError) as err:
        parser.exit(2, f"{parser.prog}: {err}\n")
    json.dump(report["totals"], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
