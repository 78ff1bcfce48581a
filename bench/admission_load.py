"""Votes under a generation flood: one client queues 100 generations while 16 raters vote.

Prints JSON. The real server (``python app.py``, the bundled model unless ``--model``) runs on a
loopback port behind a trusted "proxy" (this script), so each simulated client has an address of
its own in X-Forwarded-For, as people behind a reverse proxy do. The raters vote through both
doors, Gradio's ``/vote`` endpoint (gradio_client) and the light ``POST /api/vote`` route: first
alone (the baseline), then while the flooder's 100 generations arrive at once. The goal: every vote
is acknowledged, with p99 under 500 ms, and the flood is answered with "busy, try again in N s"
rather than filling the queue. Run: ``python -m bench.admission_load`` (``make bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from gradio_client import Client
from gradio_client.exceptions import AppError

from app.rater_cookie import COOKIE
from app.served import ServedApp
from app.vote_route import VOTE_PATH

GOAL_P99_S = 0.5
DOORS = ("light", "gradio")  # POST /api/vote, and Gradio's /vote through gradio_client
FLOOD_STEPS, FLOOD_IMAGES = 50, 8  # the most one request may ask for (400 image-steps)


class Voter:
    """One rater at ``address``, with a token the server signed, voting through either door."""

    def __init__(self, url: str, address: str) -> None:
        headers = {"X-Forwarded-For": address}
        token = Client(url, verbose=False, headers=headers).predict(api_name="/rater_token")["token"]
        headers["Cookie"] = f"{COOKIE}={token}"
        self.gradio = Client(url, verbose=False, headers=headers)
        self.http = httpx.Client(base_url=url, headers=headers, timeout=30)

    def vote(self, door: str, image_id: str, value: int) -> None:
        if door == "gradio":
            self.gradio.predict(image_id, value, "", api_name="/vote")
            return
        answer = self.http.post(VOTE_PATH, json={"image_id": image_id, "value": value})
        if answer.status_code != 200:
            raise ValueError(f"{answer.status_code}: {answer.json()['detail']}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def vote_for(voter: Voter, door: str, image_id: str, seconds: float, interval_s: float, out: dict[str, list]) -> None:
    """Vote 👍/👎 in turn on ``image_id`` every ``interval_s`` for ``seconds``; keep each latency or error."""
    end, value = time.monotonic() + seconds, 1
    while time.monotonic() < end:
        started = time.perf_counter()
        try:
            voter.vote(door, image_id, value)
            out["latency"].append(time.perf_counter() - started)
        except (AppError, OSError, ValueError) as err:
            out["errors"].append(str(err)[:200])
        value = -value
        time.sleep(max(0.0, interval_s - (time.perf_counter() - started)))


def vote_round(
    voters: list[Voter], door: str, image_ids: list[str], seconds: float, interval_s: float
) -> dict[str, Any]:
    out: dict[str, list] = {"latency": [], "errors": []}
    threads = [
        threading.Thread(target=vote_for, args=(voter, door, image_id, seconds, interval_s, out))
        for voter, image_id in zip(voters, image_ids, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latency = out["latency"]
    return {
        "votes_acknowledged": len(latency),
        "votes_failed": len(out["errors"]),
        "errors": sorted(set(out["errors"]))[:5],
        "votes_per_s": round(len(latency) / seconds, 1),
        "p50_ms": round(1000 * statistics.median(latency), 1) if latency else None,
        "p99_ms": round(1000 * percentile(latency, 0.99), 1) if latency else None,
    }


def flood(url: str, n: int, prompt: str, outcome: dict[str, Any]) -> None:
    """``n`` generations at once from one address; count what was admitted and what was told to wait."""
    flooder = Voter(url, "10.66.0.1").gradio
    jobs = [
        flooder.submit(prompt, "", "", FLOOD_STEPS, 7, -1, FLOOD_IMAGES, "1:1", "DDIM", api_name="/generate")
        for _ in range(n)
    ]
    answers: list[str] = []
    for job in jobs:
        try:
            job.result()
            answers.append("generated")
        except AppError as err:
            message = str(err)
            if "try again in about" in message:
                answers.append("busy")
            elif "please wait" in message:
                answers.append("rate-limited")
            else:
                answers.append(f"error: {message[:120]}")
        except Exception as err:  # noqa: BLE001 - a refused join is counted, not fatal to the benchmark
            answers.append(f"error: {type(err).__name__}")
    outcome.update({answer: answers.count(answer) for answer in set(answers)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="pipeline folder to serve (default: the bundled model)")
    parser.add_argument("--raters", type=int, default=16)
    parser.add_argument("--flood", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between one rater's votes")
    parser.add_argument("--torch-threads", type=int, help="the server's torch threads (default: torch's own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        served_args = ["--db", f"sqlite:///{state / 'feedback.db'}", "--image-dir", str(state / "images")]
        served_args += ["--trusted-proxy", "127.0.0.1"] + (["--model", str(args.model)] if args.model else [])
        env = {"RAPHAEL_IP_SALT": "bench"}
        if args.torch_threads:
            env["RAPHAEL_TORCH_THREADS"] = str(args.torch_threads)
        with ServedApp(served_args, state / "app.log", env) as url:
            voters = [Voter(url, f"10.77.0.{i + 1}") for i in range(args.raters)]
            prompt = "a cat on a blue background"
            image_ids = []
            for i, voter in enumerate(voters):
                _, summary, _ = voter.gradio.predict(prompt, "", "", 5, 7, i, 1, "1:1", "DDIM", api_name="/generate")
                image_ids.append(summary["images"][0]["image_id"])
            alone = {door: vote_round(voters, door, image_ids, args.seconds, args.interval) for door in DOORS}
            flooded: dict[str, Any] = {}
            flooding = threading.Thread(target=flood, args=(url, args.flood, prompt, flooded))
            flooding.start()
            time.sleep(1.0)  # the flood is queued before the votes start
            during = {door: vote_round(voters, door, image_ids, args.seconds, args.interval) for door in DOORS}
            flooding.join()
    result = {
        "benchmark": "votes during a generation flood",
        "cpu_count": os.cpu_count(),
        "raters": args.raters,
        "server_torch_threads": args.torch_threads or "torch default",
        "vote_interval_s": args.interval,
        "flood": {"requests": args.flood, "steps": FLOOD_STEPS, "images": FLOOD_IMAGES, "answers": flooded},
        "votes_alone": alone,
        "votes_during_flood": during,
        "goal": {"all_votes_acknowledged": True, "p99_ms_below": 1000 * GOAL_P99_S},
        "met": {
            door: result["votes_failed"] == 0 and (result["p99_ms"] or 1e9) < 1000 * GOAL_P99_S
            for door, result in during.items()
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
