"""A reward model learned from the app's exported human votes, in the spirit of PickScore and ImageReward.

Both of those put a small scoring head on a frozen (or lightly tuned) image-text backbone and fit it to
human choices. Here the backbone is what this project already trusts: the prompt's all-MiniLM-L6-v2
embedding (mean-pooled, unit length) and the recognizer's conv trunk on the image (mean- and max-pooled,
so it sees both the background and the brightest emoji evidence). Only the head learns, so the frozen
features are computed once per distinct image and caption, and an epoch costs only the head.

Training reads what ``python -m feedback.export`` writes:

- ``pickapic`` pairs: a Bradley-Terry loss ``-log σ(s_w - s_l)``, written as the cross-entropy of
  ``σ(s_0 - s_1)`` against ``label_0`` so a tie (0.5/0.5) is a soft target rather than dropped.
- ``kto`` 👍/👎 rows: a logistic loss on ``s + b`` with a learned bias ``b`` (a score has no zero point).

The held-out split is by caption (no caption in both parts), so the numbers say how the model judges
prompts it never saw. Next to held-out accuracy stands the raters' own ceiling: how often one rater's
choice matches the other raters' majority on the same two images.

CLI (``python -m model.evaluation.reward --help``):

- ``train --pairs EXPORT --votes EXPORT --out DIR``: fit the head, write the weights and ``metrics.json``.
- ``relabel --model DIR --pairs EXPORT --out EXPORT2``: rewrite a pairs export's labels by the model
  (as Diffusion-DPO's ``--choice_model``), in the same format.
- ``score --model DIR --prompt TEXT IMAGE...``: print the scores as JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import cache
from hashlib import sha256
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from datasets.table import InMemoryTable
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME
from PIL import Image, UnidentifiedImageError
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from model.evaluation.recognizer import DEFAULT_DIR as RECOGNIZER_DIR
from model.evaluation.recognizer import Recognizer, RecognizerConfig
from model.offline import apply_offline_defaults
from model.pipeline.text_encoder import encode_text, load_text_encoder

logger = logging.getLogger("model.evaluation.reward")

METRICS_FILE = "metrics.json"
PAIR_COLUMNS = ("caption", "jpg_0", "jpg_1", "label_0")
BOOTSTRAP_SAMPLES = 10_000
CHUNK = 256  # images or captions per frozen forward pass
TEXT_DIM = 384  # all-MiniLM-L6-v2


# -- frozen text features ---------------------------------------------------------------------------


@cache
def _text_encoder():
    """The project's frozen MiniLM, loaded once per process from local files."""
    apply_offline_defaults()
    return load_text_encoder()


@torch.no_grad()
def embed_prompts(prompts: list[str]) -> torch.Tensor:
    """Unit-length mean-pooled MiniLM embeddings (B, 384), as sentence-transformers pools this model.

    Each distinct prompt is encoded once, so scoring n images of one prompt costs one encoder pass.
    """
    distinct = list(dict.fromkeys(prompts))
    if not distinct:
        return torch.empty(0, TEXT_DIM)
    tokenizer, encoder = _text_encoder()
    pooled = []
    for start in range(0, len(distinct), CHUNK):
        states, mask = encode_text(tokenizer, encoder, distinct[start : start + CHUNK])  # (b, L, 384), (b, L)
        mask = mask[..., None].to(states.dtype)  # (b, L, 1)
        pooled.append(F.normalize((states * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1))  # (b, 384)
    table = torch.cat(pooled)  # (distinct, 384)
    index = {prompt: i for i, prompt in enumerate(distinct)}
    return table[[index[p] for p in prompts]]  # (B, 384)


# -- the model --------------------------------------------------------------------------------------


class RewardModel(ModelMixin, ConfigMixin):
    r"""
    A scalar preference score for an (image, prompt): a small trainable head over frozen features.

    The image side is the recognizer's conv trunk (a frozen copy is saved with the head, about 1 MB, so
    the folder stays valid when the shipped recognizer is retrained); the text side is the project's
    frozen MiniLM, which is not saved (it comes from its installed package).

    Parameters:
        recognizer_config (`dict`): the recognizer's `RecognizerConfig` as a dict (emoji names, colours, widths).
            (Not `recognizer`: diffusers would answer `self.recognizer` with the config entry.)
        text_dim (`int`, defaults to 384): width of the prompt embedding.
        hidden_dim (`int`, defaults to 64): width of both projections and of the head.
        dropout (`float`, defaults to 0.2): dropout on both inputs while training; the data are small.
    """

    @register_to_config
    def __init__(self, recognizer_config: dict, text_dim: int = TEXT_DIM, hidden_dim: int = 64, dropout: float = 0.2):
        super().__init__()
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim must be at least 1, got {hidden_dim}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        # 1. frozen image trunk
        config = RecognizerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recognizer_config.items()})
        self.recognizer = Recognizer(config).requires_grad_(False).eval()
        image_dim = 2 * config.channels[-1]  # mean- and max-pooled trunk channels
        # 2. projections of both sides into one width
        self.image_proj = nn.Sequential(nn.LayerNorm(image_dim), nn.Dropout(dropout), nn.Linear(image_dim, hidden_dim))
        self.text_proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(text_dim, hidden_dim))
        # 3. head over [image, text, image * text]: quality alone, prompt alone, and their match
        self.head = nn.Sequential(nn.Linear(3 * hidden_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, 1))
        self.vote_bias = nn.Parameter(torch.zeros(()))  # P(👍) = σ(score + vote_bias)

    @classmethod
    def from_recognizer(cls, path: str | Path = RECOGNIZER_DIR, **head: int | float) -> RewardModel:
        """A fresh head (``hidden_dim``, ``dropout``) on a copy of the recognizer saved at ``path``."""
        recognizer = Recognizer.load(path)
        model = cls(recognizer_config=asdict(recognizer.config), **head)
        model.recognizer.load_state_dict(recognizer.state_dict())
        return model.eval()

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> RewardModel:
        """As diffusers loads, then with every tensor in freshly allocated memory.

        The loaded tensors are not 64-byte aligned, so BLAS takes other kernels and a loaded model's scores
        would differ from the saved model's in the last bit; aligned copies make them identical.
        """
        model = super().from_pretrained(*args, **kwargs)
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.data = tensor.data.clone()
        return model

    def train(self, mode: bool = True) -> RewardModel:
        """Train the head only: the trunk's BatchNorm keeps its running statistics."""
        super().train(mode)
        self.recognizer.eval()
        return self

    @torch.no_grad()
    def image_features(self, images: list[Image.Image]) -> torch.Tensor:
        """Frozen pooled trunk features (B, 2C); images of any size, each resized as the recognizer reads it."""
        out = torch.empty(len(images), 2 * self.recognizer.config.channels[-1])
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            by_size[image.size].append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), CHUNK):
                chunk = indices[start : start + CHUNK]
                pixels = np.stack([np.asarray(images[i].convert("RGB")) for i in chunk])  # (b, H, W, 3) uint8
                f = self.recognizer.features(self.recognizer.prepare(pixels))  # (b, C, h, w)
                out[chunk] = torch.cat([f.mean((2, 3)), f.amax((2, 3))], dim=1)  # (b, 2C)
        return out

    def forward(self, image_features: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Scores (B,) from frozen image features (B, 2C) and prompt embeddings (B, 384)."""
        a = self.image_proj(image_features)  # (B, hidden)
        b = self.text_proj(text_embeddings)  # (B, hidden)
        return self.head(torch.cat([a, b, a * b], dim=-1)).squeeze(-1)  # (B,)

    @torch.no_grad()
    def score(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        """Scores (B,) of each image for its prompt; higher is preferred. Comparable within one model only."""
        if len(images) != len(prompts):
            raise ValueError(f"score needs one prompt per image, got {len(images)} images and {len(prompts)} prompts.")
        if not images:
            return torch.empty(0)
        self.eval()
        return self(self.image_features(images), embed_prompts(prompts))


def load_reward_model(path: str | Path, flag: str = "--model") -> RewardModel:
    """A saved reward model, with a one-sentence error naming ``flag`` when the folder holds none."""
    path = Path(path)
    missing = [name for name in (CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME) if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{flag} {path} holds no reward model ({' and '.join(missing)} missing).")
    return RewardModel.from_pretrained(path).eval()


def ranked(model: RewardModel, images: list[Image.Image], prompt: str) -> tuple[list[int], list[float]]:
    """Indices of the images for ``prompt``, best first (ties keep the earlier image first), and every score."""
    scores = model.score(images, [prompt] * len(images))  # (n,)
    return torch.argsort(scores, descending=True, stable=True).tolist(), scores.tolist()


def best_of_n(model: RewardModel, images: list[Image.Image], prompt: str, k: int = 1) -> list[int]:
    """Indices of the ``k`` best images for ``prompt``, best first (ties keep the earlier image first)."""
    if not 1 <= k <= len(images):
        raise ValueError(f"k must be between 1 and the number of images ({len(images)}), got {k}.")
    return ranked(model, images, prompt)[0][:k]


# -- reading exports --------------------------------------------------------------------------------


def read_export(path: str | Path, flag: str) -> tuple[pa.Table, Path, str]:
    """The rows of an export as an Arrow table, the folder file names resolve against, and its layout.

    Layouts: ``parquet`` (a file, or a folder of them), ``datasets`` (``save_to_disk``) and ``imagefolder``
    (``metadata.jsonl`` with PNG files, the kto ``--as jsonl`` output).
    """
    try:
        return _read_export(Path(path), flag)
    except (pa.ArrowException, json.JSONDecodeError) as error:
        raise ValueError(f"{flag} {path} cannot be read as an export ({type(error).__name__}).") from error


def _read_export(path: Path, flag: str) -> tuple[pa.Table, Path, str]:
    if not path.exists():
        raise FileNotFoundError(f"{flag} {path} does not exist.")
    if path.is_file():
        if path.suffix == ".parquet":
            return pq.read_table(path), path.parent, "parquet"
        if path.name == "metadata.jsonl":
            return _read_jsonl(path), path.parent, "imagefolder"
        raise ValueError(f"{flag} {path} is neither a .parquet file nor an export folder.")
    if (path / "dataset_info.json").is_file():
        return datasets.load_from_disk(str(path)).with_format("arrow")[:], path, "datasets"
    if (path / "metadata.jsonl").is_file():
        return _read_jsonl(path / "metadata.jsonl"), path, "imagefolder"
    files = sorted(path.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(
            f"{flag} {path} holds no export (no .parquet file, datasets folder or metadata.jsonl)."
        )
    return pa.concat_tables([pq.read_table(file) for file in files]), path, "parquet"


def _read_jsonl(path: Path) -> pa.Table:
    return pa.Table.from_pylist([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def _require(table: pa.Table, columns: tuple[str, ...], flag: str, path: Path, kind: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{flag} {path} is not a {kind} export: it has no column {', '.join(missing)}.")


class ImageBank:
    """Distinct images by content, each decoded once; an index into ``images`` stands for an image."""

    def __init__(self) -> None:
        self.images: list[Image.Image] = []
        self._index: dict[bytes, int] = {}

    def add(self, data: object, where: str) -> int:
        """Index of the image in ``data`` (bytes, or an HF image dict); ``where`` names it in errors."""
        if isinstance(data, dict):
            data = data.get("bytes")
        if not isinstance(data, bytes):
            raise ValueError(f"{where} holds no image bytes.")
        key = sha256(data).digest()
        if key not in self._index:
            try:
                image = Image.open(io.BytesIO(data)).convert("RGB")
            except (UnidentifiedImageError, OSError) as error:
                raise ValueError(f"{where} is not an image PIL can read ({error}).") from error
            self._index[key] = len(self.images)
            self.images.append(image)
        return self._index[key]


@dataclass
class Judgements:
    """What the exports say, pointing into their distinct images and captions (each featurised once)."""

    bank: ImageBank = field(default_factory=ImageBank)
    captions: list[str] = field(default_factory=list)
    pair_caption: list[int] = field(default_factory=list)  # (P,) index into captions
    pair_images: list[tuple[int, int]] = field(default_factory=list)  # (P, 2) image 0, image 1
    pair_label: list[float] = field(default_factory=list)  # (P,) label_0: 1 image 0 won, 0 it lost, 0.5 tie
    pair_rater: list[str | None] = field(default_factory=list)  # (P,) user_id, None when the export has none
    vote_caption: list[int] = field(default_factory=list)  # (V,)
    vote_image: list[int] = field(default_factory=list)  # (V,)
    vote_label: list[float] = field(default_factory=list)  # (V,) 1 👍, 0 👎
    skipped: Counter = field(default_factory=Counter)
    _caption_index: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def caption(self, text: str) -> int:
        """Index of caption ``text``, added on first sight."""
        if text not in self._caption_index:
            self._caption_index[text] = len(self.captions)
            self.captions.append(text)
        return self._caption_index[text]

    def add_pairs(self, path: str | Path, flag: str = "--pairs") -> None:
        """Read a ``pickapic`` export; pairs of one image with itself say nothing and are skipped."""
        table, _, _ = read_export(path, flag)
        _require(table, PAIR_COLUMNS, flag, Path(path), "pickapic")
        raters = table.column("user_id").to_pylist() if "user_id" in table.column_names else [None] * len(table)
        rows = zip(*(table.column(c).to_pylist() for c in PAIR_COLUMNS), raters, strict=True)
        for i, (caption, jpg_0, jpg_1, label_0, rater) in enumerate(tqdm(rows, total=len(table), desc="pairs")):
            where = f"{flag} {path} row {i}"
            images = (self.bank.add(jpg_0, f"{where} jpg_0"), self.bank.add(jpg_1, f"{where} jpg_1"))
            if images[0] == images[1]:
                self.skipped["pairs_of_identical_images"] += 1
                continue
            if label_0 is None or not 0.0 <= label_0 <= 1.0:
                raise ValueError(f"{where} label_0 is {label_0!r}, not a number from 0 to 1.")
            self.pair_caption.append(self.caption(caption))
            self.pair_images.append(images)
            self.pair_label.append(float(label_0))
            self.pair_rater.append(None if rater is None else str(rater))

    def add_votes(self, path: str | Path, flag: str = "--votes") -> None:
        """Read a ``kto`` export (Parquet or datasets with an ``image`` column, or an imagefolder)."""
        table, folder, layout = read_export(path, flag)
        _require(table, ("caption", "label"), flag, Path(path), "kto")
        image_column = "file_name" if layout == "imagefolder" else "image"
        _require(table, (image_column,), flag, Path(path), "kto")
        rows = zip(*(table.column(c).to_pylist() for c in ("caption", image_column, "label")), strict=True)
        for i, (caption, image, label) in enumerate(tqdm(rows, total=len(table), desc="votes")):
            where = f"{flag} {path} row {i}"
            if layout == "imagefolder":
                file = folder / str(image)
                if not file.is_file():
                    raise FileNotFoundError(f"{where} names {file}, which does not exist.")
                image = file.read_bytes()
            if not isinstance(label, bool):
                raise ValueError(f"{where} label is {label!r}, not true or false.")
            self.vote_caption.append(self.caption(caption))
            self.vote_image.append(self.bank.add(image, f"{where} image"))
            self.vote_label.append(float(label))


def held_out_captions(captions: list[str], fraction: float, seed: int) -> set[int]:
    """Indices of the captions held out: a seeded ``fraction`` of them, at least one, never all."""
    if fraction <= 0 or len(captions) < 2:
        return set()
    order = sorted(range(len(captions)), key=captions.__getitem__)
    random.Random(seed).shuffle(order)
    n = min(len(captions) - 1, max(1, round(fraction * len(captions))))
    return set(order[:n])


# -- metrics ----------------------------------------------------------------------------------------


def pairwise_correct(s0: np.ndarray, s1: np.ndarray, label_0: np.ndarray) -> np.ndarray:
    """Per non-tie pair: 1 when the higher score is the chosen image, 0 when not, 0.5 for equal scores."""
    decided = label_0 != 0.5
    s0, s1, won = s0[decided], s1[decided], label_0[decided] > 0.5
    return np.where(s0 == s1, 0.5, ((s0 > s1) == won).astype(float))


def accuracy_interval(correct: np.ndarray, seed: int = 0) -> dict:
    """Mean of per-item outcomes with a 95% percentile bootstrap interval over items."""
    n = len(correct)
    if n == 0:
        return {"accuracy": None, "ci95": None, "n": 0}
    mean = float(np.mean(correct))
    if n < 2:  # nothing to resample
        return {"accuracy": mean, "ci95": None, "n": n}
    interval = stats.bootstrap(
        (correct,), np.mean, n_resamples=BOOTSTRAP_SAMPLES, method="percentile", rng=np.random.default_rng(seed)
    ).confidence_interval
    return {"accuracy": mean, "ci95": [float(interval.low), float(interval.high)], "n": n}


def rater_ceiling(images: list[tuple[int, int]], labels: list[float], raters: list[str | None]) -> dict:
    """How often one rater's choice matches the other raters' majority on the same two images (either order).

    Only pairs whose non-tie judgements come from two or more raters count; ties are ignored. Each
    judgement is compared with the majority of the other raters' judgements; an even split among them
    earns half (the chance of a coin-flip tie-break), so three raters split 2-1 give (½ + ½ + 0) / 3.
    """
    if any(r is None for r in raters):
        return {"agreement": None, "judgements": 0, "pairs": 0, "even_splits": 0, "note": "no user_id column"}
    winners: dict[frozenset[int], list[tuple[str, int]]] = defaultdict(list)
    for (a, b), label, rater in zip(images, labels, raters, strict=True):
        if label != 0.5:
            winners[frozenset((a, b))].append((rater, a if label > 0.5 else b))
    outcomes, pairs, even = [], 0, 0
    for judgements in winners.values():
        if len({rater for rater, _ in judgements}) < 2:
            continue
        pairs += 1
        for rater, winner in judgements:
            others = Counter(w for r, w in judgements if r != rater)
            agree, disagree = others[winner], sum(others.values()) - others[winner]
            even += agree == disagree
            outcomes.append(1.0 if agree > disagree else 0.5 if agree == disagree else 0.0)
    note = (
        f"{len(outcomes)} judgements of {pairs} pairs judged by two or more raters"
        if outcomes
        else "no pair was judged by two or more raters, so the raters' ceiling cannot be measured"
    )
    agreement = float(np.mean(outcomes)) if outcomes else None
    return {"agreement": agreement, "judgements": len(outcomes), "pairs": pairs, "even_splits": even, "note": note}


# -- training ---------------------------------------------------------------------------------------


@dataclass
class TrainingConfig:
    """How the head is fitted; the defaults suit a few hundred to a few thousand judgements."""

    epochs: int = 200
    lr: float = 3e-3
    weight_decay: float = 0.05
    batch_size: int = 256
    hidden_dim: int = 64
    dropout: float = 0.2
    seed: int = 0
    val_fraction: float = 0.25


@dataclass
class Features:
    """All an epoch needs: frozen features, computed once, and every judgement as indices into them."""

    images: torch.Tensor  # (N, 2C) per distinct image
    captions: torch.Tensor  # (C, 384) per distinct caption
    pair_caption: torch.Tensor  # (P,)
    pair_images: torch.Tensor  # (P, 2)
    pair_label: torch.Tensor  # (P,) label_0
    vote_caption: torch.Tensor  # (V,)
    vote_image: torch.Tensor  # (V,)
    vote_label: torch.Tensor  # (V,) 1 👍, 0 👎


def bank_features(model: RewardModel, bank: ImageBank) -> torch.Tensor:
    """Frozen features (N, 2C) of every distinct image in ``bank``, in chunks with a progress bar."""
    images = bank.images
    chunks = [model.image_features(images[s : s + CHUNK]) for s in tqdm(range(0, len(images), CHUNK), desc="images")]
    return torch.cat(chunks) if chunks else torch.empty(0, 2 * model.recognizer.config.channels[-1])


def featurise(model: RewardModel, data: Judgements) -> Features:
    """Run the frozen trunk and text encoder once over every distinct image and caption."""
    return Features(
        images=bank_features(model, data.bank),
        captions=embed_prompts(data.captions),
        pair_caption=torch.tensor(data.pair_caption, dtype=torch.long),
        pair_images=torch.tensor(data.pair_images, dtype=torch.long).reshape(-1, 2),
        pair_label=torch.tensor(data.pair_label, dtype=torch.float32),
        vote_caption=torch.tensor(data.vote_caption, dtype=torch.long),
        vote_image=torch.tensor(data.vote_image, dtype=torch.long),
        vote_label=torch.tensor(data.vote_label, dtype=torch.float32),
    )


@dataclass
class Split:
    """Row indices of the pairs and votes on one side of the caption split."""

    pairs: np.ndarray
    votes: np.ndarray


def split_rows(data: Judgements, held: set[int]) -> tuple[Split, Split]:
    """(train, held-out) rows: a row is held out when its caption is."""
    pair_held = np.array([c in held for c in data.pair_caption], dtype=bool)
    vote_held = np.array([c in held for c in data.vote_caption], dtype=bool)
    return (
        Split(np.flatnonzero(~pair_held), np.flatnonzero(~vote_held)),
        Split(np.flatnonzero(pair_held), np.flatnonzero(vote_held)),
    )


def pair_logits(model: RewardModel, features: Features, rows: np.ndarray) -> torch.Tensor:
    """``s_0 - s_1`` (P,) for pair ``rows``."""
    rows = torch.from_numpy(rows)
    caption = features.captions[features.pair_caption[rows]]  # (P, 384)
    images = features.images[features.pair_images[rows]]  # (P, 2, 2C)
    return model(images[:, 0], caption) - model(images[:, 1], caption)  # (P,)


def vote_logits(model: RewardModel, features: Features, rows: np.ndarray) -> torch.Tensor:
    """``s + b`` (V,) for vote ``rows``: the log-odds of a 👍."""
    rows = torch.from_numpy(rows)
    caption = features.captions[features.vote_caption[rows]]  # (V, 384)
    return model(features.images[features.vote_image[rows]], caption) + model.vote_bias  # (V,)


def reward_loss(model: RewardModel, features: Features, split: Split) -> torch.Tensor:
    """Bradley-Terry on pairs (soft target for ties) plus the logistic 👍/👎 loss, each a mean over its rows."""
    loss = torch.zeros(())
    if len(split.pairs):
        target = features.pair_label[torch.from_numpy(split.pairs)]  # (P,)
        loss = loss + F.binary_cross_entropy_with_logits(pair_logits(model, features, split.pairs), target)
    if len(split.votes):
        target = features.vote_label[torch.from_numpy(split.votes)]  # (V,)
        loss = loss + F.binary_cross_entropy_with_logits(vote_logits(model, features, split.votes), target)
    return loss


def fit_head(model: RewardModel, features: Features, train: Split, config: TrainingConfig) -> float:
    """AdamW on the head; each step takes the same share of the pairs and of the votes. Returns the last loss."""
    generator = torch.Generator().manual_seed(config.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    steps = max(1, math.ceil(max(len(train.pairs), len(train.votes)) / config.batch_size))
    model.train()
    loss = torch.zeros(())
    for _ in tqdm(range(config.epochs), desc="epochs", mininterval=2):
        pairs = train.pairs[torch.randperm(len(train.pairs), generator=generator).numpy()]
        votes = train.votes[torch.randperm(len(train.votes), generator=generator).numpy()]
        for batch_pairs, batch_votes in zip(np.array_split(pairs, steps), np.array_split(votes, steps), strict=True):
            loss = reward_loss(model, features, Split(batch_pairs, batch_votes))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    return loss.item()


@torch.no_grad()
def judge(model: RewardModel, features: Features, split: Split, seed: int) -> dict:
    """Pairwise and 👍/👎 accuracy of ``split``, each with its 95% bootstrap interval over rows."""
    model.eval()
    diff = pair_logits(model, features, split.pairs).numpy()  # (P,)
    pairs = pairwise_correct(diff, np.zeros_like(diff), features.pair_label.numpy()[split.pairs])
    labels = features.vote_label.numpy()[split.votes] > 0.5  # (V,)
    liked = vote_logits(model, features, split.votes).numpy() > 0  # (V,)
    votes = accuracy_interval((liked == labels).astype(float), seed)
    # Always answering the commoner vote scores this much; an accuracy means something only above it.
    votes["majority_baseline"] = float(max(labels.mean(), 1 - labels.mean())) if len(labels) else None
    return {"pairwise": accuracy_interval(pairs, seed), "votes": votes}


def train_reward(
    data: Judgements,
    out_dir: str | Path,
    config: TrainingConfig | None = None,
    recognizer: str | Path = RECOGNIZER_DIR,
    sources: dict[str, str | None] | None = None,
) -> dict:
    """Fit a reward model on ``data``, save it and ``metrics.json`` to ``out_dir``, and return the metrics."""
    if not data.pair_caption and not data.vote_caption:
        raise ValueError("The exports hold no usable pairs or votes to train on.")
    config = config or TrainingConfig()
    torch.manual_seed(config.seed)
    began = time.monotonic()
    model = RewardModel.from_recognizer(recognizer, hidden_dim=config.hidden_dim, dropout=config.dropout)
    features = featurise(model, data)
    held = held_out_captions(data.captions, config.val_fraction, config.seed)
    train, heldout = split_rows(data, held)
    logger.info(
        "Training on %d pairs and %d votes (%d captions); holding out %d pairs and %d votes (%d captions)",
        len(train.pairs),
        len(train.votes),
        len(data.captions) - len(held),
        len(heldout.pairs),
        len(heldout.votes),
        len(held),
    )
    untrained = judge(model, features, heldout, config.seed)
    final_loss = fit_head(model, features, train, config)
    seconds = time.monotonic() - began
    metrics = {
        "data": {
            **(sources or {}),
            "pairs": len(data.pair_caption),
            "ties": sum(label == 0.5 for label in data.pair_label),
            "votes": len(data.vote_caption),
            "distinct_images": len(data.bank.images),
            "captions": len(data.captions),
            "held_out_captions": len(held),
            "skipped": dict(data.skipped),
        },
        "training": {**asdict(config), "final_loss": final_loss, "seconds": round(seconds, 1)},
        "train": judge(model, features, train, config.seed),
        "heldout": judge(model, features, heldout, config.seed),
        "heldout_untrained_head": untrained,
        "raters_ceiling": rater_ceiling(data.pair_images, data.pair_label, data.pair_rater),
        "notes": (
            "Held-out rows are those of captions the head never trained on. Accuracies leave ties out and have "
            "95% percentile bootstrap intervals over held-out rows. The raters' ceiling uses every pair in the "
            "pairs export (it measures the raters, not the split)."
        ),
    }
    out = Path(out_dir)
    model.save_pretrained(out)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    logger.info("Saved the reward model to %s; %s", out, summary(metrics))
    return metrics


def summary(metrics: dict) -> str:
    """One line of the numbers that matter, for the log and the CLI."""

    def show(result: dict) -> str:
        if result["accuracy"] is None:
            return "no held-out rows"
        ci = result["ci95"]
        interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        baseline = result.get("majority_baseline")
        versus = f", always the commoner vote: {baseline:.3f}" if baseline is not None else ""
        return f"{result['accuracy']:.3f}{interval} (n={result['n']}{versus})"

    ceiling = metrics["raters_ceiling"]
    ceiling_text = f"{ceiling['agreement']:.3f}" if ceiling["agreement"] is not None else "unmeasured"
    return (
        f"held-out pairwise accuracy {show(metrics['heldout']['pairwise'])}, "
        f"held-out 👍/👎 accuracy {show(metrics['heldout']['votes'])}, "
        f"raters' ceiling {ceiling_text} ({ceiling['note']})"
    )


# -- relabelling ------------------------------------------------------------------------------------


def relabel(model: RewardModel, pairs: str | Path, out_dir: str | Path, flag: str = "--pairs") -> dict:
    """Rewrite a pickapic export's labels by ``model`` (label_0 = 1 when image 0 scores higher), same format.

    As Diffusion-DPO's ``--choice_model`` does, every pair is decided; equal scores give a tie. The
    ``best_image_uid`` column follows the new labels; every other column is kept as it was.
    """
    pairs, out = Path(pairs), Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} is not an empty folder; choose a new folder for the relabelled export.")
    table, _, layout = read_export(pairs, flag)
    if layout == "imagefolder":
        raise ValueError(f"{flag} {pairs} is a kto imagefolder, not a pickapic export.")
    _require(table, PAIR_COLUMNS, flag, pairs, "pickapic")

    bank = ImageBank()
    jpg_0, jpg_1 = (table.column(c).to_pylist() for c in ("jpg_0", "jpg_1"))
    where = f"{flag} {pairs} row"
    first = [bank.add(jpg, f"{where} {i} jpg_0") for i, jpg in enumerate(tqdm(jpg_0, desc="pairs"))]  # (P,)
    second = [bank.add(jpg, f"{where} {i} jpg_1") for i, jpg in enumerate(jpg_1)]  # (P,)
    image_features = bank_features(model, bank)  # (N, 2C)
    text = embed_prompts(table.column("caption").to_pylist())  # (P, 384)
    with torch.no_grad():
        model.eval()
        s0 = model(image_features[first], text).numpy()  # (P,)
        s1 = model(image_features[second], text).numpy()  # (P,)
    label_0 = np.where(s0 > s1, 1.0, np.where(s0 < s1, 0.0, 0.5))  # (P,)
    old = np.asarray(table.column("label_0").to_pylist(), dtype=float)

    replaced = {"label_0": label_0, "label_1": 1.0 - label_0}
    if {"best_image_uid", "image_0_uid", "image_1_uid"} <= set(table.column_names):
        uid_0, uid_1 = table.column("image_0_uid").to_pylist(), table.column("image_1_uid").to_pylist()
        replaced["best_image_uid"] = [
            a if label == 1.0 else b if label == 0.0 else "" for a, b, label in zip(uid_0, uid_1, label_0)
        ]
    for name, values in replaced.items():
        if name in table.column_names:
            position = table.column_names.index(name)
            column = table.schema.field(position)
            table = table.set_column(position, column, pa.array(values, column.type))

    out.mkdir(parents=True, exist_ok=True)
    if layout == "datasets":
        original = datasets.load_from_disk(str(pairs))
        datasets.Dataset(InMemoryTable(table), info=original.info).save_to_disk(str(out))
    else:
        pq.write_table(table, out / "train.parquet")
    counts = {
        "rows": len(table),
        "labels_changed": int(np.sum(old != label_0)),
        "ties_decided": int(np.sum((old == 0.5) & (label_0 != 0.5))),
        "ties_left": int(np.sum(label_0 == 0.5)),
    }
    (out / "README.md").write_text(
        "# Pairs relabelled by a reward model\n\n"
        f"The rows of `{pairs}` with `label_0`, `label_1` and `best_image_uid` rewritten by the reward model "
        f"`{model.config.get('_name_or_path', 'in memory')}` through `python -m model.evaluation.reward relabel` "
        "(label_0 = 1 when image 0 scores higher; equal scores tie).\n"
        "Every other column, `user_id` and `source` included, is as exported: they describe the original "
        "judgement, not the new label.\n\n" + "".join(f"- {name}: {value}\n" for name, value in counts.items()),
        encoding="utf-8",
    )
    logger.info("Relabelled %d pairs into %s (%d labels changed)", counts["rows"], out, counts["labels_changed"])
    return counts


# -- CLI --------------------------------------------------------------------------------------------


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}.")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value}.")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, not {value}.")
    return number


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainingConfig()
    parser = argparse.ArgumentParser(
        prog="python -m model.evaluation.reward",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python -m model.evaluation.reward train --pairs exports/dpo --votes exports/kto --out runs/reward\n"
            "  python -m model.evaluation.reward relabel --model runs/reward --pairs exports/dpo --out exports/rm\n"
            "  python -m model.evaluation.reward score --model runs/reward --prompt 'a cat on the left' a.png b.png"
        ),
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log progress")
    common.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's own choice)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,relabel,score}")

    train = commands.add_parser(
        "train",
        parents=[common],
        help="fit the head on exported pairs and/or 👍/👎 rows",
        description=(
            "Fit the reward head on --pairs, --votes or both; writes the model and metrics.json (held-out "
            "accuracies with 95% bootstrap intervals, the raters' ceiling)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("--pairs", type=Path, help="a `feedback.export --format pickapic` export (folder or file)")
    train.add_argument("--votes", type=Path, help="a `feedback.export --format kto` export (folder or file)")
    train.add_argument(
        "--out", type=Path, required=True, help="folder for the model and metrics.json (files there are replaced)"
    )
    train.add_argument("--epochs", type=_positive_int, default=defaults.epochs, help="passes over the training rows")
    train.add_argument("--lr", type=_positive_float, default=defaults.lr, help="AdamW learning rate")
    train.add_argument("--seed", type=int, default=defaults.seed, help="seed of the split, the head and the order")
    train.add_argument(
        "--val-fraction", type=_fraction, default=defaults.val_fraction, help="share of captions held out"
    )
    train.add_argument(
        "--batch-size", type=_positive_int, default=defaults.batch_size, help="pairs (and votes) per step"
    )
    train.add_argument("--hidden-dim", type=_positive_int, default=defaults.hidden_dim, help="width of the head")
    train.add_argument(
        "--recognizer", type=Path, default=RECOGNIZER_DIR, help="recognizer whose trunk gives the image features"
    )

    relabel_cmd = commands.add_parser(
        "relabel",
        parents=[common],
        help="rewrite a pickapic export's labels by the reward model (Diffusion-DPO --choice_model)",
        description=(
            "Rewrite label_0/label_1/best_image_uid by the model's scores (label_0 = 1 when image 0 scores higher),"
            " in the same format, as Diffusion-DPO's --choice_model chooses."
        ),
    )
    relabel_cmd.add_argument("--model", type=Path, required=True, help="a folder written by `train`")
    relabel_cmd.add_argument("--pairs", type=Path, required=True, help="a pickapic export (Parquet or datasets)")
    relabel_cmd.add_argument("--out", type=Path, required=True, help="new or empty folder for the relabelled export")

    score = commands.add_parser("score", parents=[common], help="print the scores of images for one prompt as JSON")
    score.add_argument("--model", type=Path, required=True, help="a folder written by `train`")
    score.add_argument("--prompt", required=True, help="the prompt the images were made for")
    score.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files")
    return parser


def _open_image(path: Path) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"IMAGE {path} does not exist.")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"IMAGE {path} is not an image PIL can read.") from error


def run(args: argparse.Namespace) -> dict | list:
    """Carry out one parsed command; returns what the CLI prints."""
    if args.command == "train":
        if args.out.is_file():
            raise FileExistsError(f"--out {args.out} is a file, not a folder.")
        data = Judgements()
        if args.pairs is not None:
            data.add_pairs(args.pairs)
        if args.votes is not None:
            data.add_votes(args.votes)
        config = TrainingConfig(
            epochs=args.epochs,
            lr=args.lr,
            seed=args.seed,
            val_fraction=args.val_fraction,
            batch_size=args.batch_size,
            hidden_dim=args.hidden_dim,
        )
        sources = {
            "pairs_export": str(args.pairs) if args.pairs else None,
            "votes_export": str(args.votes) if args.votes else None,
        }
        return train_reward(data, args.out, config, args.recognizer, sources)
    model = load_reward_model(args.model)
    if args.command == "relabel":
        return relabel(model, args.pairs, args.out)
    images = [_open_image(path) for path in args.images]
    scores = model.score(images, [args.prompt] * len(images)).tolist()
    return {"prompt": args.prompt, "scores": [{"image": str(p), "score": s} for p, s in zip(args.images, scores)]}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and args.pairs is None and args.votes is None:
        parser.error("train needs --pairs, --votes or both.")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    apply_offline_defaults()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = run(args)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        parser.error(str(error))
    if args.command == "train":
        print(summary(result), file=sys.stderr)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
