"""Export throughput: N votes with their images to Pick-a-Pic and KTO Parquet, time and peak memory per size.

Prints JSON. The goal (issue 31, "Export"): 100,000 votes with their images export to Pick-a-Pic Parquet in at most
30 s on the 2-core CPU, in memory that does not grow with the dataset. Each export runs in its own process (as
``make export`` does): the JSON gives the export's own wall time and CPU time (its JPEG worker processes included),
the whole process's wall time (imports included), and its peak RSS above the RSS it had just before the export
(imports and the open store; the peak is reset there), with the largest JPEG worker's peak beside it (forked, so
most of that is pages shared with the parent). Two sizes (20,000 and 100,000 votes by default) show whether the
growth follows the dataset. The machine's 1-minute load average before each export says how busy it was.

The fixture is a SQLite feedback database like the app's: raters who generate batches of 4 images (32×32 PNGs with
the app's provenance, content-addressed, a base colour plus noise so each is distinct, each with the JPEG copy the
image store keeps beside it; the JSON gives what making that copy cost per image, the work a stored image now does
once instead of every export) from a pool of prompts,
vote 👍/👎 on each image they made, and compare a tenth as many pairs of their images. The rows and files are those
:meth:`FeedbackStore.record_generation`, ``vote`` and ``compare`` make, but inserted in bulk with SQLAlchemy Core
(one transaction per click would take most of an hour here). ``--cache DIR`` keeps built fixtures for later runs;
otherwise everything lives in a temporary folder that is removed at the end. ``--no-copies`` builds the images
without their JPEG copies, as a store written before the copies were kept (never cached: its first export makes
them). Run:
``python -m bench.export_throughput`` (``--sizes 20000`` for a quick look); keep the machine otherwise quiet.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

GOAL_SECONDS, GOAL_VOTES = 30.0, 100_000
IMAGES_PER_GENERATION, VOTES_PER_RATER, PROMPTS, SIZE = 4, 48, 400, 32
LIKE_RATE, COMPARISONS_PER_VOTE = 0.55, 0.1
FIXTURE_VERSION = 2  # bump when the fixture changes, so a cache is rebuilt
EXPORTS = ("pickapic", "kto")
ROOT = Path(__file__).resolve().parents[1]


def build_fixture(folder: Path, votes: int, seed: int = 0, copies: bool = True) -> dict[str, Any]:
    """A feedback database in ``folder`` (feedback.db, images/) with ``votes`` votes; returns what it holds.

    ``copies``: each PNG gets its JPEG copy, as :meth:`feedback.images.ImageFiles.save` writes it.
    """
    import numpy as np
    from PIL import Image as PILImage
    from sqlalchemy import insert

    from feedback.engine import make_engine
    from feedback.images import encode_jpeg, encode_png, image_provenance
    from feedback.models import Comparison, Generation, Image, Rater, Vote, VoteEvent
    from feedback.store import FeedbackStore

    started = time.perf_counter()
    url, image_dir = f"sqlite:///{folder / 'feedback.db'}", folder / "images"
    FeedbackStore(url, image_dir).close()  # the schema, by the store's own migrations
    rng, pick = np.random.default_rng(seed), random.Random(seed)
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
    things = ["apple", "cat", "car", "tree", "house", "dog", "star", "moon", "fish", "flower"]
    places = ["on a table", "in a field", "at night", "on the beach", "in the snow"]
    prompts = [f"a {c} {t} {p}" for c in colours for t in things for p in places][:PROMPTS]
    scheduler_config = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "clip_sample": False}
    scheduler_config |= {"prediction_type": "v_prediction", "set_alpha_to_one": False, "steps_offset": 1}

    n_raters = max(1, votes // VOTES_PER_RATER)
    raters = [{"id": i + 1, "anon_id": f"bench-{i}"} for i in range(n_raters)]
    generations, images, vote_rows, comparisons = [], [], [], []
    copy_seconds = 0.0
    for g in range(-(-votes // IMAGES_PER_GENERATION)):
        rater_id = g % n_raters + 1
        prompt, seed_g = pick.choice(prompts), pick.randrange(2**31)
        batch = {
            "prompt": prompt, "enhanced_prompt": None, "model_prompt": prompt, "negative_prompt": "",
            "seed": seed_g, "steps": 25, "cfg": 3.0, "sampler": "ddim", "width": SIZE, "height": SIZE,
            "model_name": "raphael-tiny", "model_hash": "a" * 64, "app_version": "0.1.0", "category": "bench",
        }  # fmt: skip
        n = min(IMAGES_PER_GENERATION, votes - len(images))
        extra = {
            "seeds": [seed_g + i for i in range(n)], "scheduler": "DDIMScheduler",
            "scheduler_config": scheduler_config, "aspect": "1:1", "num_images": n, "device": "cpu",
        }  # fmt: skip
        generation_id = str(uuid.uuid4())
        generations.append({**batch, "id": generation_id, "rater_id": rater_id, "extra": extra})
        base = rng.integers(0, 256, 3)
        ids = []
        for index in range(n):
            pixels = np.clip(base + rng.integers(-12, 13, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            picture = PILImage.fromarray(pixels)
            data = encode_png(picture, image_provenance({**batch, **extra}, index))
            digest = hashlib.sha256(data).hexdigest()
            relpath = f"{digest[:2]}/{digest[2:]}.png"
            (image_dir / digest[:2]).mkdir(exist_ok=True)
            (image_dir / relpath).write_bytes(data)
            if copies:
                copy_started = time.perf_counter()
                (image_dir / relpath).with_suffix(".jpg").write_bytes(encode_jpeg(picture))
                copy_seconds += time.perf_counter() - copy_started
            image_id = str(uuid.uuid4())
            ids.append(image_id)
            images.append(
                {"id": image_id, "generation_id": generation_id, "batch_index": index, "sha256": digest,
                 "path": relpath, "width": SIZE, "height": SIZE}
            )  # fmt: skip
            value = 1 if pick.random() < LIKE_RATE else -1
            vote_rows.append({"rater_id": rater_id, "image_id": image_id, "value": value, "comment": None})
        if len(ids) > 1 and pick.random() < COMPARISONS_PER_VOTE * IMAGES_PER_GENERATION:
            left, right = pick.sample(ids, 2)
            outcome = pick.choice(["left", "right", "tie", "both_bad"])
            comparisons.append(
                {"rater_id": rater_id, "left_image_id": left, "right_image_id": right, "outcome": outcome}
            )
    engine = make_engine(url)
    with engine.begin() as connection:
        for model, rows in [
            (Rater, raters), (Generation, generations), (Image, images), (Vote, vote_rows),
            (VoteEvent, vote_rows), (Comparison, comparisons),
        ]:  # fmt: skip
            for start in range(0, len(rows), 10_000):
                connection.execute(insert(model), rows[start : start + 10_000])
    engine.dispose()
    with closing(sqlite3.connect(folder / "feedback.db")) as connection:  # an export opens a database, not a WAL
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {
        "votes": len(vote_rows),
        "images": len(images),
        "generations": len(generations),
        "raters": n_raters,
        "comparisons": len(comparisons),
        "database_mib": round((folder / "feedback.db").stat().st_size / 2**20, 1),
        "jpeg_copies": copies,
        "jpeg_copy_ms_per_image": round(1000 * copy_seconds / len(images), 3) if copies else None,
        "build_s": round(time.perf_counter() - started, 1),
    }


def fixture(votes: int, cache: Path | None, scratch: Path, copies: bool = True) -> tuple[Path, dict[str, Any]]:
    """A built fixture of ``votes`` votes: from the cache when it has one, else built there (or in ``scratch``).

    A fixture without JPEG copies is never taken from or left in the cache: its first export writes them.
    """
    cache = cache if copies else None
    folder = (cache or scratch) / f"votes-{votes}-v{FIXTURE_VERSION}{'' if copies else '-no-copies'}"
    manifest = folder / "fixture.json"
    if manifest.exists():
        return folder, {**json.loads(manifest.read_text()), "cached": True}
    building = folder.with_name(folder.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    info = build_fixture(building, votes, copies=copies)
    (building / "fixture.json").write_text(json.dumps(info))
    shutil.rmtree(folder, ignore_errors=True)
    building.rename(folder)
    return folder, {**info, "cached": False}


def measure(folder: Path, fmt: str, out: Path, timeout: float) -> dict[str, Any]:
    """One export in a child process (``--child``): its times, rows and peak RSS above the RSS before it began."""
    command = [sys.executable, "-m", "bench.export_throughput", "--child", fmt, str(folder), str(out)]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        stdout, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - started
    if process.returncode != 0:
        return {"error": f"exit code {process.returncode}"}
    child = json.loads(stdout.strip().splitlines()[-1])
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {
        "export_wall_s": round(child["wall_s"], 2),
        "export_cpu_s": round(child["cpu_s"], 2),  # this process and its JPEG workers
        "process_wall_s": round(wall, 2),
        "rows": child["rows"],
        "rss_before_export_mib": round(child["rss_before_kib"] / 1024, 1),
        "peak_rss_mib": round(child["peak_rss_kib"] / 1024, 1),
        "rss_growth_mib": round((child["peak_rss_kib"] - child["rss_before_kib"]) / 1024, 1),
        "jpeg_workers": child["jpeg_workers"],
        "jpeg_worker_peak_rss_mib": round(child["worker_peak_rss_kib"] / 1024, 1),
        "output_mib": round(size / 2**20, 1),
        "load_average_1min_before": round(load_before, 2),
    }


def memory_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS: now; VmHWM: the peak since the last reset)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:"))


def child(fmt: str, folder: str, out: str) -> None:
    """Runs in the child: one export as ``python -m feedback.export --format FMT --as parquet`` makes it."""
    import datasets

    from feedback.export import JPEG_WORKERS, export
    from feedback.store import FeedbackStore

    datasets.disable_progress_bars()
    with FeedbackStore(f"sqlite:///{Path(folder) / 'feedback.db'}", Path(folder) / "images") as store:
        before = memory_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
        wall, cpu = time.perf_counter(), time.process_time()
        result = export(store, fmt, out, "parquet")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the JPEG workers, if any (forked: shared pages count)
    line = {"wall_s": wall, "cpu_s": cpu + workers.ru_utime + workers.ru_stime, "rows": result.rows}
    line["jpeg_workers"] = min(JPEG_WORKERS, len(os.sched_getaffinity(0))) if fmt == "pickapic" else 0
    line |= {"rss_before_kib": before, "peak_rss_kib": memory_kib("VmHWM"), "worker_peak_rss_kib": workers.ru_maxrss}
    print(json.dumps(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, GOAL_VOTES], help="votes per fixture")
    parser.add_argument("--formats", nargs="+", default=list(EXPORTS), choices=EXPORTS)
    parser.add_argument("--cache", type=Path, help="folder that keeps built fixtures between runs")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one export may take")
    parser.add_argument("--no-copies", action="store_true", help="images without their JPEG copies (an older store)")
    parser.add_argument("--child", nargs=3, metavar=("FORMAT", "FIXTURE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    result: dict[str, Any] = {"cpu_count": os.cpu_count(), "goal": f"{GOAL_VOTES} votes to pickapic parquet"}
    result["goal"] += f" in <= {GOAL_SECONDS:.0f} s, memory flat in the size"
    with tempfile.TemporaryDirectory(prefix="export-bench-") as scratch:
        for votes in sorted(args.sizes):
            folder, info = fixture(votes, args.cache, Path(scratch), copies=not args.no_copies)
            entry: dict[str, Any] = {"fixture": info}
            for fmt in args.formats:
                out = Path(scratch) / f"out-{votes}-{fmt}"
                entry[f"{fmt}_parquet"] = measure(folder, fmt, out, args.timeout)
                shutil.rmtree(out, ignore_errors=True)
            result[str(votes)] = entry
            if args.cache is None or args.no_copies:
                shutil.rmtree(folder, ignore_errors=True)
    sizes = [str(v) for v in sorted(args.sizes)]
    largest = result[sizes[-1]].get("pickapic_parquet", {})
    if int(sizes[-1]) >= GOAL_VOTES and "export_wall_s" in largest:
        result["goal_seconds_met"] = largest["export_wall_s"] <= GOAL_SECONDS
    if len(sizes) > 1:
        growth = {
            fmt: [result[size].get(f"{fmt}_parquet", {}).get("rss_growth_mib") for size in sizes]
            for fmt in args.formats
        }
        result["rss_growth_mib_by_size"] = {"sizes": sizes, **growth}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
