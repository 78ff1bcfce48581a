"""A small CNN that reads an emoji scene back: background colour, and per position slot the emoji and its count.

It is the honest scorer for generated images (in the spirit of GenEval): trained only on real
renders from :mod:`model.data`, it must first read held-out real scenes correctly before its
verdicts on generated ones mean anything.

How it reads: a fully convolutional detector marks, on a grid at 1/4 resolution, the cell that
holds each sprite's centre and names the emoji there (CenterNet-style, with a sub-cell offset).
Instances of one emoji form one object; its count is the number of instances and its position is
the nearest anchor (left/right/top/bottom half centres, or the image centre) to the group's
centroid, which is how ``model.data.scene`` places groups. Dense per-cell supervision, shared
across positions, learns far faster on a CPU than asking a pooled head for every slot at once.
Images of any bucket are resized to about 32x32 pixels of area, keeping their aspect.

CLI: ``python -m model.evaluation.recognizer --out model/checkpoints/recognizer --steps 3000``
(resumes from ``train_state.pt`` in ``--out`` if a run was interrupted).
"""

import argparse
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from model.data.atlas import load_atlas
from model.data.dataset import EmojiScenes, SceneConfig
from model.data.scene import Scene
from model.data.vocab import BACKGROUNDS, POSITIONS

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
STATE_NAME = "train_state.pt"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "recognizer"
EVAL_SEED = 90_210  # held-out scenes for reporting; training streams use other seeds
METRICS = ("identity", "count", "background", "position", "composition")


@dataclass
class RecognizerConfig:
    """What the recognizer reads and how wide it is."""

    names: tuple[str, ...]
    backgrounds: tuple[str, ...] = tuple(BACKGROUNDS)
    positions: tuple[str, ...] = POSITIONS
    input_area: int = 32 * 32
    channels: tuple[int, int, int] = (32, 48, 96)


@dataclass
class RecognizerOutput:
    """Logits: ``background`` (B, colours); per cell ``emoji`` (B, 1 + emoji, h, w; 0 = no centre) and
    ``offset`` (B, 2, h, w), the centre's (x, y) position inside its cell in [0, 1]."""

    background: torch.Tensor
    emoji: torch.Tensor
    offset: torch.Tensor


# Where each position's group centre sits, as (x, y) fractions of the image.
ANCHORS: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "centre": (0.5, 0.5),
}
CELL = 4  # input pixels per grid cell
PEAK_THRESHOLD = 0.5


def input_shape(height: int, width: int, area: int) -> tuple[int, int]:
    """The network's input size for an image: about ``area`` pixels, same aspect, sides divisible by 4."""
    scale = math.sqrt(area / (height * width))
    return max(CELL, round(height * scale / CELL) * CELL), max(CELL, round(width * scale / CELL) * CELL)


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Recognizer(nn.Module):
    """Conv features at 1/4 resolution with a per-cell emoji-centre head and a global background head.

    Args:
        config (`RecognizerConfig`): vocabulary (emoji names, colours, positions) and widths.
    """

    def __init__(self, config: RecognizerConfig) -> None:
        super().__init__()
        unknown = set(config.positions) - set(ANCHORS)
        if unknown:
            raise ValueError(f"No anchor for positions {sorted(unknown)}.")
        self.config = config
        c1, c2, c3 = config.channels
        # 1. features: full resolution -> /2 -> /4
        self.features = nn.Sequential(
            _conv(3, c1),
            nn.MaxPool2d(2),
            _conv(c1, c2),
            _conv(c2, c2),
            nn.MaxPool2d(2),
            _conv(c2, c3),
            _conv(c3, c3),
            _conv(c3, c3),
        )
        # 2. heads
        self.emoji_out = nn.Conv2d(c3, 1 + len(config.names), 1)
        self.offset_out = nn.Conv2d(c3, 2, 1)
        self.background_out = nn.Linear(c3, len(config.backgrounds))

    def prepare(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) images of one bucket -> float (B, 3, h, w) in [-1, 1] at the input scale."""
        x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, H, W)
        size = input_shape(x.shape[2], x.shape[3], self.config.input_area)
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> RecognizerOutput:
        f = self.features(x)  # (B, C, h/4, w/4)
        return RecognizerOutput(
            background=self.background_out(f.mean((2, 3))),  # (B, colours)
            emoji=self.emoji_out(f),  # (B, 1 + emoji, h/4, w/4)
            offset=self.offset_out(f).sigmoid(),  # (B, 2, h/4, w/4)
        )

    def decode(self, out: RecognizerOutput) -> list[dict]:
        """Logits -> per image ``{"background", "objects": [(emoji, count, position)], "slots": {...}}``.

        ``slots`` maps position -> (emoji, count), keeping the most confident object where two share a
        position; ``objects`` keeps them all.
        """
        probs = out.emoji.softmax(1)  # (B, 1 + emoji, h, w)
        centre = 1.0 - probs[:, 0]  # (B, h, w)
        peaks = (centre >= F.max_pool2d(centre[:, None], 3, 1, 1)[:, 0]) & (centre > PEAK_THRESHOLD)
        kinds = probs[:, 1:].argmax(1)  # (B, h, w)
        rows, cols = out.emoji.shape[2:]
        results = []
        for b, background in enumerate(out.background.argmax(-1).tolist()):
            groups: dict[int, list[tuple[float, float, float]]] = {}
            for i, j in peaks[b].nonzero().tolist():
                x = (j + out.offset[b, 0, i, j].item()) / cols
                y = (i + out.offset[b, 1, i, j].item()) / rows
                groups.setdefault(kinds[b, i, j].item(), []).append((x, y, centre[b, i, j].item()))
            objects = []
            for kind, points in sorted(groups.items(), key=lambda g: -sum(p[2] for p in g[1])):
                cx, cy = np.mean([p[0] for p in points]), np.mean([p[1] for p in points])
                position = min(
                    self.config.positions, key=lambda p: (ANCHORS[p][0] - cx) ** 2 + (ANCHORS[p][1] - cy) ** 2
                )
                objects.append((self.config.names[kind], len(points), position))
            slots: dict[str, tuple[str, int]] = {}
            for emoji, count, position in objects:  # most confident first wins a shared slot
                slots.setdefault(position, (emoji, count))
            results.append({"background": self.config.backgrounds[background], "objects": objects, "slots": slots})
        return results

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> list[dict]:
        """Read uint8 (B, H, W, 3) images of one bucket; see :meth:`decode` for the result."""
        self.eval()
        return self.decode(self(self.prepare(images)))

    def save(self, path: str | Path) -> None:
        """Write ``model.safetensors`` (fp16, to keep the committed file small) and ``config.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype) for k, v in self.state_dict().items()
        }
        save_file(state, path / WEIGHTS_NAME)
        (path / CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Recognizer":
        """Inverse of :meth:`save`; returns the model in eval mode, in float32."""
        path = Path(path)
        raw = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        config = RecognizerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        model = cls(config)
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(path / WEIGHTS_NAME).items()}
        model.load_state_dict(state)
        return model.eval()


def scene_targets(
    scenes: list[Scene], config: RecognizerConfig, rows: int, cols: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets on a ``rows`` x ``cols`` grid: background (B,), emoji per cell (B, rows, cols; 0 = no centre)
    and the centre offset inside its cell (B, 2, rows, cols)."""
    name_index = {name: i + 1 for i, name in enumerate(config.names)}
    background = torch.tensor([config.backgrounds.index(s.background) for s in scenes])
    emoji = torch.zeros(len(scenes), rows, cols, dtype=torch.long)
    offset = torch.zeros(len(scenes), 2, rows, cols)
    for b, scene in enumerate(scenes):
        for obj in scene.objects:
            for x0, y0, x1, y1 in obj.boxes:
                x, y = (x0 + x1) / 2 / scene.width * cols, (y0 + y1) / 2 / scene.height * rows
                j, i = min(int(x), cols - 1), min(int(y), rows - 1)
                emoji[b, i, j] = name_index[obj.emoji]
                offset[b, :, i, j] = torch.tensor([x - j, y - i])
    return background, emoji, offset


def recognizer_loss(out: RecognizerOutput, targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Background CE + per-cell emoji CE (all cells, plus centre cells on their own) + L1 centre offsets."""
    background, emoji, offset = targets
    per_cell = F.cross_entropy(out.emoji, emoji, reduction="none")  # (B, h, w)
    centres = emoji > 0
    return (
        F.cross_entropy(out.background, background)
        + per_cell.mean()
        + per_cell[centres].mean()
        + (out.offset - offset).abs().sum(1)[centres].mean()
    )


def objects_in_place(prediction: dict, scene: Scene) -> int:
    """How many of the scene's objects the recognizer read as the stated emoji at the stated position.

    A prompt fails identity when one object of three is wrong or when all are: per kind, the share of objects in
    place tells a scene a model half draws from one it cannot draw.
    """
    return sum(prediction["slots"].get(obj.position, ("", 0))[0] == obj.emoji for obj in scene.objects)


def score(images: np.ndarray, scenes: list[Scene], recognizer: Recognizer | None = None) -> dict:
    """Judge images against the scenes they were meant to show.

    Per sample (lists of bools): ``identity`` (every stated emoji is read at its stated position),
    ``count`` (each stated object has its stated count), ``background``, ``position`` (the objects
    read occupy exactly the stated slots, one each, no extra objects), ``composition`` (all four). ``accuracy`` holds
    their means, ``predictions`` what was read.
    """
    recognizer = recognizer or load_default()
    predictions = []
    for start in range(0, len(scenes), 256):
        predictions += recognizer.predict(images[start : start + 256])
    result: dict = {metric: [] for metric in METRICS}
    for pred, scene in zip(predictions, scenes, strict=True):
        slots = pred["slots"]
        identity = objects_in_place(pred, scene) == len(scene.objects)
        count = all(slots.get(o.position, ("", 0))[1] == o.count for o in scene.objects)
        background = pred["background"] == scene.background
        position = sorted(o[2] for o in pred["objects"]) == sorted(o.position for o in scene.objects)
        for metric, ok in zip(
            METRICS,
            (identity, count, background, position, identity and count and background and position),
            strict=True,
        ):
            result[metric].append(ok)
    result["accuracy"] = {metric: float(np.mean(result[metric])) if scenes else 0.0 for metric in METRICS}
    result["predictions"] = predictions
    return result


_DEFAULT: dict[Path, Recognizer] = {}


def load_default(path: Path = DEFAULT_DIR) -> Recognizer:
    """The shipped recognizer, loaded once per process."""
    if path not in _DEFAULT:
        _DEFAULT[path] = Recognizer.load(path)
    return _DEFAULT[path]


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mild pixel noise and occasional blur, so the scorer tolerates imperfect generated images."""
    b = x.shape[0]
    sigma = torch.rand(b, 1, 1, 1, generator=generator) * 0.08
    x = x + sigma * torch.randn(x.shape, generator=generator)
    blur = torch.rand(b, generator=generator) < 0.2
    if blur.any():
        kernel = torch.tensor([1.0, 2.0, 1.0]) / 4
        kernel = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    return x.clamp(-1, 1)


def evaluate(model: Recognizer, config: SceneConfig, n: int, seed: int = EVAL_SEED) -> dict[str, float]:
    """Accuracy on ``n`` real held-out scenes (one batch per bucket index, buckets mixed)."""
    data = EmojiScenes(replace(config, split="heldout"), seed=seed)
    totals = dict.fromkeys(METRICS, 0.0)
    done = 0
    for index in range(math.ceil(n / 64)):
        images, _, scenes = data.batch(index, min(64, n - done))
        accuracy = score(images, scenes, model)["accuracy"]
        for metric in METRICS:
            totals[metric] += accuracy[metric] * len(scenes)
        done += len(scenes)
    return {metric: total / done for metric, total in totals.items()}


def train_recognizer(
    config: SceneConfig,
    steps: int,
    batch_size: int,
    out_dir: str | Path,
    seed: int = 0,
    max_minutes: float | None = None,
    eval_every: int = 500,
    eval_scenes: int = 512,
    init: str | Path | None = None,
    lr: float = 2e-3,
) -> dict:
    """Train on real scenes from ``config`` (train and held-out splits mixed; the scorer must know every combination).

    Also draws 64-px-scale scenes when ``config.sample_size`` is 32, so generated images at either
    scale can be read. ``init`` starts from saved recognizer weights for a further cycle (use a new
    ``seed`` so it sees new scenes). Resumes from ``out_dir/train_state.pt``; writes the final
    weights to ``out_dir`` and returns ``{"losses": [...], "heldout": accuracy dict}``.
    """
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = load_atlas().names[: config.num_emoji]
    model = Recognizer.load(init).train() if init is not None else Recognizer(RecognizerConfig(names=names))
    if model.config.names != names:
        raise ValueError(f"{init} reads {len(model.config.names)} emoji; the config asks for {len(names)}.")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    state_path, start, losses = out_dir / STATE_NAME, 0, []
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, losses = state["step"], state["losses"]
        logger.info("Resuming recognizer training at step %d", start)
    scales = [config.sample_size] + ([config.sample_size * 2] if config.sample_size == 32 else [])
    streams = [
        EmojiScenes(replace(config, sample_size=size, split=split), seed=seed * 7919 + 1)
        for size in scales
        for split in ("train", "heldout")
    ]
    weights = [0.45, 0.2, 0.25, 0.1] if len(streams) == 4 else [0.7, 0.3]
    generator = torch.Generator().manual_seed(seed)
    began = time.monotonic()
    model.train()
    for step in tqdm(range(start, steps), initial=start, total=steps, desc="recognizer", mininterval=5):
        stream = random.Random(f"{seed}/{step}").choices(streams, weights)[0]
        images, _, scenes = stream.batch(step, batch_size)
        x = _augment(model.prepare(images), generator)
        targets = scene_targets(scenes, model.config, x.shape[2] // CELL, x.shape[3] // CELL)
        loss = recognizer_loss(model(x), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        done = step + 1
        out_of_time = max_minutes is not None and time.monotonic() - began > 60 * max_minutes
        if done % eval_every == 0 or done == steps or out_of_time:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "step": done,
                    "losses": losses,
                },
                state_path,
            )
            logger.info("step %d loss %.4f (mean of last 50 %.4f)", done, losses[-1], np.mean(losses[-50:]))
        if out_of_time:
            logger.warning("Stopping at step %d of %d: the %.1f-minute budget is spent", done, steps, max_minutes)
            break
    model.eval()
    heldout = evaluate(model, config, eval_scenes)
    logger.info("Held-out real scenes (%d): %s", eval_scenes, {k: round(v, 4) for k, v in heldout.items()})
    model.save(out_dir)
    (out_dir / "metrics.json").write_text(
        json.dumps(
            {
                "init": None if init is None else str(init),
                "seed": seed,
                "steps": len(losses),
                "batch_size": batch_size,
                "peak_lr": lr,
                "heldout_real": heldout,
                "heldout_scenes": eval_scenes,
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    if len(losses) >= steps:
        state_path.unlink(missing_ok=True)
    return {"losses": losses, "heldout": heldout}


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the emoji-scene recognizer on real rendered scenes.")
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="output folder (weights, config, metrics)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--sample-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop early (and keep the resume state)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--init", type=Path, default=None, help="start from these saved recognizer weights")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle schedule)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    train_recognizer(
        SceneConfig(sample_size=args.sample_size),
        steps=args.steps,
        batch_size=args.batch_size,
        out_dir=args.out,
        seed=args.seed,
        max_minutes=args.max_minutes,
        init=args.init,
        lr=args.lr,
    )


if __name__ == "__main__":
    main()
