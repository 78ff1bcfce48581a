"""Batching across users: requests that arrive together share one model run. Prints JSON.

Three measurements of the generation service (bundled model, the app's default steps, guidance and sampler for
it), side by side in one run because this machine is noisy:

- ``single``: one user, one image per request, back to back: the latency of a request alone.
- ``offline_batch``: one request of ``--users`` images at a time: the throughput of a full batch, the ceiling.
- ``concurrent``: ``--users`` users, each asking for one image, back to back from their own threads: the
  service draws the requests that wait together, so throughput should approach the offline batch's.

Goals (issue: batching across users): at 8 users the throughput reaches ≥ 90% of the offline batch-8 throughput,
and p95 latency is ≤ 2× that of one batch-8 request (a request that arrives during a run waits for it, then
shares the next: at most two runs). Run: ``python -m bench.shared_runs`` (``make bench``).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import torch

from app.generation import GenerationRequest, GenerationService
from bench.threads import run_together
from model.pipeline.bundled import DEFAULT_BUNDLE

GOAL_SHARE, GOAL_P95_RATIO = 0.9, 2.0
PROMPTS = [
    "a cat on a blue background",
    "two frogs at the bottom",
    "a rocket on the left and an apple on the right",
    "a heart in the centre on a black background",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_runs(service: GenerationService, users: int, images: int, seconds: float, base: dict[str, Any]) -> dict:
    """``users`` threads each sending requests of ``images`` images back to back for ``seconds``."""
    latencies: list[float] = []
    run_images: list[int] = []
    lock = threading.Lock()

    def user(index: int) -> None:
        end, n = time.perf_counter() + seconds, 0
        while (began := time.perf_counter()) < end:
            prompt = PROMPTS[(index + n) % len(PROMPTS)]
            result = service.run(GenerationRequest(prompt, seed=1000 * index + n, num_images=images, **base))
            with lock:
                latencies.append(time.perf_counter() - began)
                run_images.append(result.provenance["run_images"])
            n += 1

    elapsed = run_together(user, users)
    return {
        "users": users,
        "images_per_request": images,
        "requests": len(latencies),
        "images_per_s": round(len(latencies) * images / elapsed, 3),
        "p50_s": round(percentile(latencies, 0.5), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "mean_images_per_run": round(sum(run_images) / len(run_images), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0, help="each measurement's length")
    parser.add_argument("--torch-threads", type=int, default=None)
    args = parser.parse_args()
    service = GenerationService(args.model, device="cpu", torch_threads=args.torch_threads)
    base = {
        "steps": service.call_default("num_inference_steps") or 25,
        "cfg": service.call_default("guidance_scale") or 2.0,
    }
    service.run(GenerationRequest(PROMPTS[0], seed=0, num_images=args.users, **base))  # warm-up
    single = timed_runs(service, 1, 1, args.seconds, base)
    offline = timed_runs(service, 1, args.users, args.seconds, base)
    concurrent = timed_runs(service, args.users, 1, args.seconds, base)
    share = concurrent["images_per_s"] / offline["images_per_s"]
    p95_ratio = concurrent["p95_s"] / offline["p50_s"]
    result = {
        "benchmark": "shared_runs",
        "date": time.strftime("%Y-%m-%d"),
        "model": service.model_version,
        "settings": {**base, "sampler": "DDIM", "torch_threads": torch.get_num_threads()},
        "single": single,
        "offline_batch": offline,
        "concurrent": concurrent,
        "throughput_share_of_offline": round(share, 3),
        "p95_over_one_batch_request": round(p95_ratio, 2),
        "goals": {"throughput_share_of_offline": GOAL_SHARE, "p95_over_one_batch_request": GOAL_P95_RATIO},
        "goal_met": share >= GOAL_SHARE and p95_ratio <= GOAL_P95_RATIO,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
