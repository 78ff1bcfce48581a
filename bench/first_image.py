"""How long a person waits for the first image after ``make run``: server start-up, then one generation. JSON.

Starts ``python app.py`` (the bundled model, a fresh database in a temporary folder) on a loopback port, times
until it serves the page, then asks ``/generate`` for the app's default request (its default steps, guidance,
sampler and number of images) and times the answer. Goal (issue: performance): the first image ≤ 5 s after the
server starts, the virtual environment already built. Run: ``python -m bench.first_image`` (``make bench``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from gradio_client import Client

from app.rater_cookie import COOKIE
from app.served import ServedApp
from app.settings import Settings
from model.pipeline.buckets import DEFAULT_BUCKET
from model.pipeline.bundled import DEFAULT_BUNDLE
from model.pipeline.limits import DEFAULT_GUIDANCE_SCALE, DEFAULT_INFERENCE_STEPS
from model.pipeline.samplers import DEFAULT_SAMPLER
from model.pipeline.sampling_defaults import sampling_defaults

GOAL_S = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompt", default="a cat on a blue background")
    args = parser.parse_args()
    sampling = sampling_defaults(DEFAULT_BUNDLE)  # what the page's controls start from
    steps = sampling.get("num_inference_steps", DEFAULT_INFERENCE_STEPS)
    cfg = sampling.get("guidance_scale", DEFAULT_GUIDANCE_SCALE)
    sampler = sampling.get("sampler", DEFAULT_SAMPLER)
    with tempfile.TemporaryDirectory(prefix="raphael-first-") as tmp:
        folder = Path(tmp)
        served = ServedApp(
            ["--db", f"sqlite:///{folder / 'feedback.db'}", "--image-dir", str(folder / "images")],
            folder / "app.log",
            {"GRADIO_TEMP_DIR": str(folder / "gradio")},
        )
        started = time.perf_counter()
        with served as url:
            serving = time.perf_counter() - started
            token = Client(url, verbose=False).predict(api_name="/rater_token")["token"]
            client = Client(url, verbose=False, headers={"Cookie": f"{COOKIE}={token}"})
            asked = time.perf_counter()
            # The page's defaults for the bundled model: its recommended sampling, a random seed, two images.
            _images, summary, _seed = client.predict(
                args.prompt, "", "", steps, cfg, -1, Settings.default_images, DEFAULT_BUCKET, sampler, 1,
                api_name="/generate",
            )  # fmt: skip
            answered = time.perf_counter()
            client.close()
    first_image = answered - started
    print(
        json.dumps(
            {
                "benchmark": "first_image",
                "date": time.strftime("%Y-%m-%d"),
                "server_ready_s": round(serving, 2),
                "client_connect_s": round(asked - started - serving, 2),  # page config and a rater token
                "generate_s": round(answered - asked, 2),
                "model_seconds": summary["seconds"],
                "images": len(summary["images"]),
                "steps": summary["provenance"]["steps"],
                "sampler": summary["provenance"]["sampler"],
                "first_image_s": round(first_image, 2),
                "goal_s": GOAL_S,
                "goal_met": first_image <= GOAL_S,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
