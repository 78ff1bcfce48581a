"""MoE overhead: RAPHAEL-tiny against its dense baseline of equal active parameters.

Prints JSON: ms per denoising step (one UNet call with CFG, i.e. batch 2B) at batch 1 and 8,
for both models measured side by side in one process, their ratio, and a profile of where the
MoE model spends its extra time. Run: ``python -m bench.moe_overhead`` (``make bench``).
"""

import argparse
import json
import logging
import statistics
import time

import torch

from model.presets import raphael_tiny, raphael_tiny_dense
from model.unet_raphael import RaphaelUNet

logger = logging.getLogger("bench.moe_overhead")


def step_inputs(batch: int, length: int = 32, real: int = 12, size: int = 32, text_dim: int = 384):
    """A CFG step: 2*batch samples, prompts of ``real`` tokens padded to ``length``."""
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(2 * batch, length, dtype=torch.long)
    mask[:, :real] = 1
    return (
        torch.randn(2 * batch, 3, size, size, generator=g),
        torch.full((2 * batch,), 500),
        torch.randn(2 * batch, length, text_dim, generator=g),
        mask,
    )


@torch.no_grad()
def time_models(models: dict[str, RaphaelUNet], batch: int, repeats: int) -> dict[str, float]:
    """Median ms per step, alternating the models so that machine noise hits both alike."""
    inputs = step_inputs(batch)
    for m in models.values():
        m(*inputs)  # warm-up: first-touch allocations
    samples: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, m in models.items():
            t0 = time.perf_counter()
            m(*inputs)
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}


@torch.no_grad()
def moe_profile(model: RaphaelUNet, batch: int) -> dict[str, float]:
    """Share of CPU time per operator group in the MoE model."""
    from torch.profiler import profile

    inputs = step_inputs(batch)
    with profile() as prof:
        model(*inputs)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    return {e.key: round(e.self_cpu_time_total / total, 3) for e in rows}


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {"raphael": raphael_tiny().eval(), "dense": raphael_tiny_dense().eval()}
    result = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "params_m": {k: round(sum(p.numel() for p in m.parameters()) / 1e6, 2) for k, m in models.items()},
        "goal_ratio": 1.15,
    }
    for batch in (1, 8):
        ms = time_models(models, batch, args.repeats)
        result[f"batch{batch}"] = {
            "raphael_ms": round(ms["raphael"], 2),
            "dense_ms": round(ms["dense"], 2),
            "ratio": round(ms["raphael"] / ms["dense"], 3),
        }
    result["raphael_profile_batch8"] = moe_profile(models["raphael"], 8)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
