"""Package a training run as the bundled checkpoint: ``python -m model.training.bundle --run runs/raphael-tiny``.

Writes a ``save_pretrained`` pipeline folder with the EMA UNet in fp16 safetensors, the DDIM
sampler of the training schedule and no text encoder (the packaged MiniLM is loaded instead), so
the folder stays small enough to live in the repository. ``training.json`` beside it records
what the weights cost (steps, images, step time), so comparisons at equal compute can be checked.
"""

import argparse
import json
import logging
from pathlib import Path

import torch

from model.offline import apply_offline_defaults
from model.pipeline.bundled import DEFAULT_BUNDLE
from model.pipeline.pipeline_raphael import RaphaelPipeline
from model.pipeline.schedule import default_scheduler
from model.training.optimisation import EMA
from model.training.run_log import RUN_LOG, log_rows
from model.unet.unet_raphael import RaphaelUNet

logger = logging.getLogger("model.training.bundle")

DATA_ARGS = (
    "sample_size",
    "num_emoji",
    "max_objects",
    "max_count",
    "object_weights",
    "styles",
    "buckets",
    "paraphrases",
)
# Written by a run started with --init: the folder it started from may later hold other weights (a new bundle).
INIT_RECORD = "init_training.json"
RECIPE_ARGS = (
    "preset",
    "init",
    "grow_levels",
    "lr",
    "warmup",
    "cooldown",
    "weight_decay",
    "balance_coef",
    "edge_coef",
    "seed",
    "mixed_precision",
)


def training_summary(run_dir: Path) -> dict:
    """Steps, images seen and summed step time of a run, read from its own checkpoint and log.

    A run started with ``--init`` (the next curriculum stage) carries the summary of what it started
    from, so the compute of the whole chain is on record.
    """
    state = torch.load(run_dir / "state.pt", map_location="cpu", weights_only=False)
    args, world_size = state["args"], state.get("world_size", 1)
    rows = log_rows(run_dir / RUN_LOG, state["step"])
    last = rows[-100:]
    summary = {
        "steps": state["step"],
        "batch_size": args["batch_size"] * world_size,
        "images_seen": state["step"] * args["batch_size"] * world_size,
        "step_time_hours": round(sum(r["sec"] for r in rows) / 3600, 3),
        "mse_last_100_steps": sum(r["mse"] for r in last) / max(len(last), 1),  # on never-repeated data
        "data": {k: args.get(k) for k in DATA_ARGS},
        "recipe": {
            **{k: args.get(k) for k in RECIPE_ARGS},
            # the length its rate schedule was planned for: the cool-down ends there, and a run may stop short of it
            "schedule_steps": args.get("schedule_steps") or args["steps"],
        },
    }
    if args.get("replay_share"):  # a share of each batch from an earlier slice, inside the domain above
        summary["replay"] = {"share": args["replay_share"], "data": json.loads(args["replay_scenes"])}
    if (run_dir / INIT_RECORD).exists():  # the chain as it stood when the run started
        summary["continued_from"] = json.loads((run_dir / INIT_RECORD).read_text())
    elif args.get("init") and (earlier := init_record(Path(args["init"]))):
        summary["continued_from"] = earlier
    return summary


def init_record(init: Path) -> dict | None:
    """The training record of the weights a run starts from: a bundle's ``training.json`` or a run's summary."""
    earlier = init.parent  # a bundle, or the run of the stage before
    if (earlier / "training.json").exists():
        return json.loads((earlier / "training.json").read_text())
    if (earlier / "state.pt").exists():
        return training_summary(earlier)
    return None


def bundle(run_dir: Path, out_dir: Path) -> Path:
    """Save the run's EMA UNet and sampler as a RaphaelPipeline in fp16, with its training summary."""
    unet = RaphaelUNet.from_pretrained(run_dir / "unet").to(torch.float16)
    scheduler = default_scheduler()
    pipe = RaphaelPipeline(unet=unet, scheduler=scheduler)
    pipe.save_pretrained(out_dir, include_text_encoder=False)
    summary = {"parameters": sum(p.numel() for p in unet.parameters()), **training_summary(run_dir)}
    (out_dir / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    logger.info("Bundled %s into %s (%.1f MB)", run_dir, out_dir, size / 1e6)
    return out_dir


def save_tuned(pipe: RaphaelPipeline, unet_config: dict, ema: EMA, out_dir: Path, record: dict, card: str) -> Path:
    """A folder tuned from a pipeline (preference tuning, guidance distillation): ``pipe``'s scheduler and VAE with a
    U-Net of ``unet_config`` holding the EMA weights in fp16, no text encoder, and the run's ``training.json`` record
    and model card. ``pipe`` itself is left as it was."""
    tuned = RaphaelUNet.from_config(unet_config)
    ema.copy_to(tuned)
    saved = RaphaelPipeline(
        unet=tuned.to(torch.float16),
        scheduler=pipe.scheduler,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
    )
    saved.save_pretrained(out_dir, include_text_encoder=False)
    (out_dir / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    (out_dir / "README.md").write_text(card)
    return out_dir


def main() -> None:
    apply_offline_defaults()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/raphael-tiny"), help="training run folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_BUNDLE, help="pipeline folder to write")
    args = parser.parse_args()
    bundle(args.run, args.out)


if __name__ == "__main__":
    main()
