"""Train RAPHAEL-tiny on emoji scenes: ``python -m model.training.train --out runs/raphael-tiny`` (``make train``).

One script for CPU, one GPU or many (``accelerate launch -m model.training.train``). It resumes from
``<out>/state.pt`` after being killed, and writes ``<out>/log.jsonl``, ``<out>/curves.png`` and
the EMA weights in ``save_pretrained`` layout (``<out>/unet``); with ``--eval-every`` it also scores its
checkpoints on held-out prompts as it goes (``checkpoint_eval.py``).

Pixel space, not latents: at 32 px the denoiser sees a 32x32x3 sample, which is the same size
as 16x16x4 latents of a 64 px VAE but needs no VAE training and loses nothing to decoding. The
CPU budget of a sitting goes to the denoiser. ``RaphaelPipeline`` accepts a VAE for latent models.

Convergence aids (all from step one): v-prediction with a cosine schedule, Min-SNR-5 weighting,
AdamW with warm-up (and an optional cool-down) and grad clipping, EMA sampling weights, 10% caption
dropout for CFG, one aspect bucket per batch, the edge loss for t < 500 and the MoE balance loss.

On a GPU (``accelerate launch -m model.training.train``) a small model's step is bound by the host, not the chip:
``--workers`` renders the scenes ahead in other processes, ``--moe-dispatch dense`` runs the MoE layers without reading
the routing back to the host, ``--compile`` fuses the step's kernels, ``--log-every`` reads the losses back once per
that many steps, and AdamW takes its fused kernel. None of them changes what a CPU run computes when left at their
defaults. ``--mixed-precision auto`` autocasts to bf16 on a GPU and on a CPU that multiplies bf16 natively.
"""

import argparse
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from diffusers import DDPMScheduler
from tqdm.auto import tqdm

from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.data.replay import ReplayMixture
from model.offline import apply_offline_defaults
from model.pipeline.buckets import ASPECT_BUCKETS
from model.pipeline.schedule import make_noise_scheduler
from model.pipeline.text_encoder import encode_text, load_text_encoder
from model.training.bundle import INIT_RECORD, init_record
from model.training.checkpoint import load_state, save_state
from model.training.checkpoint_eval import eval_rows, evaluate_checkpoint, evaluated, parse_eval_sets
from model.training.optimisation import EMA, optimiser_step, warmup_schedule
from model.training.plots import plot_training
from model.training.precision import MIXED_PRECISION, resolve_mixed_precision
from model.training.run_log import RUN_LOG, log_rows, write_log
from model.training.scene_batches import scene_batches
from model.unet.edge import edge_loss
from model.unet.grow import grow
from model.unet.moe import MOE_DISPATCH
from model.unet.presets import RAPHAEL_PRESETS
from model.unet.unet_raphael import RaphaelUNet

logger = logging.getLogger("model.training.train")

MIN_SNR_GAMMA = 5.0
CAPTION_DROPOUT = 0.1


def min_snr_weight(scheduler: DDPMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Min-SNR-γ weight for v-prediction: ``min(SNR, γ) / (SNR + 1)``."""
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas)
    return snr.clamp(max=MIN_SNR_GAMMA) / (snr + 1)


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1], on the images' device."""
    return torch.as_tensor(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", default="runs/raphael-tiny", help="run folder: state.pt, log.jsonl, curves.png, unet/")
    p.add_argument("--preset", default="tiny", choices=sorted(RAPHAEL_PRESETS), help="model size preset")
    p.add_argument("--unet-config", default=None, help="JSON file of RaphaelUNet arguments overriding the preset")
    p.add_argument("--init", default=None, help="start a new run from these UNet weights (e.g. the bundled model)")
    p.add_argument(
        "--grow-levels",
        default=None,
        help="with --init: transformer blocks per level, e.g. 0,1,2; new levels start as identities (unet/grow.py)",
    )
    p.add_argument("--steps", type=int, default=6000, help="total optimiser steps of the run")
    p.add_argument("--time-limit", type=float, default=0, help="stop cleanly after this many minutes (0 = none)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step and process")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    p.add_argument("--cooldown", type=int, default=0, help="decay the rate linearly to zero over the last N steps")
    p.add_argument(
        "--schedule-steps",
        type=int,
        default=None,
        help="steps the learning-rate schedule is planned for (default: --steps); a run may stop before its end",
    )
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--balance-coef", type=float, default=0.01, help="weight of the MoE load-balancing loss")
    p.add_argument("--edge-coef", type=float, default=1.0, help="weight of the edge focal loss (t < 500 only)")
    p.add_argument("--sample-size", type=int, default=32, help="base image side in pixels")
    p.add_argument("--num-emoji", type=int, default=None, help="curriculum: use the first N emoji")
    p.add_argument("--max-objects", type=int, default=3)
    p.add_argument("--max-count", type=int, default=3)
    p.add_argument(
        "--object-weights",
        default=None,
        help="comma-separated relative frequencies of scenes with 1, 2, ... distinct emoji (default: equal)",
    )
    p.add_argument("--styles", default=None, help="comma-separated styles (default: all)")
    p.add_argument(
        "--paraphrases", action="store_true", help="captions also use the extra words of model/data/paraphrases.py"
    )
    p.add_argument("--buckets", default=None, help=f"comma-separated aspect buckets of {', '.join(ASPECT_BUCKETS)}")
    p.add_argument(
        "--replay-share",
        type=float,
        default=0.0,
        help="share of each batch drawn from --replay-scenes, an earlier stage's slice kept from being forgotten",
    )
    p.add_argument(
        "--replay-scenes",
        default=None,
        help='JSON of the replayed scenes (SceneConfig fields), e.g. {"num_emoji": 30, "styles": ["flat"]}',
    )
    p.add_argument("--save-every", type=int, default=100, help="checkpoint every N steps")
    p.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="score the EMA weights every N steps on --eval-sets, training paused meanwhile (0 = never)",
    )
    p.add_argument(
        "--eval-sets",
        default=None,
        help="JSON naming each set of held-out prompts with its model.evaluation.evaluate arguments, e.g. "
        '{"domain": ["--n", "128"], "slice": ["--n", "256", "--num-emoji", "30"]}',
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch default)")
    p.add_argument("--workers", type=int, default=0, help="processes that render batches ahead (0 = in this one)")
    p.add_argument("--moe-dispatch", default=MOE_DISPATCH[0], choices=MOE_DISPATCH, help="MoE dispatch (GPU: dense)")
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Net (a GPU's launch-bound step)")
    p.add_argument("--log-every", type=int, default=1, help="read the losses back to the host every N steps")
    p.add_argument(
        "--mixed-precision",
        default="auto",
        choices=MIXED_PRECISION,
        help="autocast: auto = bf16 on a GPU or a CPU that multiplies bf16 natively, fp32 otherwise",
    )
    args = p.parse_args(argv)
    if args.schedule_steps is not None and args.schedule_steps < args.steps:
        p.error(f"--schedule-steps ({args.schedule_steps}) must be at least --steps ({args.steps})")
    if args.grow_levels and not args.init:
        p.error("--grow-levels grows the weights of --init; a new model takes --unet-config instead")
    if args.grow_levels:
        try:
            levels(args.grow_levels)
        except ValueError:
            p.error(f"--grow-levels must be comma-separated whole numbers, e.g. 0,1,2, not {args.grow_levels!r}")
    if args.eval_every < 0:
        p.error(f"--eval-every must be 0 (never) or a number of steps, not {args.eval_every}")
    if bool(args.eval_every) != bool(args.eval_sets):
        p.error("--eval-every and --eval-sets go together: how often to score and on which prompts")
    if args.eval_sets:
        try:
            parse_eval_sets(args.eval_sets)
        except ValueError as err:
            p.error(f"--eval-sets: {err}")
    if bool(args.replay_share) != bool(args.replay_scenes):
        p.error("--replay-share and --replay-scenes go together: a share of batches and the scenes they replay")
    try:
        scene_stream(args)
    except (ValueError, TypeError) as err:
        p.error(f"the scene settings do not hold: {err}")
    return args


def levels(text: str) -> tuple[int, ...]:
    """``--grow-levels 0,1,2`` as a tuple of non-negative counts."""
    counts = tuple(int(part) for part in text.split(","))
    if any(count < 0 for count in counts):
        raise ValueError(text)
    return counts


def scene_config(args: argparse.Namespace) -> SceneConfig:
    split = lambda s: tuple(x.strip() for x in s.split(",")) if s else None  # noqa: E731
    return SceneConfig(
        sample_size=args.sample_size,
        num_emoji=args.num_emoji,
        max_objects=args.max_objects,
        max_count=args.max_count,
        object_weights=tuple(map(float, split(args.object_weights))) if args.object_weights else None,
        styles=split(args.styles),
        buckets=split(args.buckets),
        paraphrases=args.paraphrases,
    )


def replay_config(args: argparse.Namespace) -> SceneConfig | None:
    """The replayed scenes of ``--replay-scenes`` at the run's sample size, or None without a replay."""
    if not args.replay_scenes:
        return None
    data = json.loads(args.replay_scenes)
    if not isinstance(data, dict):
        raise ValueError("--replay-scenes must be a JSON object of scene settings")
    return SceneConfig.from_dict({"sample_size": args.sample_size, **data})


def scene_stream(args: argparse.Namespace) -> EmojiScenes | ReplayMixture:
    """The run's training scenes: the stage's own, with ``--replay-share`` of each batch replayed when asked."""
    main = EmojiScenes(scene_config(args), seed=args.seed)
    replay = replay_config(args)
    return main if replay is None else ReplayMixture(main, EmojiScenes(replay, seed=args.seed), args.replay_share)


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows past the resumed step: a killed run logged steps its checkpoint never saw."""
    rows = log_rows(path, math.inf)
    kept = [row for row in rows if row["step"] <= step]
    if len(kept) != len(rows):
        write_log(path, kept)
        logger.info("Dropped %d log rows past step %d", len(rows) - len(kept), step)


def save_checkpoint(
    out: Path, unet: RaphaelUNet, ema: EMA, optimizer, step: int, args, world_size: int = 1, rewarm: int = 0
) -> None:
    """Write the resumable state atomically, then the EMA weights in save_pretrained layout; ``rewarm`` is the step a
    restored snapshot warmed its rate up again from."""
    save_state(
        out / "state.pt",
        step=step,
        model=unet,
        ema=ema,
        optimizer=optimizer,
        args=vars(args),
        world_size=world_size,
        rng=torch.get_rng_state(),
        rewarm=rewarm,
    )
    ema_unet = RaphaelUNet.from_config(unet.config)
    ema.copy_to(ema_unet)
    ema_unet.save_pretrained(out / "unet")


def due_for_eval(args: argparse.Namespace, step: int) -> bool:
    """Whether the checkpoint at ``step`` is one the run scores (``--eval-every``)."""
    return bool(args.eval_every) and step > 0 and step % args.eval_every == 0


def host_records(pending: list[dict], sec: float) -> list[dict]:
    """The log rows of ``pending``, their tensors read back to the host (one wait for the device), each step
    credited with ``sec``, the mean wall time of the steps since the last read."""
    records = []
    for row in pending:
        record = {k: v.tolist() if torch.is_tensor(v) else v for k, v in row.items()}
        record["grad_norm"] = float(record["grad_norm"])
        records.append({**record, "sec": sec})
    return records


def train(args: argparse.Namespace) -> Path:
    apply_offline_defaults()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator()
    # Autocast here, not through accelerate's process-wide setting: one process may run several trainings (the
    # curriculum's stages, the tests) in different precisions.
    args.mixed_precision = resolve_mixed_precision(args.mixed_precision)  # what ran is what the checkpoint records
    bf16 = args.mixed_precision == "bf16"
    torch.manual_seed(args.seed + accelerator.process_index)

    data = scene_stream(args)
    tokenizer, text_encoder = load_text_encoder()
    text_encoder.to(accelerator.device)
    scheduler = make_noise_scheduler()

    state_path = out / "state.pt"
    if state_path.exists():  # the run's own architecture: the weights it started from may be gone from this machine
        unet = RaphaelUNet.from_config(RaphaelUNet.load_config(out / "unet"))
    elif args.init:
        unet = RaphaelUNet.from_pretrained(args.init)
        if args.grow_levels:
            unet = grow(unet, levels(args.grow_levels))
            logger.info("Grown to transformer blocks %s per level", list(unet.config.transformer_layers_per_level))
    else:
        overrides = json.loads(Path(args.unet_config).read_text()) if args.unet_config else {}
        unet = RAPHAEL_PRESETS[args.preset](**{"sample_size": args.sample_size, **overrides})
    unet.set_moe_dispatch(args.moe_dispatch)
    ema = EMA(unet)
    fused = accelerator.device.type == "cuda"  # one kernel for all parameters instead of several per tensor
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=args.weight_decay, fused=fused)
    start = rewarm = 0
    if state := load_state(state_path, unet, ema, optimizer):
        start, rewarm = state["step"], state.get("rewarm", 0)
        if "rng" in state:  # noise, timesteps and caption dropout continue as if never stopped
            torch.set_rng_state(state["rng"])
        truncate_log(out / RUN_LOG, start)
        logger.info("Resumed from %s at step %d", state_path, start)
        if accelerator.is_main_process and due_for_eval(args, start) and not evaluated(out, start):
            evaluate_checkpoint(out, start, parse_eval_sets(args.eval_sets))  # a kill cut the last one short
    elif args.init and accelerator.is_main_process and (earlier := init_record(Path(args.init))):
        (out / INIT_RECORD).write_text(json.dumps(earlier, indent=2) + "\n")
    lr_scheduler = warmup_schedule(
        optimizer, args.warmup, start, args.schedule_steps or args.steps, args.cooldown, rewarm
    )
    unet, optimizer = accelerator.prepare(unet, optimizer)
    ema.shadow = [s.to(accelerator.device) for s in ema.shadow]  # updated beside the weights, on their device
    unet.train()
    if args.compile:
        unet.compile()  # in place: the module, its state dict and its checkpoints stay as they are

    n_params = sum(p.numel() for p in unet.parameters())
    logger.info(
        "RaphaelUNet %s: %.2fM parameters, %s, data %s",
        args.preset,
        n_params / 1e6,
        "bf16 autocast" if bf16 else "fp32",
        asdict(data.config),
    )
    if isinstance(data, ReplayMixture):
        logger.info("Replaying %.0f%% of each batch from %s", 100 * data.share, asdict(data.replay.config))
    deadline = time.monotonic() + args.time_limit * 60 if args.time_limit else math.inf
    bar = tqdm(
        range(start, args.steps),
        initial=start,
        total=args.steps,
        desc="train",
        disable=not accelerator.is_main_process,
    )
    done = start  # steps finished; a finished run that is resumed again stays where it was
    indices = (step * accelerator.num_processes + accelerator.process_index for step in range(start, args.steps))
    pin_memory = accelerator.device.type == "cuda"
    with (
        open(out / RUN_LOG, "a") as log_file,
        scene_batches(data, args.batch_size, indices, args.workers, pin_memory) as batches,
    ):
        pending: list[dict] = []  # this step's and the last ones' records, still on the device
        since = time.monotonic()
        for step, (images, captions) in zip(bar, batches):
            clean = to_tensor(images.to(accelerator.device, non_blocking=True))  # (B, 3, H, W)
            drop = torch.rand(len(captions)) < CAPTION_DROPOUT
            captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
            text, text_mask = encode_text(tokenizer, text_encoder, captions, accelerator.device)  # (B, L, D), (B, L)

            noise = torch.randn_like(clean)
            timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (clean.shape[0],), device=clean.device)
            noisy = scheduler.add_noise(clean, noise, timesteps)
            target = scheduler.get_velocity(clean, noise, timesteps)

            with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=bf16):
                out_ = unet(noisy, timesteps, text, text_mask, return_routing=True, compute_edges=args.edge_coef > 0)
                per_sample = (out_.sample.float() - target).pow(2).flatten(1).mean(1)  # (B,)
                mse = (per_sample * min_snr_weight(scheduler, timesteps)).mean()
                routing = out_.routing
                aux = routing.aux_loss.to(mse.device)
                edge = edge_loss(routing.edge_logits, clean, timesteps) if args.edge_coef > 0 else torch.zeros(())
                loss = mse + args.balance_coef * aux + args.edge_coef * edge

            grad_norm = optimiser_step(accelerator, unet, optimizer, lr_scheduler, ema, loss, step)

            pending.append(
                {
                    "step": step + 1,
                    "loss": loss.detach(),
                    "mse": mse.detach(),
                    "edge": edge.detach(),
                    "balance": aux.detach(),
                    "grad_norm": grad_norm,
                    "lr": lr_scheduler.get_last_lr()[0],
                    "bucket": f"{clean.shape[2]}x{clean.shape[3]}",
                    "space_usage": routing.space_counts.sum(0) if routing.space_counts is not None else None,
                    "time_usage": routing.time_counts.sum(0) if routing.time_counts is not None else None,
                }
            )
            done = step + 1
            last = done == args.steps or time.monotonic() > deadline
            score = due_for_eval(args, done)
            save = done % args.save_every == 0 or last or score
            if len(pending) >= args.log_every or save:
                records = host_records(pending, (time.monotonic() - since) / len(pending))
                pending, since = [], time.monotonic()
                if accelerator.is_main_process:
                    log_file.writelines(json.dumps(record) + "\n" for record in records)
                    record = records[-1]
                    bar.set_postfix(
                        loss=f"{record['loss']:.4f}", edge=f"{record['edge']:.3f}", s=f"{record['sec']:.2f}"
                    )
            if accelerator.is_main_process and save:
                log_file.flush()
                save_checkpoint(
                    out, accelerator.unwrap_model(unet), ema, optimizer, done, args, accelerator.num_processes, rewarm
                )
                if score:
                    evaluate_checkpoint(out, done, parse_eval_sets(args.eval_sets))
                    since = time.monotonic()  # the scoring is not a step's time
                plot_training(out / RUN_LOG, out / "curves.png", eval_rows(out))
            if last:
                break
    logger.info("Stopped at step %d; EMA weights in %s", done, out / "unet")
    return out


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    train(parse_args(argv))


if __name__ == "__main__":
    main()
