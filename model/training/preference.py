"""Preference fine-tuning on exported feedback: ``python -m model.training.preference`` (``make finetune``).

Reads what ``feedback.export`` writes and tunes a RaphaelPipeline against a frozen copy of itself:

- **Diffusion-DPO** (Wallace et al., 2023) on Pick-a-Pic pairs: with the same noise and timestep
  for both images, the tuned model must lower its denoising error on the preferred image more
  than on the other one, relative to the reference. Ties are dropped, as the original script does.
- **Diffusion-KTO** (Li et al., 2024) on unpaired 👍/👎 rows: the implicit reward
  ``ref_error - model_error``, less a batch estimate of the KL term, goes through a sigmoid whose
  sign is the label, weighted by ``lambda_d`` / ``lambda_u``. Pairs split into one 👍 and one 👎.

Both read Parquet, JSONL, an HF imagefolder or a ``datasets`` folder, work in pixel space or, for a
pipeline with a VAE, on its latents, and write a pipeline folder the app loads with ``RAPHAEL_MODEL``.

The folder's ``training.json`` extends the base's the way ``model.training.bundle`` chains curriculum
stages, so the tuned model is still known for what it is: ``name`` (``--name``, by default the base's
name and the loss, e.g. ``raphael-tiny-dpo``) is the version the app and its dashboard show; ``data`` is
the base's slice of the domain, which tuning on rated images of that model does not widen, so the app
keeps its "what this model has learned" panel, warnings and examples; ``continued_from`` is the base's
own record; ``preference`` says how it was tuned and on what (loss, hyper-parameters, steps, the export
and its sha256, the base folder and its weights hash); ``steps`` and ``images_seen`` are the stage
summary every record of the chain has.
"""

import argparse
import io
import json
import logging
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from PIL import Image
from tqdm.auto import tqdm

from model.offline import apply_offline_defaults
from model.pipeline.bundled import DEFAULT_BUNDLE, load_bundle
from model.pipeline.identity import files_sha256, model_name, weights_hash
from model.pipeline.text_encoder import encode_text
from model.training.bundle import save_tuned
from model.training.checkpoint import load_state, save_state
from model.training.optimisation import EMA, optimiser_step, warmup_schedule
from model.training.plots import plot_lines
from model.training.train import to_tensor
from model.unet.unet_raphael import RaphaelUNet

logger = logging.getLogger("model.training.preference")

HYPERPARAMETERS = ("beta", "lambda_d", "lambda_u", "lr", "warmup", "batch_size", "seed")


@dataclass(frozen=True)
class Example:
    """One rated image: ``label`` is 👍 (True) or 👎 (False); in a DPO pair the winner is the 👍."""

    caption: str
    image: np.ndarray  # (H, W, 3) uint8
    label: bool


@dataclass
class PreferenceData:
    """Pairs (winner, loser) for DPO and single rated images for KTO, plus what was skipped and why."""

    pairs: list[tuple[Example, Example]]
    singles: list[Example]
    skipped: Counter

    def examples(self, loss: str) -> list:
        """Training items for ``loss``: pairs for DPO; for KTO the singles, or both halves of each pair."""
        if loss == "dpo":
            return self.pairs
        return self.singles or [x for pair in self.pairs for x in pair]


def _decode(value) -> np.ndarray:
    """RGB uint8 array from image bytes, an HF image dict or a PIL image."""
    if isinstance(value, dict):
        value = value.get("bytes") or Path(value["path"]).read_bytes()
    if isinstance(value, str):  # an export made before pickapic refused --as jsonl
        raise ValueError(
            "jpg_0/jpg_1 hold text, not image bytes; export the pairs again with --as parquet or datasets."
        )
    image = value if isinstance(value, Image.Image) else Image.open(io.BytesIO(value))
    return np.asarray(image.convert("RGB"))


def _read_rows(path: Path) -> tuple[list[dict], Path]:
    """Rows of an export folder or file, and the folder relative file names resolve against."""
    folder = path if path.is_dir() else path.parent
    if path.is_dir() and (path / "metadata.jsonl").exists():  # KTO imagefolder
        rows = [json.loads(line) for line in (path / "metadata.jsonl").read_text().splitlines() if line.strip()]
        return rows, folder
    if path.is_dir() and (path / "dataset_info.json").exists():
        return datasets.load_from_disk(str(path)).to_list(), folder
    files = [path] if path.is_file() else sorted([*path.glob("*.parquet"), *path.glob("*.jsonl")])
    if not files:
        raise FileNotFoundError(
            f"No export found at {path}: expected train.parquet, train.jsonl, metadata.jsonl or a datasets folder."
        )
    rows = []
    for file in files:
        if file.suffix == ".parquet":
            rows += pq.read_table(file).to_pylist()
        else:
            rows += [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    return rows, folder


def load_preferences(path: str | Path) -> PreferenceData:
    """Read a ``pickapic`` (pairwise) or ``kto`` (unpaired) export in any of its outputs."""
    path = Path(path)
    rows, folder = _read_rows(path)
    pairs, singles, skipped = [], [], Counter()
    for row in rows:
        if "jpg_0" in row:
            if row["label_0"] == row["label_1"]:
                skipped["ties"] += 1
                continue
            first, second = (Example(row["caption"], _decode(row[f"jpg_{i}"]), True) for i in (0, 1))
            winner, loser = (first, second) if row["label_0"] > row["label_1"] else (second, first)
            loser = Example(loser.caption, loser.image, False)
            if winner.image.shape != loser.image.shape:
                skipped["pairs_of_different_sizes"] += 1
                continue
            pairs.append((winner, loser))
        elif "label" in row:
            image = row.get("image") or (folder / row["file_name"]).read_bytes()
            singles.append(Example(row["caption"], _decode(image), bool(row["label"])))
        else:
            raise ValueError(f"{path} is neither a pickapic nor a kto export (columns: {', '.join(row)}).")
    logger.info(
        "Read %d pairs and %d rated images from %s (skipped: %s)",
        len(pairs),
        len(singles),
        path,
        dict(skipped) or "none",
    )
    return PreferenceData(pairs, singles, skipped)


def dpo_loss(
    model_w: torch.Tensor, model_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffusion-DPO loss and implicit accuracy from per-sample denoising errors (B,) of each side."""
    inside = -0.5 * beta * ((model_w - model_l) - (ref_w - ref_l))  # (B,)
    return -F.logsigmoid(inside).mean(), (inside > 0).float().mean()


def kto_loss(
    model: torch.Tensor,
    ref: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
    lambda_d: float = 1.0,
    lambda_u: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffusion-KTO loss and accuracy from per-sample errors (B,) and boolean labels (B,)."""
    reward = ref - model  # (B,) > 0 where the tuned model denoises better than the reference
    kl = reward.mean().clamp(min=0).detach()
    sign = labels.float() * 2 - 1
    signed = sign * beta * (reward - kl)
    weight = torch.where(labels, lambda_d, lambda_u)
    return (weight * (1 - torch.sigmoid(signed))).mean(), (signed > 0).float().mean()


def _lead(item: Example | tuple[Example, Example]) -> Example:
    """The example whose image size stands for the item (both images of a pair share it)."""
    return item[0] if isinstance(item, tuple) else item


def _batches(items: list, batch_size: int, rng: random.Random):
    """Endless batches, each from one image size (bucket), sizes drawn by how many items they hold."""
    by_size = defaultdict(list)
    for item in items:
        by_size[_lead(item).image.shape].append(item)
    sizes = sorted(by_size)
    weights = [len(by_size[s]) for s in sizes]
    while True:
        group = by_size[rng.choices(sizes, weights)[0]]
        yield rng.sample(group, min(batch_size, len(group)))


@torch.no_grad()
def to_model_space(pipe, images: torch.Tensor) -> torch.Tensor:
    """Pixels (B, 3, H, W) in [-1, 1] as the UNet sees them: unchanged, or VAE latents for a latent model."""
    if getattr(pipe, "vae", None) is None:
        return images
    return pipe.vae.encode(images).latent_dist.sample() * pipe.vae.config.scaling_factor


def denoising_errors(
    unet: RaphaelUNet,
    scheduler,
    images: torch.Tensor,
    text: torch.Tensor,
    mask: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """Per-sample mean squared error (B,) of the model's prediction against the scheduler's target."""
    noisy = scheduler.add_noise(images, noise, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(images, noise, timesteps)
    else:
        target = noise
    pred = unet(noisy, timesteps, text, mask, compute_edges=False).sample
    return (pred.float() - target).pow(2).flatten(1).mean(1)


def export_sha256(path: Path) -> str:
    """sha256 over an export: the one file, or every file of the folder (data and dataset card)."""
    if path.is_file():
        return files_sha256(path.parent, [path])
    return files_sha256(path, [f for f in path.rglob("*") if f.is_file()])


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


def _version_name(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("a version name must not be blank")
    return value.strip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--data", type=Path, required=True, help="a pickapic or kto export (folder or file)")
    p.add_argument("--model", type=Path, default=DEFAULT_BUNDLE, help="RaphaelPipeline folder to tune")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/preference"),
        help="run folder; the tuned pipeline goes to <out>/pipeline",
    )
    p.add_argument(
        "--loss", choices=("auto", "dpo", "kto"), default="auto", help="auto: DPO for pairwise data, KTO for unpaired"
    )
    p.add_argument("--beta", type=float, default=2500.0, help="DPO/KTO inverse temperature on the error gap")
    p.add_argument("--lambda-d", type=float, default=1.0, help="KTO weight of 👍 images")
    p.add_argument("--lambda-u", type=float, default=1.0, help="KTO weight of 👎 images")
    p.add_argument(
        "--steps", type=_positive, default=500, help="optimiser steps in all; a resumed run goes on up to this"
    )
    p.add_argument("--batch-size", type=_positive, default=16, help="pairs (DPO) or images (KTO) per step")
    p.add_argument(
        "--lr", type=float, default=1e-5, help="AdamW learning rate, reached after the warm-up and then constant"
    )
    p.add_argument("--warmup", type=_positive, default=20, help="steps of linear learning-rate warm-up from zero")
    p.add_argument(
        "--save-every", type=_positive, default=100, help="steps between checkpoints (state.pt) and curves.png"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the noise, the timesteps and the batch order")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch default)")
    p.add_argument(
        "--name",
        type=_version_name,
        help="version name the app shows for the tuned model; None means <base name>-<loss>, e.g. raphael-tiny-dpo",
    )
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def training_record(
    args: argparse.Namespace, loss_name: str, data: PreferenceData, examples: int, steps: int, images_seen: int
) -> dict:
    """The tuned folder's ``training.json``: the base's name, slice and record, then how it was tuned on what."""
    base_file = args.model / "training.json"
    base = json.loads(base_file.read_text()) if base_file.is_file() else None
    return {
        "name": args.name or f"{model_name(args.model)}-{loss_name}",
        "steps": steps,
        "images_seen": images_seen,
        "data": (base or {}).get("data"),
        "preference": {
            "loss": loss_name,
            **{key: getattr(args, key) for key in HYPERPARAMETERS},
            "steps": steps,
            "examples": examples,
            "skipped": dict(data.skipped),
            "export": {"path": str(args.data), "sha256": export_sha256(args.data)},
            "base_model": {"path": str(args.model), "weights_hash": weights_hash(args.model)},
        },
        "continued_from": base,
    }


def model_card(record: dict) -> str:
    """The tuned folder's README: what it was tuned from, on which export, and how; the numbers are training.json's."""
    tuning = record["preference"]
    base, export = tuning["base_model"], tuning["export"]
    settings = ", ".join(f"{key} {tuning[key]}" for key in HYPERPARAMETERS if key in tuning)
    skipped = ", ".join(f"{n} {why}" for why, n in tuning["skipped"].items()) or "none"
    return (
        f"# {record['name']}\n\n"
        f"A RAPHAEL-tiny version tuned with Diffusion-{tuning['loss'].upper()} on raters' feedback.\n\n"
        f"- Tuned from: `{base['path']}` (weights sha256 `{base['weights_hash']}`)\n"
        f"- Tuned on: the export `{export['path']}` (sha256 `{export['sha256']}`), {tuning['examples']} examples; "
        f"skipped: {skipped}\n"
        f"- Tuning: {tuning['steps']} steps, {record['images_seen']} images seen; {settings}\n"
        f"- Trained slice: the base's (`data` in training.json), so the app's notes on what it has learned stay\n\n"
        "`training.json` holds the full record, the base's own under `continued_from`. Serve it beside its base with "
        "`python app.py --model BASE --model THIS` and compare them in the Arena tab.\n"
    )


def finetune(args: argparse.Namespace) -> Path:
    """Tune ``args.model`` on ``args.data``; resumes from ``<out>/state.pt``; returns the pipeline folder."""
    apply_offline_defaults()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_preferences(args.data)
    loss_name = args.loss if args.loss != "auto" else ("dpo" if data.pairs else "kto")
    items = data.examples(loss_name)
    if not items:
        raise ValueError(
            f"{args.data} holds nothing to train {loss_name.upper()} on "
            f"({len(data.pairs)} pairs, {len(data.singles)} rated images)."
        )
    if loss_name == "kto" and len({x.label for x in items}) < 2:
        logger.warning("Every KTO example has the same label; the KL reference point carries the whole signal.")

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator()
    torch.manual_seed(args.seed)
    pipe = load_bundle(args.model)
    buckets = sorted(pipe.aspect_buckets.values())
    fits = [x for x in items if _lead(x).image.shape[:2] in buckets]
    if len(fits) < len(items):
        logger.warning(
            "Skipping %d item(s) whose image size is none of the model's buckets %s", len(items) - len(fits), buckets
        )
        data.skipped["not_a_bucket_of_the_model"] += len(items) - len(fits)
    items = fits
    if not items:
        raise ValueError(f"No image in {args.data} has one of the model's sizes (height, width) {buckets}.")
    unet, scheduler = pipe.unet, pipe.scheduler
    reference = RaphaelUNet.from_config(unet.config).eval().requires_grad_(False)
    reference.load_state_dict(unet.state_dict())
    ema = EMA(unet)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    start = images_seen = 0
    if state := load_state(out / "state.pt", unet, ema, optimizer):
        start, images_seen = state["step"], state.get("images_seen", 0)
        logger.info("Resumed from %s at step %d", out / "state.pt", start)
    lr_scheduler = warmup_schedule(optimizer, args.warmup, start)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    reference.to(accelerator.device)
    unet.train()

    logger.info(
        "%s on %d %s from %s, starting at step %d",
        loss_name.upper(),
        len(items),
        "pairs" if loss_name == "dpo" else "images",
        args.data,
        start,
    )
    log = open(out / "log.jsonl", "a")
    batches = _batches(items, args.batch_size, random.Random(args.seed + start))
    for step in tqdm(range(start, args.steps), initial=start, total=args.steps, desc=loss_name):
        t0 = time.monotonic()
        batch = next(batches)
        examples = [x for pair in batch for x in pair] if loss_name == "dpo" else batch  # DPO: w0, l0, w1, l1...
        pixels = to_tensor(np.stack([x.image for x in examples])).to(accelerator.device)  # (B, 3, H, W)
        images = to_model_space(pipe, pixels)  # (B, C, h, w)
        text, mask = encode_text(pipe.tokenizer, pipe.text_encoder, [x.caption for x in examples], accelerator.device)
        noise = torch.randn_like(images)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(examples),), device=images.device)
        if loss_name == "dpo":  # both images of a pair share the noise and the timestep
            noise[1::2], timesteps[1::2] = noise[0::2], timesteps[0::2]
        errors = denoising_errors(unet, scheduler, images, text, mask, noise, timesteps)
        with torch.no_grad():
            ref_errors = denoising_errors(reference, scheduler, images, text, mask, noise, timesteps)
        if loss_name == "dpo":
            loss, accuracy = dpo_loss(errors[0::2], errors[1::2], ref_errors[0::2], ref_errors[1::2], args.beta)
        else:
            labels = torch.tensor([x.label for x in examples], device=images.device)
            loss, accuracy = kto_loss(errors, ref_errors, labels, args.beta, args.lambda_d, args.lambda_u)
        optimiser_step(accelerator, unet, optimizer, lr_scheduler, ema, loss, step)
        images_seen += len(examples)

        record = {
            "step": step + 1,
            "loss": loss.item(),
            "implicit_accuracy": accuracy.item(),
            "model_error": errors.mean().item(),
            "reference_error": ref_errors.mean().item(),
            "sec": time.monotonic() - t0,
        }
        log.write(json.dumps(record) + "\n")
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            log.flush()
            model = accelerator.unwrap_model(unet)
            save_state(
                out / "state.pt", step=step + 1, model=model, ema=ema, optimizer=optimizer, images_seen=images_seen
            )
            plot_lines(out / "log.jsonl", out / "curves.png", ("loss", "implicit_accuracy"))
    log.close()

    record = training_record(args, loss_name, data, len(items), max(start, args.steps), images_seen)
    save_tuned(pipe, accelerator.unwrap_model(unet).config, ema, out / "pipeline", record, model_card(record))
    logger.info("Tuned pipeline %s in %s", record["name"], out / "pipeline")
    return out / "pipeline"


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    finetune(parse_args(argv))


if __name__ == "__main__":
    main()
