"""MoE overhead: RAPHAEL-tiny against its dense baseline of equal active parameters.

Prints JSON: ms per denoising step (one UNet call with CFG, i.e. batch 2B) at batch 1 and 8,
for both models measured side by side in one process, their ratio (also side by side under
``ratio``, with the quartiles of the per-repeat ratios: a busy machine shows there), the
floating-point operations and the operators dispatched in one step (what "equal compute" and
"equal overhead" mean apart from the machine), and a profile of where the MoE model spends its
extra time. Run: ``python -m bench.moe_overhead`` (``make bench``);
``--device cuda`` measures on a GPU, where the profile reads GPU time instead of CPU time.

``--dispatch`` names the MoE dispatches to measure (``RaphaelUNet.set_moe_dispatch``): by default both
on a GPU, and "grouped" on a CPU, where "dense" is slower. The ``raphael_*`` fields measure the first one;
each further one is the same weights as ``raphael_<dispatch>_dispatch`` beside them, timed in the same
alternation. (``dense`` alone names the dense-FFN baseline, not a dispatch.)
"""

import argparse
import copy
import json
import logging
import statistics
import time
from functools import cache

import torch

from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.pipeline.text_encoder import encode_text, load_text_encoder
from model.unet.moe import MOE_DISPATCH
from model.unet.presets import raphael_tiny, raphael_tiny_dense
from model.unet.unet_raphael import RaphaelUNet

logger = logging.getLogger("bench.moe_overhead")


@cache
def step_inputs(batch: int, device: str = "cpu", size: int = 32):
    """A CFG step: 2*batch noisy samples with real emoji-scene captions through the real text encoder."""
    g = torch.Generator().manual_seed(0)
    data = EmojiScenes(SceneConfig(), seed=7)
    captions = [data.sample(i)[1] for i in range(batch)]
    tokenizer, encoder = load_text_encoder()
    text, mask = encode_text(tokenizer, encoder, [""] * batch + captions)  # (2B, L, D), (2B, L)
    inputs = torch.randn(2 * batch, 3, size, size, generator=g), torch.full((2 * batch,), 500), text, mask
    return tuple(x.to(device) for x in inputs)


def on_gpu(device: str) -> bool:
    return torch.device(device).type == "cuda"


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers the kernels and not only their launch."""
    if on_gpu(device):
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_models(models: dict[str, RaphaelUNet], batch: int, repeats: int, device: str) -> dict[str, list[float]]:
    """ms per step of every repeat, alternating the models so that machine noise hits both alike."""
    inputs = step_inputs(batch, device)
    for m in models.values():
        m(*inputs)  # warm-up: first-touch allocations
    samples: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, m in models.items():
            synchronize(device)
            t0 = time.perf_counter()
            m(*inputs)
            synchronize(device)
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return samples


def further_dispatches(names) -> list[str]:
    """The models besides "raphael" and "dense": RAPHAEL's weights again, under a further MoE dispatch."""
    return [name for name in names if name not in ("raphael", "dense")]


def versus_dense(times: list[float], dense: list[float]) -> dict[str, float | list[float]]:
    """Ratio of the medians, and the quartiles of the ratios of the repeats' alternating pairs."""
    paired = [t / d for t, d in zip(times, dense)]
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
    return {
        "ratio": round(statistics.median(times) / statistics.median(dense), 3),
        "paired_ratio_quartiles": [round(q, 3) for q in quartiles],
    }


def timing_summary(samples: dict[str, list[float]]) -> dict[str, float | list[float]]:
    """Median ms of each model and its ratios to the dense baseline; a further dispatch's fields carry its name."""
    dense = samples["dense"]
    summary = {
        "raphael_ms": round(statistics.median(samples["raphael"]), 2),
        "dense_ms": round(statistics.median(dense), 2),
        **versus_dense(samples["raphael"], dense),
    }
    for name in further_dispatches(samples):
        summary[f"{name}_ms"] = round(statistics.median(samples[name]), 2)
        summary |= {f"{name}_{key}": value for key, value in versus_dense(samples[name], dense).items()}
    return summary


@torch.no_grad()
def region_coverage(model: RaphaelUNet, batch: int, device: str) -> dict[str, float]:
    """How much of the image the Space-MoE regions cover: the main cost driver of the efficient form.

    Each used expert runs on every position that one of its tokens covers, so the FFN work is
    ``mean distinct experts per position`` times that of the dense FFN.
    """
    out = model(*step_inputs(batch, device), return_routing=True).routing
    coverage, experts_per_position = [], []
    for masks, experts in zip(out.token_masks, out.space_experts):
        real = masks.sum(1) > 0  # (B, L) tokens with a region
        coverage.append((masks.mean(1)[real]).mean().item())
        one_hot = torch.nn.functional.one_hot(experts, model.config.num_space_experts).float()  # (B, L, E)
        per_expert = torch.einsum("bnl,ble->bne", masks, one_hot)  # (B, N, E)
        experts_per_position.append((per_expert > 0).float().sum(-1).mean().item())
    return {
        "mean_region_fraction_per_token": round(statistics.mean(coverage), 3),
        "mean_distinct_experts_per_position": round(statistics.mean(experts_per_position), 2),
    }


@torch.no_grad()
def step_flops(models: dict[str, RaphaelUNet], batch: int, device: str) -> dict[str, float]:
    """GFLOPs of one CFG step per model, as executed (matmuls, convolutions, attention), and their ratio.

    Counted on the operators that run, so the Space-MoE's per-region expert work is included as
    implemented; equal active parameters alone would call the two models equal.
    """
    from torch.utils.flop_counter import FlopCounterMode

    inputs = step_inputs(batch, device)
    gflops = {}
    for name, model in models.items():
        with FlopCounterMode(display=False) as counter:
            model(*inputs)
        gflops[name] = counter.get_total_flops() / 1e9
    summary = {
        "raphael_gflops": round(gflops["raphael"], 3),
        "dense_gflops": round(gflops["dense"], 3),
        "ratio": round(gflops["raphael"] / gflops["dense"], 3),
    }
    for name in further_dispatches(gflops):
        summary |= {
            f"{name}_gflops": round(gflops[name], 3),
            f"{name}_ratio": round(gflops[name] / gflops["dense"], 3),
        }
    return summary


@torch.no_grad()
def step_operators(models: dict[str, RaphaelUNet], batch: int, device: str) -> dict[str, int | float]:
    """ATen operators dispatched in one CFG step per model: the per-call overhead, which no FLOP count sees.

    At batch 1 the step is mostly small operators, so their number, unlike a time, holds still on a
    busy machine.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += 1
            return func(*args, **(kwargs or {}))

    inputs = step_inputs(batch, device)
    counts = {}
    for name, model in models.items():
        with Count() as counter:
            model(*inputs)
        counts[name] = counter.calls
    ratios = {f"{name}_ratio": round(counts[name] / counts["dense"], 3) for name in further_dispatches(counts)}
    return {**counts, "ratio": round(counts["raphael"] / counts["dense"], 3), **ratios}


@torch.no_grad()
def moe_profile(model: RaphaelUNet, batch: int, device: str) -> dict[str, float]:
    """Share of time per operator in the MoE model: CPU time on a CPU, GPU kernel time on a GPU."""
    from torch.profiler import ProfilerActivity, profile

    gpu = on_gpu(device)
    inputs = step_inputs(batch, device)
    with profile(activities=[ProfilerActivity.CUDA if gpu else ProfilerActivity.CPU]) as prof:
        model(*inputs)
        synchronize(device)
    own_time = (lambda e: e.self_device_time_total) if gpu else (lambda e: e.self_cpu_time_total)
    events = prof.key_averages()
    rows = sorted(events, key=own_time, reverse=True)[:8]
    total = sum(own_time(e) for e in events)
    return {e.key: round(own_time(e) / total, 3) for e in rows}


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--model", default=None, help="bundled pipeline folder whose trained UNet to measure")
    parser.add_argument("--device", default="cpu", help="torch device to measure on, e.g. cuda")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument(
        "--dispatch",
        nargs="+",
        choices=MOE_DISPATCH,
        default=None,
        help="MoE dispatches to measure, the first in the raphael_* fields (default: all on a GPU, grouped on a CPU)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dispatches = list(dict.fromkeys(args.dispatch or (MOE_DISPATCH if on_gpu(args.device) else MOE_DISPATCH[:1])))
    torch.manual_seed(0)
    raphael = RaphaelUNet.from_pretrained(f"{args.model}/unet").float() if args.model else raphael_tiny()
    models = {"raphael": raphael.eval().to(args.device), "dense": raphael_tiny_dense().eval().to(args.device)}
    for mode in dispatches[1:]:
        models[f"raphael_{mode}_dispatch"] = copy.deepcopy(models["raphael"])
    for name, mode in zip(["raphael", *further_dispatches(models)], dispatches):
        models[name].set_moe_dispatch(mode)
    result = {
        "device": torch.cuda.get_device_name(args.device) if on_gpu(args.device) else args.device,
        "threads": torch.get_num_threads(),
        "params_m": {k: round(sum(p.numel() for p in m.parameters()) / 1e6, 2) for k, m in models.items()},
        "goal_ratio": 1.15,
        "dispatch": dispatches,
    }
    for batch in (1, 8):
        result[f"batch{batch}"] = timing_summary(time_models(models, batch, args.repeats, args.device))
    result["ratio"] = {f"batch{batch}": result[f"batch{batch}"]["ratio"] for batch in (1, 8)}
    result["flops_batch8"] = step_flops(models, 8, args.device)
    result["operators_batch1"] = step_operators(models, 1, args.device)
    result["space_moe_regions"] = region_coverage(models["raphael"], 8, args.device)
    result["raphael_profile_batch8"] = moe_profile(models["raphael"], 8, args.device)
    for name in further_dispatches(models):
        result[f"{name}_profile_batch8"] = moe_profile(models[name], 8, args.device)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
