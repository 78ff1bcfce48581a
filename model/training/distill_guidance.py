"""Guidance distillation: ``python -m model.training.distill_guidance`` (``make distill``).

Classifier-free guidance runs the U-Net twice per step (the prompt and the empty prompt) and mixes the two
predictions with the scale ``w``. Following Meng et al. (2023, "On Distillation of Guided Diffusion Models",
stage one), a student that takes ``w`` as an input learns to predict that mix in one pass: the pipeline then
draws a guided image with half the U-Net rows, which on the CPU is about half the time.

The student is the teacher plus a zero-initialised guidance embedding (``RaphaelUNet(guidance_embeds=True)``), so
it starts as the teacher's prompt-only prediction. Each step draws scenes of the teacher's own training slice
(its ``training.json`` ``data``), noises them at a uniform timestep, draws ``w`` uniformly in the distilled range
and regresses the student's v-prediction on the teacher's guided one with the pre-training's Min-SNR weights.
One caption in ten is empty, as in pre-training, so the student keeps its unconditional prediction and can still
run two-pass CFG outside the range or with a negative prompt. Nothing new is learned about the domain, so the
folder keeps the teacher's ``data`` and the app its notes; ``distillation`` in ``training.json`` says how.

Resumes from ``<out>/state.pt``; writes ``<out>/log.jsonl``, ``<out>/curves.png`` and the pipeline folder
``<out>/pipeline`` (fp16, as bundles are). Evaluate it against the teacher before shipping it:
``python -m model.evaluation.sampler_curve --model OUT/pipeline ...`` or ``make eval MODEL=OUT/pipeline``.
"""

import argparse
import json
import logging
import math
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from model.data.dataset import EmojiScenes
from model.offline import apply_offline_defaults
from model.pipeline.bundled import DEFAULT_BUNDLE, load_bundle
from model.pipeline.identity import model_name, weights_hash
from model.pipeline.schedule import make_noise_scheduler
from model.pipeline.text_encoder import encode_text
from model.training.bundle import save_tuned
from model.training.checkpoint import load_state, save_state
from model.training.optimisation import EMA, optimiser_step, warmup_schedule
from model.training.plots import plot_lines
from model.training.train import CAPTION_DROPOUT, min_snr_weight, scene_config, to_tensor
from model.unet.unet_raphael import RaphaelUNet

logger = logging.getLogger("model.training.distill_guidance")

# A run is a couple of thousand steps, not pre-training's tens of thousands: average over the last ~200.
EMA_DECAY = 0.995
HYPERPARAMETERS = ("lr", "warmup", "batch_size", "guidance_min", "guidance_max", "seed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_BUNDLE, help="the teacher: a RaphaelPipeline folder")
    p.add_argument("--out", type=Path, default=Path("runs/distill-guidance"))
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--guidance-min", type=float, default=1.0, help="lowest CFG scale distilled")
    p.add_argument("--guidance-max", type=float, default=4.0, help="highest CFG scale distilled")
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--time-limit", type=float, default=0.0, help="minutes; stop and save after this (0: none)")
    p.add_argument("--name", default=None, help="the version's name (default: the teacher's + '-distilled')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch default)")
    args = p.parse_args(argv)
    if not 0.0 <= args.guidance_min <= args.guidance_max:
        p.error("--guidance-min must be from 0 to --guidance-max.")
    if args.steps < 1 or args.batch_size < 1:
        p.error("--steps and --batch-size must be 1 or more.")
    return args


def student_from(teacher: RaphaelUNet, guidance_range: tuple[float, float]) -> RaphaelUNet:
    """The teacher's architecture and weights with a guidance embedding added (zero output: the teacher at first)."""
    # Only the public keys: a bundle saved before guidance_embeds existed lists it in "_use_default_values", which
    # from_config would honour over the value given here.
    config = {key: value for key, value in teacher.config.items() if not key.startswith("_")}
    config.update(guidance_embeds=True, guidance_range=tuple(guidance_range))
    student = RaphaelUNet.from_config(config)
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not key.startswith("guidance_embedder.") for key in missing):
        raise ValueError(f"The teacher's weights do not fit the student: missing {missing}, unexpected {unexpected}.")
    return student


@torch.no_grad()
def guided_target(
    teacher: RaphaelUNet,
    noisy: torch.Tensor,
    timesteps: torch.Tensor,
    text: torch.Tensor,
    mask: torch.Tensor,
    empty: torch.Tensor,
    empty_mask: torch.Tensor,
    scale: torch.Tensor,
) -> torch.Tensor:
    """The teacher's CFG prediction ``uncond + w (cond - uncond)`` (B, C, H, W), in one batch of 2B rows."""
    both = teacher(
        torch.cat([noisy, noisy]),
        torch.cat([timesteps, timesteps]),
        torch.cat([empty, text]),
        torch.cat([empty_mask, mask]),
    ).sample  # (2B, C, H, W)
    uncond, cond = both.float().chunk(2)
    return uncond + scale[:, None, None, None] * (cond - uncond)


def training_record(args: argparse.Namespace, steps: int, images_seen: int, hours: float) -> dict:
    """The student's ``training.json``: the teacher's slice and record, then how it was distilled."""
    base_file = args.model / "training.json"
    base = json.loads(base_file.read_text()) if base_file.is_file() else None
    return {
        "name": args.name or f"{model_name(args.model)}-distilled",
        "steps": steps,
        "images_seen": images_seen,
        "data": (base or {}).get("data"),
        "distillation": {
            "method": "guidance distillation (Meng et al. 2023, stage one)",
            **{key: getattr(args, key) for key in HYPERPARAMETERS},
            "steps": steps,
            "step_time_hours": round(hours, 3),
            "base_model": {"path": str(args.model), "weights_hash": weights_hash(args.model)},
        },
        "continued_from": base,
    }


def model_card(record: dict) -> str:
    """The student's README: its teacher, the range of scales it takes in one pass, and how it was distilled."""
    how = record["distillation"]
    base = how["base_model"]
    settings = ", ".join(f"{key} {how[key]}" for key in HYPERPARAMETERS)
    return (
        f"# {record['name']}\n\n"
        "A guidance-distilled RAPHAEL-tiny: it takes the CFG scale as an input and draws a guided image in one U-Net "
        "pass per step instead of two.\n\n"
        f"- Distilled from: `{base['path']}` (weights sha256 `{base['weights_hash']}`), on scenes of its own slice\n"
        f"- One pass for scales {how['guidance_min']:g} to {how['guidance_max']:g} without a negative prompt; "
        "two-pass CFG otherwise\n"
        f"- Distillation: {how['steps']} steps, {record['images_seen']} images, {how['step_time_hours']} h; "
        f"{settings}\n\n"
        "`training.json` holds the full record, the teacher's own under `continued_from`.\n"
    )


def distill(args: argparse.Namespace) -> Path:
    """Distil ``args.model``'s guidance into a student; resumes from ``<out>/state.pt``; returns its pipeline."""
    apply_offline_defaults()
    if args.threads:
        torch.set_num_threads(args.threads)
    record_file = args.model / "training.json"
    slice_ = json.loads(record_file.read_text()).get("data") if record_file.is_file() else None
    if not slice_:
        raise ValueError(f"{args.model} has no training.json 'data': the scenes to distil on are unknown.")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator()
    torch.manual_seed(args.seed)
    data = EmojiScenes(scene_config(argparse.Namespace(**slice_)), seed=args.seed)

    pipe = load_bundle(args.model)
    teacher = pipe.unet.eval().requires_grad_(False)
    student = student_from(teacher, (args.guidance_min, args.guidance_max))
    scheduler = make_noise_scheduler()
    ema = EMA(student, max_decay=EMA_DECAY)
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
    start = images_seen = 0
    seconds = 0.0
    if state := load_state(out / "state.pt", student, ema, optimizer):
        start, images_seen, seconds = state["step"], state["images_seen"], state["seconds"]
        torch.set_rng_state(state["rng"])
        logger.info("Resumed from %s at step %d", out / "state.pt", start)
    lr_scheduler = warmup_schedule(optimizer, args.warmup, start)
    student, optimizer = accelerator.prepare(student, optimizer)
    teacher.to(accelerator.device)
    student.train()
    device = accelerator.device
    empty, empty_mask = encode_text(pipe.tokenizer, pipe.text_encoder, [""], device)  # (1, L, D), (1, L)

    deadline = time.monotonic() + args.time_limit * 60 if args.time_limit else math.inf
    log = open(out / "log.jsonl", "a")
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="distil")
    done = start
    for step in bar:
        t0 = time.monotonic()
        images, captions, _ = data.batch(step, args.batch_size)
        clean = to_tensor(images).to(device)  # (B, 3, H, W)
        drop = torch.rand(len(captions)) < CAPTION_DROPOUT
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        text, mask = encode_text(pipe.tokenizer, pipe.text_encoder, captions, device)  # (B, L, D), (B, L)
        b = len(captions)
        blank, blank_mask = empty.expand(b, -1, -1), empty_mask.expand(b, -1)  # (B, L, D), (B, L)
        scale = torch.empty(b, device=device).uniform_(args.guidance_min, args.guidance_max)  # (B,)
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), device=device)
        noisy = scheduler.add_noise(clean, noise, timesteps)

        target = guided_target(teacher, noisy, timesteps, text, mask, blank, blank_mask, scale)  # (B, 3, H, W)
        prediction = student(noisy, timesteps, text, mask, guidance=scale).sample.float()
        per_sample = (prediction - target).pow(2).flatten(1).mean(1)  # (B,)
        loss = (per_sample * min_snr_weight(scheduler, timesteps)).mean()
        grad_norm = optimiser_step(accelerator, student, optimizer, lr_scheduler, ema, loss, step)
        images_seen += b
        seconds += time.monotonic() - t0
        log.write(json.dumps({"step": step + 1, "loss": loss.item(), "grad_norm": float(grad_norm)}) + "\n")
        bar.set_postfix(loss=f"{loss.item():.5f}")
        done = step + 1
        last = done == args.steps or time.monotonic() > deadline
        if done % args.save_every == 0 or last:
            log.flush()
            save_state(
                out / "state.pt",
                step=done,
                model=accelerator.unwrap_model(student),
                ema=ema,
                optimizer=optimizer,
                images_seen=images_seen,
                seconds=seconds,
                rng=torch.get_rng_state(),
            )
            plot_lines(out / "log.jsonl", out / "curves.png", ("loss",))
        if last:
            break
    log.close()

    record = training_record(args, done, images_seen, seconds / 3600)
    student_config = accelerator.unwrap_model(student).config  # with the guidance embedding
    save_tuned(pipe, student_config, ema, out / "pipeline", record, model_card(record))
    logger.info("Distilled pipeline %s after %d steps in %s", record["name"], done, out / "pipeline")
    return out / "pipeline"


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    distill(parse_args(argv))


if __name__ == "__main__":
    main()
