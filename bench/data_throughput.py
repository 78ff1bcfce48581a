"""Emoji-scenes generator throughput: samples per second on one core, per aspect bucket and size.

Prints JSON. The generator feeds training on the same cores as the model, so it must stay far
ahead of it: the goal is 1,000 samples/s on one core at the training size (32 px). Sprite caches
are warmed first, as they are after a training run's first batches. Run:
``python -m bench.data_throughput`` (``make bench``); keep the machine otherwise quiet.
"""

import argparse
import json
import os
import statistics
import time

from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.pipeline.buckets import ASPECT_BUCKETS

GOAL_SAMPLES_PER_S = 1000


def samples_per_second(data: EmojiScenes, bucket: str, batches: int, batch_size: int) -> float:
    """Median rate over ``batches`` batches of one bucket, each a fresh index (new scenes)."""
    data.batch(0, batch_size, bucket)  # warm the sprite caches for this size
    rates = []
    for index in range(1, batches + 1):
        t0 = time.perf_counter()
        data.batch(index, batch_size, bucket)
        rates.append(batch_size / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    result: dict = {"cpu_count": os.cpu_count(), "process": "one (the generator is single-threaded)"}
    for size in args.sizes:
        data = EmojiScenes(SceneConfig(sample_size=size), seed=0)
        rates = {
            bucket: round(samples_per_second(data, bucket, args.batches, args.batch_size)) for bucket in ASPECT_BUCKETS
        }
        result[f"{size}px"] = {"samples_per_s": rates, "slowest": min(rates.values())}
    result["goal_samples_per_s_at_32px"] = GOAL_SAMPLES_PER_S
    result["goal_met"] = result["32px"]["slowest"] >= GOAL_SAMPLES_PER_S if "32px" in result else None
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
