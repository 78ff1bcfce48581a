"""Training curves and expert usage as one PNG, readable at a glance."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

EVAL_METRICS = ("identity", "composition")  # the held-out scores a run's curve shows, of what the evaluator reports


def _smooth(values: np.ndarray, window: int = 25) -> np.ndarray:
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def _rows(log_path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]


def plot_lines(log_path: Path, png_path: Path, keys: tuple[str, ...]) -> None:
    """One panel per logged value over steps (raw and moving average), e.g. a fine-tuning run's loss."""
    rows = _rows(log_path)
    if not rows:
        return
    steps = np.array([r["step"] for r in rows])
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        vals = np.array([r[key] for r in rows], dtype=float)
        sm = _smooth(vals)
        ax.plot(steps, vals, alpha=0.3)
        ax.plot(steps[len(steps) - len(sm) :], sm)
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


def _plot_evals(ax, evals: list[dict]) -> None:
    """Held-out scores of the run's checkpoints per set of prompts, with 95% Wilson intervals."""
    for name in dict.fromkeys(row["set"] for row in evals):
        rows = [row for row in evals if row["set"] == name]
        steps = [row["step"] for row in rows]
        for metric, marker in zip(EVAL_METRICS, "os"):
            rates = np.array([row["passed"][metric] / row["n"] for row in rows])
            cis = [stats.binomtest(row["passed"][metric], row["n"]).proportion_ci(method="wilson") for row in rows]
            errors = np.abs(np.array([[ci.low, ci.high] for ci in cis]).T - rates)
            ax.errorbar(steps, 100 * rates, yerr=100 * errors, marker=marker, capsize=3, label=f"{name}: {metric}")
    ax.set_ylim(0, 100)
    ax.set_xlabel("step")
    ax.set_ylabel("% of held-out prompts")
    ax.set_title("held-out scores (95% intervals)")
    ax.legend(loc="lower right", fontsize=7)


def plot_training(log_path: Path, png_path: Path, evals: list[dict] | None = None) -> None:
    """Plot loss terms over steps, the share of routing per expert (space and time) and, when the run scored its
    checkpoints, those held-out scores."""
    rows = _rows(log_path)
    if not rows:
        return
    steps = np.array([r["step"] for r in rows])
    fig, axes = plt.subplots(1, 4 if evals else 3, figsize=(20 if evals else 15, 4))
    for key in ("loss", "mse", "edge", "balance"):
        vals = np.array([r[key] for r in rows], dtype=float)
        sm = _smooth(vals)
        axes[0].plot(steps[len(steps) - len(sm) :], sm, label=key)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title("losses (moving average)")
    axes[0].legend(loc="center left")
    if all("lr" in r for r in rows):  # warm-up and cool-down explain bends in the losses
        rate = axes[0].twinx()
        rate.plot(steps, [r["lr"] for r in rows], color="grey", linestyle="--", linewidth=1)
        rate.set_ylim(bottom=0)
        rate.set_ylabel("learning rate (dashed)")
    for ax, key, title in ((axes[1], "space_usage", "Space-MoE"), (axes[2], "time_usage", "Time-MoE")):
        usage = [r[key] for r in rows if r.get(key)]
        if not usage:
            ax.set_title(f"{title}: dense")
            continue
        arr = np.array(usage, dtype=float)
        share = arr / arr.sum(axis=1, keepdims=True).clip(min=1)
        share = np.stack([_smooth(share[:, e]) for e in range(share.shape[1])], axis=1)
        ax.stackplot(np.arange(len(share)), share.T, labels=[f"expert {e}" for e in range(share.shape[1])])
        ax.set_ylim(0, 1)
        ax.set_title(f"{title}: share of routes per expert")
        ax.set_xlabel("step (smoothed)")
        ax.legend(loc="upper right", fontsize=7)
    if evals:
        _plot_evals(axes[3], evals)
        axes[3].set_xlim(0, steps.max() * 1.02)  # the losses' step axis, so the two read side by side
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)
