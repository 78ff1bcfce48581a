"""How many votes the feedback store and the light vote route acknowledge per second, and how fast.

Prints JSON. Three figures, side by side in one run because this machine is noisy:

- ``raw_sqlite``: one-row upserts, each its own ``BEGIN IMMEDIATE … COMMIT``, with the store's pragmas: what
  SQLite itself allows on this disk and CPU, the ceiling the store is measured against.
- ``store``: ``FeedbackStore.vote`` from one thread and from ``--clients`` threads at once (as the server's
  request threads call it), on SQLite and, where PostgreSQL is installed, on a throwaway cluster. A vote counts
  once its call returned, which is after its commit.
- ``http``: the real server (``python app.py``, bundled model) on a loopback port, and 1, 4 and ``--clients``
  clients, each a rater with a signed token, sending ``POST /api/vote`` back to back: acknowledged votes per
  second and the latency of each.

Goals (issue: votes at 300/s): ≥ 300 acknowledged votes/s over HTTP at 16 clients with p99 < 100 ms, and the
store at ≥ 10% of raw SQLite's one-row transactions per second. Run: ``python -m bench.vote_throughput``
(``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from gradio_client import Client
from PIL import Image

from app.rater_cookie import COOKIE
from app.served import ServedApp
from app.vote_route import VOTE_PATH
from bench.threads import run_together
from feedback.engine import SQLITE_PRAGMAS
from feedback.store import FeedbackStore

N_IMAGES = 64
GOAL_VOTES_PER_S, GOAL_P99_S, GOAL_STORE_SHARE = 300, 0.1, 0.10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def summary(count: int, seconds: float, latencies: list[float], errors: list[str]) -> dict[str, Any]:
    return {
        "votes": count,
        "votes_per_s": round(count / seconds, 1),
        "p50_ms": round(1000 * percentile(latencies, 0.5), 2),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 2),
        "errors": len(errors),
        "first_errors": sorted(set(errors))[:3],
    }


def raw_sqlite(folder: Path, seconds: float) -> dict[str, Any]:
    """One-row upsert transactions with the store's pragmas, back to back from one thread."""
    db = sqlite3.connect(folder / "raw.db", isolation_level=None)
    for pragma in (*SQLITE_PRAGMAS, "PRAGMA synchronous=NORMAL"):
        db.execute(pragma)
    db.execute("CREATE TABLE votes (rater_id INTEGER, image_id TEXT, value INTEGER, UNIQUE (rater_id, image_id))")
    upsert = "INSERT INTO votes VALUES (?, ?, ?) ON CONFLICT (rater_id, image_id) DO UPDATE SET value = excluded.value"
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        db.execute("BEGIN IMMEDIATE")
        db.execute(upsert, (count % 16, f"image-{count % N_IMAGES}", 1 if count // N_IMAGES % 2 else -1))
        db.execute("COMMIT")
        count += 1
    db.close()
    return {"transactions": count, "transactions_per_s": round(count / elapsed, 1)}


def provenance() -> dict[str, Any]:
    return {
        "prompt": "a cat on a blue background", "seed": 1, "steps": 2, "cfg": 1.0, "sampler": "ddim",
        "width": 8, "height": 8, "model_name": "bench", "model_hash": "0" * 64, "app_version": "bench",
    }  # fmt: skip


def record_images(store: FeedbackStore) -> list[str]:
    """``N_IMAGES`` distinct stored images of one generation to vote on, without running a model."""
    owner = store.rater("bench-owner")
    images = [Image.new("RGB", (8, 8), (i, 255 - i, 3 * i % 256)) for i in range(N_IMAGES)]
    return store.record_generation(owner, provenance(), images).image_ids


def store_votes(store: FeedbackStore, image_ids: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads, each its own rater, calling ``store.vote`` back to back (every vote a change)."""
    raters = [store.rater(f"bench-{clients}-{i}") for i in range(clients)]
    latencies: list[float] = []
    errors: list[str] = []
    counts = [0] * clients
    lock = threading.Lock()

    def run(index: int) -> None:
        end, n, own = time.perf_counter() + seconds, 0, []
        while (began := time.perf_counter()) < end:
            value = 1 if (n // len(image_ids) + index) % 2 == 0 else -1
            try:
                store.vote(raters[index], image_ids[(index + n) % len(image_ids)], value)
                own.append(time.perf_counter() - began)
            except ValueError as err:
                errors.append(str(err))
            n += 1
        counts[index] = len(own)
        with lock:
            latencies.extend(own)

    elapsed = run_together(run, clients)
    return {"clients": clients, **summary(sum(counts), elapsed, latencies, errors)}


def store_figures(url: str, image_dir: Path, clients: int, seconds: float) -> dict[str, Any]:
    with FeedbackStore(url, image_dir) as store:
        image_ids = record_images(store)
        return {f"threads_{n}": store_votes(store, image_ids, n, seconds) for n in sorted({1, clients})}


async def http_votes(url: str, tokens: list[str], image_ids: list[str], seconds: float) -> dict[str, Any]:
    """One coroutine per token, each posting votes back to back for ``seconds``."""
    latencies: list[float] = []
    errors: list[str] = []

    async def run(index: int, token: str) -> int:
        done = 0
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=url, cookies={COOKIE: token}, timeout=30, limits=limits) as http:
            end, n = time.perf_counter() + seconds, 0
            while (began := time.perf_counter()) < end:
                vote = {"image_id": image_ids[(index + n) % len(image_ids)], "value": 1 if n % 2 else -1}
                answer = await http.post(VOTE_PATH, json=vote)
                if answer.status_code == 200:
                    latencies.append(time.perf_counter() - began)
                    done += 1
                else:
                    errors.append(f"{answer.status_code}: {answer.text[:120]}")
                n += 1
        return done

    began = time.perf_counter()
    counts = await asyncio.gather(*(run(i, token) for i, token in enumerate(tokens)))
    return {"clients": len(tokens), **summary(sum(counts), time.perf_counter() - began, latencies, errors)}


def http_figures(folder: Path, clients: int, seconds: float, model: str | None) -> dict[str, Any]:
    db_url, image_dir = f"sqlite:///{folder / 'served.db'}", folder / "served-images"
    with FeedbackStore(db_url, image_dir) as store:
        image_ids = record_images(store)
    args = ["--db", db_url, "--image-dir", str(image_dir), "--device", "cpu", *(["--model", model] if model else [])]
    env = {
        "GRADIO_TEMP_DIR": str(folder / "gradio"),
        "RAPHAEL_TORCH_THREADS": "1",
        "RAPHAEL_VOTES_PER_MINUTE": "1000000",  # the limits are not what is measured here
        "RAPHAEL_VOTES_PER_MINUTE_PER_IP": "1000000",
        "RAPHAEL_NEW_RATERS_PER_HOUR": "1000",
    }
    with ServedApp(args, folder / "app.log", env) as url:
        issuer = Client(url, verbose=False)
        tokens = [issuer.predict(api_name="/rater_token")["token"] for _ in range(clients)]
        issuer.close()
        asyncio.run(http_votes(url, tokens[:1], image_ids, 2.0))  # warm-up: first connections, first queries
        return {
            f"clients_{n}": asyncio.run(http_votes(url, tokens[:n], image_ids, seconds))
            for n in sorted({1, 4, clients})
        }


def postgres(run: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """``run`` on a database of a throwaway PostgreSQL cluster, or why there is none."""
    try:
        from tests.fixtures.postgres import ClusterError, throwaway_postgres
    except ImportError as err:  # the tests folder is not shipped with every install
        return {"skipped": str(err)}
    try:
        with throwaway_postgres() as server:
            with server.admin() as admin:
                admin.execute('CREATE DATABASE "bench"')
            return run(server.url("bench"))
    except ClusterError as err:
        return {"skipped": str(err).splitlines()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0, help="each measurement's length")
    parser.add_argument("--model", help="pipeline folder for the served app (default: the bundled model)")
    parser.add_argument("--skip-http", action="store_true", help="only the store's figures")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="raphael-votes-") as tmp:
        folder = Path(tmp)
        raw = raw_sqlite(folder, args.seconds)
        sqlite_store = store_figures(f"sqlite:///{folder / 'store.db'}", folder / "images", args.clients, args.seconds)
        pg_store = postgres(lambda url: store_figures(url, folder / "pg-images", args.clients, args.seconds))
        http = None if args.skip_http else http_figures(folder, args.clients, args.seconds, args.model)
    best = max(figure["votes_per_s"] for figure in sqlite_store.values())
    result: dict[str, Any] = {
        "benchmark": "vote_throughput",
        "date": time.strftime("%Y-%m-%d"),
        "raw_sqlite": raw,
        "store_sqlite": sqlite_store,
        "store_postgres": pg_store,
        "store_share_of_raw_sqlite": round(best / raw["transactions_per_s"], 4),
        "http_sqlite": http,
        "goals": {
            "http_votes_per_s": GOAL_VOTES_PER_S,
            "http_p99_ms": 1000 * GOAL_P99_S,
            "store_share_of_raw_sqlite": GOAL_STORE_SHARE,
        },
    }
    if http is not None:
        top = http[f"clients_{args.clients}"]
        result["http_goal_met"] = top["votes_per_s"] >= GOAL_VOTES_PER_S and top["p99_ms"] < 1000 * GOAL_P99_S
    result["store_goal_met"] = result["store_share_of_raw_sqlite"] >= GOAL_STORE_SHARE
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
