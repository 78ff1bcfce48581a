"""RAPHAEL-tiny against its dense baseline over training: ``python -m model.evaluation.learning_curve RESULTS...``.

Each argument is a ``model.evaluation.evaluate --baseline`` output folder, one per pair of checkpoints taken
at the same step. One checkpoint cannot settle the paper's claim on an easy stage where both
models end near 100%: the curve shows which one gets there on fewer images. A checkpoint of a later
curriculum stage counts the images of every stage before it, and a dashed line marks where a stage began.
"""

import argparse
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from model.evaluation.evaluate import BASELINE, MODEL, compared_models, stage_images, training_chain  # noqa: E402

logger = logging.getLogger("model.evaluation.learning_curve")

METRICS = ("identity", "composition")
Z95 = 1.959964


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of a proportion: unlike p ± 1.96·se it stays inside [0, 1] near 0% and 100%."""
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / (1 + Z95**2 / n)
    return float(centre - half), float(centre + half)


def load_points(folders: list[Path]) -> list[dict]:
    """One point per evaluation run: both models' accuracies with intervals, and their paired difference."""
    points = []
    for folder in folders:
        results = json.loads((folder / "results.json").read_text())
        if "comparison" not in results:
            raise ValueError(
                f"{folder} holds no dense-baseline comparison; run model.evaluation.evaluate with --baseline"
            )
        models = {}
        names = compared_models(results)  # whatever --name and --baseline-name called them
        for key, name in zip((MODEL, BASELINE), names):
            r = results["models"][name]
            chain = training_chain(r["training"])
            if not chain:
                raise ValueError(f"{folder}: {name} has no training record (bundle it with model.training.bundle)")
            models[key] = {
                "steps": [stage["steps"] for stage in chain],  # per curriculum stage, earliest first
                "stage_images": stage_images(r["training"]),
                "images_seen": sum(stage_images(r["training"])),
                "step_time_hours": sum(stage["step_time_hours"] for stage in chain),
                **{m: r["accuracy"][m] for m in METRICS},
                **{f"{m}_ci95": wilson(sum(r["per_prompt"][m]), r["n"]) for m in METRICS},
            }
        steps = {tuple(m["steps"]) for m in models.values()}
        if len(steps) != 1:
            raise ValueError(f"{folder} compares checkpoints of different steps: {sorted(steps)}")
        points.append({"n": results["models"][names[0]]["n"], "models": models, **results["comparison"]})
    return sorted(points, key=lambda p: p["models"][MODEL]["images_seen"])


def plot(points: list[dict], path: Path) -> None:
    """Accuracy against training images, one panel per metric, 95% Wilson bars."""
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5.5 * len(METRICS), 3.8), squeeze=False)
    stage_images = [p["models"][MODEL]["stage_images"] for p in points]
    stage_starts = sorted({sum(images[:k]) for images in stage_images for k in range(1, len(images))})
    for ax, metric in zip(axes[0], METRICS):
        for name, colour in ((MODEL, "tab:blue"), (BASELINE, "tab:orange")):
            rows = [p["models"][name] for p in points]
            x = np.array([r["images_seen"] for r in rows]) / 1000
            y = np.array([r[metric] for r in rows]) * 100
            low, high = (np.array([r[f"{metric}_ci95"][k] for r in rows]) * 100 for k in (0, 1))
            ax.errorbar(x, y, yerr=[y - low, high - y], marker="o", capsize=3, color=colour, label=name)
        for start in stage_starts:
            ax.axvline(start / 1000, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"{metric} on held-out prompts")
        ax.set_xlabel("training images, all stages (thousands)")
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def markdown(points: list[dict]) -> str:
    """The curve as a table, with the paired difference at each step."""
    lines = [
        "| steps | training images | prompts | RAPHAEL-tiny composition | dense composition | difference (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for p in points:
        ours, dense = p["models"][MODEL], p["models"][BASELINE]
        diff, (low, high) = p["composition"]["difference"], p["composition"]["ci95"]
        lines.append(
            f"| {' + '.join(f'{s:,}' for s in ours['steps'])} | {ours['images_seen']:,} | {p['n']} | "
            f"{100 * ours['composition']:.1f}% | "
            f"{100 * dense['composition']:.1f}% | {100 * diff:+.1f} ({100 * low:+.1f} to {100 * high:+.1f}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="model.evaluation.evaluate --baseline output folders")
    parser.add_argument("--out", type=Path, required=True, help="folder for learning_curve.png / .json / .md")
    args = parser.parse_args(argv)
    points = load_points(args.results)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(points, args.out / "learning_curve.png")
    (args.out / "learning_curve.json").write_text(json.dumps(points, indent=2) + "\n")
    table = markdown(points)
    (args.out / "learning_curve.md").write_text(table)
    logger.info("\n%s", table)


if __name__ == "__main__":
    main()
