"""Evaluate RAPHAEL-tiny honestly: ``python -m model.evaluation.evaluate`` (``make eval``).

1. The recognizer's own accuracy on real held-out scenes, so its judgement can be trusted.
2. Composition scores of generated images for held-out prompts (new combinations and
   phrasings that training never produced): identity, count, background, position, all four;
   also per kind of prompt and per wording (an emoji named by a synonym training never used).
3. A domain Fréchet distance on the recognizer's pooled conv features, real against generated.
4. The same for a dense baseline (``--baseline``) trained on the same data stream, with each
   model's training record (steps, images seen) and a paired bootstrap interval of the difference.
5. Routing paths: can a gradient-boosted classifier tell nouns, adjectives and other words apart
   from the Space-MoE experts their tokens take through the blocks?
6. Best-of-n (``--best-of N --reward DIR``): each prompt draws N candidates, the reward model picks one, and
   the picked image is scored beside the first candidate (best-of-1) and the oracle (any candidate correct).

Results go to ``<out>/results.json`` and ``<out>/results.md``, with a sample grid PNG.
"""

import argparse
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import linalg, stats
from tqdm.auto import tqdm

from model.data.atlas import load_atlas
from model.data.captions import emoji_words, heldout_words, whole_words
from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.data.scene import Scene
from model.data.vocab import BACKGROUNDS, POSITIONS, SIZES
from model.evaluation.recognizer import METRICS, Recognizer, evaluate, load_default, objects_in_place, score
from model.evaluation.reward import METRICS_FILE, RewardModel, best_of_n, load_reward_model
from model.offline import apply_offline_defaults
from model.pipeline.bundled import DEFAULT_BUNDLE, load_bundle
from model.pipeline.limits import DEFAULT_GUIDANCE_SCALE, DEFAULT_INFERENCE_STEPS
from model.pipeline.pipeline_raphael import RaphaelPipeline
from model.pipeline.samplers import DEFAULT_SAMPLER, SAMPLERS, build_sampler
from model.unet.moe import SpaceMoE

logger = logging.getLogger("model.evaluation.evaluate")

EVAL_SEED = 424242
ADJECTIVES = set(BACKGROUNDS) | set(SIZES) | {"big", "tiny", "huge", "little", "medium-sized", "grey", "gray"}
WORD_CLASSES = ("noun", "adjective", "other")
MODEL, BASELINE = "RAPHAEL-tiny", "dense baseline"  # default keys of results["models"] (--name, --baseline-name)
GROUPED_METRICS = ("composition", "identity")  # the scores reported per group of prompts
HELDOUT_WORDING, TRAINED_WORDING = "held-out synonym", "trained words"
WORDINGS = {"held-out": HELDOUT_WORDING, "trained": TRAINED_WORDING}  # --wording choices
MAX_DRAWS_PER_PROMPT = 100  # a --wording draw gives up rather than loop on a slice without such prompts


@torch.no_grad()
def features(recognizer: Recognizer, images: np.ndarray) -> np.ndarray:
    """Pooled conv features (B, C) of one bucket's uint8 images."""
    recognizer.eval()
    return recognizer.features(recognizer.prepare(images)).mean((2, 3)).numpy()


def image_array(images: list[Image.Image] | np.ndarray) -> np.ndarray:
    """PIL list or float array in [0, 1] -> uint8 (B, H, W, 3), as the recognizer scores it."""
    if isinstance(images, np.ndarray):
        return (images * 255).round().clip(0, 255).astype(np.uint8) if images.dtype != np.uint8 else images
    return np.stack([np.asarray(im.convert("RGB")) for im in images])


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (as in FID)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def heldout_prompts(
    config: SceneConfig, n: int, seed: int = EVAL_SEED, wording: str | None = None
) -> dict[str, list[tuple[np.ndarray, str, object]]]:
    """``n`` held-out (real image, caption, scene) triples grouped by bucket; ``seed`` picks which.

    ``wording`` keeps only the prompts of that wording (see :func:`prompt_wording`): a plain draw holds
    too few prompts with a held-out synonym (19 of the 256 reported) to compare models on them.
    """
    data = EmojiScenes(replace(config, split="heldout"), seed=seed)
    groups: dict[str, list] = defaultdict(list)
    kept = 0
    for i in range(MAX_DRAWS_PER_PROMPT * n):
        if kept == n:
            break
        if wording is not None and prompt_wording(*data.describe(i)) != wording:
            continue
        image, caption, scene = data.sample(i)
        groups[scene.bucket].append((image, caption, scene))
        kept += 1
    if kept < n:
        raise ValueError(f"Only {kept} of {MAX_DRAWS_PER_PROMPT * n} held-out prompts are worded {wording!r}.")
    return groups


FAILURE_MODES = ("nothing drawn", "wrong emoji in place", "right emoji, wrong place", "other emoji elsewhere")


def failure_mode(prediction: dict, scene: Scene) -> str | None:
    """Why identity failed for a scene, from its first object the recognizer did not find; None if it passed.

    Separates "the model drew nothing recognisable" from "it drew the wrong emoji" from "it put
    the right one in the wrong place": each calls for a different fix.
    """
    for obj in scene.objects:
        read = prediction["slots"].get(obj.position)
        if read is not None and read[0] == obj.emoji:
            continue
        if not prediction["objects"]:
            return FAILURE_MODES[0]
        if read is not None:
            return FAILURE_MODES[1]
        if any(emoji == obj.emoji for emoji, _, _ in prediction["objects"]):
            return FAILURE_MODES[2]
        return FAILURE_MODES[3]
    return None


def prompt_kind(scene: Scene) -> str:
    """``"2 emoji ×2"``: how many different emoji a prompt asks for, and the most of any one of them.

    Composition falls steeply with both, so a total alone hides which scenes a model cannot draw.
    """
    return f"{len(scene.objects)} emoji ×{max(obj.count for obj in scene.objects)}"


def prompt_wording(caption: str, scene: Scene) -> str:
    """``"held-out synonym"`` if ``caption`` names an emoji by a word training never used, else ``"trained words"``.

    Such a word reaches the model only through the frozen text encoder, so its misses call for another
    fix (the text side) than those of scenes the model cannot yet draw.
    """
    held = [word for obj in scene.objects for word in heldout_words(obj.emoji)]
    return HELDOUT_WORDING if held and re.search(whole_words(held), caption.lower()) else TRAINED_WORDING


# How prompts are grouped for those scores: result key suffix -> (how the markdown names it, a prompt's group).
GROUPINGS: dict[str, tuple[str, Callable[[str, Scene], str]]] = {
    "kind": ("kind of prompt (different emoji × most of one)", lambda caption, scene: prompt_kind(scene)),
    "wording": ("wording (an emoji named by a synonym training never used, or trained words only)", prompt_wording),
}


def candidate_seed(seed: int, candidate: int) -> int:
    """The seed of a prompt's ``candidate``-th draw: the prompt's own seed first, then seeds derived from it.

    Candidate 0 is the image a plain run draws, so best-of-n and best-of-1 are paired on every prompt. The others
    are hashed from (seed, candidate) rather than counted up from the seed, because the prompts' own seeds are
    consecutive: ``seed + 1`` would give a prompt the starting noise of its neighbour's first candidate.
    """
    if candidate == 0:
        return seed
    return int(np.random.SeedSequence((seed, candidate)).generate_state(1)[0])


def draw(
    pipe: RaphaelPipeline,
    groups: dict,
    steps: int,
    cfg: float,
    batch: int,
    candidates: int = 1,
    guidance_end: float = 1.0,
) -> Iterator[tuple[list, np.ndarray]]:
    """Each batch of held-out prompts with its images (N, b, H, W, 3) uint8: one pipeline call per candidate.

    Candidate 0 is drawn by exactly the call a plain run makes (same prompts, batch and seeds), so its images are
    bit for bit those of best-of-1. Only one batch's candidates are held at a time. ``guidance_end`` is the
    pipeline's: the fraction of the steps that use CFG.
    """
    bar = tqdm(total=sum(len(v) for v in groups.values()), desc="generate")
    for bucket, items in groups.items():
        height, width = pipe.aspect_buckets[bucket]
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            seeds = [EVAL_SEED + start + i for i in range(len(chunk))]
            drawn = []
            for candidate in range(candidates):
                out = pipe(
                    [c[1] for c in chunk],
                    height=height,
                    width=width,
                    num_inference_steps=steps,
                    guidance_scale=cfg,
                    guidance_end=guidance_end,
                    generator=[torch.Generator().manual_seed(candidate_seed(s, candidate)) for s in seeds],
                    output_type="np",
                )
                drawn.append(image_array(out.images))  # (b, H, W, 3)
            yield chunk, np.stack(drawn)  # (N, b, H, W, 3)
            bar.update(len(chunk))
    bar.close()


class Tally:
    """The scores of one image per held-out prompt, gathered batch by batch."""

    def __init__(self, recognizer: Recognizer) -> None:
        self.recognizer = recognizer
        self.totals: dict[str, list[bool]] = {m: [] for m in METRICS}
        self.failures = dict.fromkeys(FAILURE_MODES, 0)
        # grouping -> metric -> group -> [passed, prompts]
        self.grouped = {g: {m: defaultdict(lambda: [0, 0]) for m in GROUPED_METRICS} for g in GROUPINGS}
        self.objects: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # kind -> [objects in place, objects asked]
        self.prompts: list[str] = []
        self.real_feats: list[np.ndarray] = []
        self.fake_feats: list[np.ndarray] = []
        self.grid: list = []

    def add(self, chunk: list, fake: np.ndarray, result: dict) -> None:
        """One batch: its held-out items, the images (b, H, W, 3) uint8 scored, and ``score``'s judgement of them."""
        real = np.stack([c[0] for c in chunk])  # (b, H, W, 3)
        for m in METRICS:
            self.totals[m] += result[m]
        for i, (prediction, item) in enumerate(zip(result["predictions"], chunk, strict=True)):
            if mode := failure_mode(prediction, item[2]):
                self.failures[mode] += 1
            kind = prompt_kind(item[2])
            self.objects[kind][0] += objects_in_place(prediction, item[2])
            self.objects[kind][1] += len(item[2].objects)
            for grouping, (_, group_of) in GROUPINGS.items():
                group = group_of(item[1], item[2])
                for m in GROUPED_METRICS:
                    self.grouped[grouping][m][group][0] += int(result[m][i])
                    self.grouped[grouping][m][group][1] += 1
            self.prompts.append(item[1])
        self.real_feats.append(features(self.recognizer, real))
        self.fake_feats.append(features(self.recognizer, fake))
        self.grid += [(real[i], fake[i], result["composition"][i]) for i in range(len(chunk))]

    def summary(self) -> dict:
        """What :func:`generate_and_score` reports; ``prompts`` lists the captions in the order of ``per_prompt``."""
        return {
            "accuracy": {m: float(np.mean(v)) for m, v in self.totals.items()},
            "per_prompt": {m: [bool(x) for x in v] for m, v in self.totals.items()},
            "prompts": self.prompts,
            "n": len(self.prompts),
            "identity_failures": self.failures,
            "objects_in_place_by_kind": dict(sorted(self.objects.items())),
            **{
                f"{m}_by_{grouping}": dict(sorted(counts.items()))
                for grouping, metrics in self.grouped.items()
                for m, counts in metrics.items()
            },
            "fd": frechet_distance(np.concatenate(self.real_feats), np.concatenate(self.fake_feats)),
            "grid": self.grid,
        }


def picked_result(results: list[dict], index: list[int]) -> dict:
    """``score``'s judgement of the picked images: prompt ``i``'s entries from candidate ``index[i]``'s result."""
    return {key: [results[c][key][i] for i, c in enumerate(index)] for key in (*METRICS, "predictions")}


def generate_and_score(
    pipe: RaphaelPipeline,
    recognizer: Recognizer,
    groups: dict,
    steps: int,
    cfg: float,
    batch: int,
    reward: RewardModel | None = None,
    candidates: int = 1,
    guidance_end: float = 1.0,
) -> dict:
    """Generate every held-out prompt at its own bucket and score it against its scene.

    ``prompts`` lists the captions in the order of ``per_prompt``, so each score can be traced to its prompt.
    With ``candidates`` > 1 each prompt also draws that many images, ``reward`` picks one (:func:`best_of_n`), and
    ``best_of`` holds the picked images' scores beside the first candidate's (the plain result) and the oracle's.
    """
    if candidates < 1:
        raise ValueError(f"candidates must be 1 or more, got {candidates}.")
    if candidates > 1 and reward is None:
        raise ValueError(f"Best-of-{candidates} needs a reward model to pick among the candidates.")
    first, picked = Tally(recognizer), Tally(recognizer)
    index: list[int] = []  # (n,) the candidate picked for each prompt
    composition: list[list[bool]] = []  # (n, N) each candidate's composition
    kinds: list[str] = []  # (n,) prompt_kind
    for chunk, drawn in draw(pipe, groups, steps, cfg, batch, candidates, guidance_end):
        scenes = [c[2] for c in chunk]
        results = [score(images, scenes, recognizer) for images in drawn]  # one per candidate
        first.add(chunk, drawn[0], results[0])
        if candidates == 1:
            continue
        chosen = [
            best_of_n(reward, [Image.fromarray(image) for image in drawn[:, i]], item[1], k=1)[0]
            for i, item in enumerate(chunk)
        ]
        picked.add(chunk, drawn[chosen, np.arange(len(chunk))], picked_result(results, chosen))
        index += chosen
        composition += [[bool(r["composition"][i]) for r in results] for i in range(len(chunk))]
        kinds += [prompt_kind(scene) for scene in scenes]
    result = first.summary()
    if candidates > 1:
        result["best_of"] = best_of_summary(result, picked.summary(), index, composition, kinds)
    return result


def best_of_summary(
    first: dict, picked: dict, index: list[int], composition: list[list[bool]], kinds: list[str]
) -> dict:
    """Best-of-n against best-of-1 on the same prompts: both scores, their paired differences, and the oracle.

    The oracle counts a prompt when any of its candidates composes correctly: the most any reranker could reach.
    ``oracle_gap_closed`` is the share of the oracle's gain over the first candidate that the picks realise.
    """
    oracle = [any(c) for c in composition]  # (n,)
    by_kind: dict[str, list[int]] = defaultdict(list)
    for i, kind in enumerate(kinds):
        by_kind[kind].append(i)
    by_kind = dict(sorted(by_kind.items()))
    first_composition, picked_composition = first["per_prompt"]["composition"], picked["per_prompt"]["composition"]
    gain = float(np.mean(oracle)) - first["accuracy"]["composition"]
    return {
        "candidates": len(composition[0]) if composition else 0,
        "first": {k: v for k, v in first.items() if k != "grid"},
        "picked": picked,  # its "grid" is the picked images' samples
        "picked_index": index,
        "candidate_composition": composition,
        "oracle": {
            "composition": float(np.mean(oracle)),
            "per_prompt": oracle,
            "composition_by_kind": {kind: [sum(oracle[i] for i in rows), len(rows)] for kind, rows in by_kind.items()},
        },
        "difference": {m: paired_difference(picked["per_prompt"][m], first["per_prompt"][m]) for m in GROUPED_METRICS},
        "difference_by_kind": {
            "composition": {
                kind: paired_difference([picked_composition[i] for i in rows], [first_composition[i] for i in rows])
                for kind, rows in by_kind.items()
            }
        },
        "oracle_gap_closed": (
            (picked["accuracy"]["composition"] - first["accuracy"]["composition"]) / gain if gain > 0 else None
        ),
    }


def mean_interval(values: list[float] | np.ndarray, samples: int = 10_000, seed: int = 0) -> tuple[float, list[float]]:
    """The mean of per-prompt values and its 95% percentile bootstrap interval over prompts."""
    values = np.asarray(values, float)  # (n,)
    if len(values) < 2:  # nothing to resample
        return float(values.mean()), [float(values.mean())] * 2
    if np.all(values == values[0]):  # every resample has the same mean (scipy would warn of a degenerate set)
        return float(values[0]), [float(values[0])] * 2
    interval = stats.bootstrap(
        (values,), np.mean, n_resamples=samples, method="percentile", rng=np.random.default_rng(seed)
    ).confidence_interval
    return float(values.mean()), [float(interval.low), float(interval.high)]


def paired_difference(a: list[bool], b: list[bool], samples: int = 10_000, seed: int = 0) -> dict:
    """Difference of two accuracies on the same prompts, with a 95% paired bootstrap interval."""
    diff = np.asarray(a, float) - np.asarray(b, float)  # (n,) per prompt: -1, 0 or 1
    difference, interval = mean_interval(diff, samples, seed)
    return {"difference": difference, "ci95": interval}


def training_record(path: Path) -> dict | None:
    """The ``training.json`` that ``model.training.bundle`` writes beside the weights, if any."""
    record = path / "training.json"
    return json.loads(record.read_text()) if record.exists() else None


def training_chain(trained: dict | None) -> list[dict]:
    """A bundle's ``training.json`` and those of the curriculum stages it continued, earliest first."""
    chain = []
    while trained:
        chain.append(trained)
        trained = trained.get("continued_from")
    return chain[::-1]


def stage_images(trained: dict | None) -> list[int]:
    """Training images per curriculum stage, earliest first: equal compute means equal lists, not equal sums."""
    return [record["images_seen"] for record in training_chain(trained)]


def same_training(records: list[dict | None]) -> bool:
    """Whether every model saw the same images at every stage: the "equal compute" of a dense comparison."""
    return all(records) and len({tuple(stage_images(r)) for r in records}) == 1


def images_and_steps(trained: dict | None) -> str:
    """``"433,344 (5,550 + 1,221 steps)"``: everything a continued run's chain saw, earliest stage first."""
    chain = training_chain(trained)
    if not chain:
        return "?"
    steps = " + ".join(f"{record['steps']:,}" for record in chain)
    return f"{sum(record['images_seen'] for record in chain):,} ({steps} steps)"


def save_grid(grid: list, path: Path, columns: int = 8, scale: int = 3) -> None:
    """Pairs of real (top) and generated (bottom) images; a red bar marks a failed composition."""
    cell = 40 * scale
    rows = (len(grid) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * cell, rows * 2 * cell + rows * 4), "white")
    for k, (real, fake, ok) in enumerate(grid):
        x, y = (k % columns) * cell, (k // columns) * (2 * cell + 4)
        for j, img in enumerate((real, fake)):
            im = Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST)
            canvas.paste(im, (x, y + j * cell))
        canvas.paste(Image.new("RGB", (cell, 4), (40, 160, 60) if ok else (200, 40, 40)), (x, y + 2 * cell))
    canvas.save(path)


def word_class(word: str, nouns: set[str]) -> str:
    if word in nouns:
        return "noun"
    if word in ADJECTIVES:
        return "adjective"
    return "other"


@torch.no_grad()
def routing_paths(pipe: RaphaelPipeline, captions: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Space-MoE expert path of every whole-word token: one expert per block (the router sees only text)."""
    nouns = set()
    for info in load_atlas().emoji:
        nouns |= {w.lower() for w in emoji_words(info.name)}
    nouns |= {"background", "canvas", "scene", "picture", "image", "drawing", "sticker", "sketch"}
    routers = [m.router for m in pipe.unet.modules() if isinstance(m, SpaceMoE)]
    experts = routers[0].num_experts
    xs, ys, words = [], [], []
    for start in range(0, len(captions), 64):
        chunk = captions[start : start + 64]
        tokens = pipe.tokenizer(
            chunk, padding="max_length", max_length=pipe.tokenizer_max_length, truncation=True, return_tensors="pt"
        )
        states = pipe.text_encoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
        paths = torch.stack([r(states.to(pipe.unet.dtype)).expert_index for r in routers], dim=-1)  # (B, L, blocks)
        for b in range(len(chunk)):
            ids = tokens.input_ids[b].tolist()
            for pos, token in enumerate(pipe.tokenizer.convert_ids_to_tokens(ids)):
                if not tokens.attention_mask[b, pos] or token in pipe.tokenizer.all_special_tokens:
                    continue
                if token.startswith("##") or not re.fullmatch(r"[a-z\-]+", token):
                    continue
                one_hot = np.eye(experts)[paths[b, pos].numpy()].reshape(-1)  # (blocks * E,)
                xs.append(one_hot)
                ys.append(WORD_CLASSES.index(word_class(token, nouns)))
                words.append(token)
    return np.array(xs), np.array(ys), words


def routing_analysis(pipe: RaphaelPipeline, config: SceneConfig, n: int = 600) -> dict:
    """Cross-validated accuracy of a gradient-boosted classifier on expert paths.

    Two controls: a stratified chance classifier, and the same analysis on the paths of freshly
    initialised routers, which shows how much separation the text encoder alone already gives.
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_score

    data = EmojiScenes(config, seed=EVAL_SEED + 1)
    captions = [data.sample(i)[1] for i in range(n)]
    x, y, _ = routing_paths(pipe, captions)
    counts = {c: int((y == i).sum()) for i, c in enumerate(WORD_CLASSES)}
    gbdt = cross_val_score(HistGradientBoostingClassifier(max_iter=100), x, y, cv=5, scoring="balanced_accuracy")
    torch.manual_seed(0)
    untrained = RaphaelPipeline(
        unet=type(pipe.unet).from_config(pipe.unet.config),
        scheduler=pipe.scheduler,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
    )
    ux, uy, _ = routing_paths(untrained, captions)
    control = cross_val_score(HistGradientBoostingClassifier(max_iter=100), ux, uy, cv=5, scoring="balanced_accuracy")
    chance = cross_val_score(
        DummyClassifier(strategy="stratified", random_state=0), x, y, cv=5, scoring="balanced_accuracy"
    )
    distinct = len({tuple(row) for row in x})
    return {
        "tokens": len(y),
        "class_counts": counts,
        "distinct_paths": distinct,
        "balanced_accuracy_gbdt": float(gbdt.mean()),
        "balanced_accuracy_chance": float(chance.mean()),
        "balanced_accuracy_untrained_routers": float(control.mean()),
    }


def samples_stem(name: str, earlier: dict) -> str:
    """``raphael-tiny`` for "RAPHAEL-tiny (stage 4)"; the whole name when an earlier model took that word."""
    stem = name.split()[0].lower()
    if any(other.split()[0].lower() == stem for other in earlier):
        stem = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return stem


def compared_models(results: dict) -> tuple[str, str]:
    """The names of the two models in ``results["comparison"]``: the first model minus the second, as written."""
    ours, other = list(results["models"])[:2]
    return ours, other


def reward_metrics(path: Path) -> dict | None:
    """The held-out accuracies and the raters' ceiling from a reward model's ``metrics.json``, if it has one."""
    file = path / METRICS_FILE
    if not file.is_file():
        return None
    metrics = json.loads(file.read_text(encoding="utf-8"))
    return {
        "heldout": metrics.get("heldout"),
        "raters_ceiling": (metrics.get("raters_ceiling") or {}).get("agreement"),
    }


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two modules hold the same tensors under the same names (the reward trunk and the judge)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)


def reward_note(metrics: dict | None) -> str:
    """``"held-out pairwise accuracy 74.7% (95% 70.1–79.3%, 348 pairs), ..."``: how far the picker can be trusted."""
    if metrics is None:
        return "no metrics.json beside it, so its held-out accuracy is unknown"
    parts = []
    for key, label, unit in (("pairwise", "pairwise", "pairs"), ("votes", "👍/👎", "votes")):
        held = (metrics.get("heldout") or {}).get(key) or {}
        if held.get("accuracy") is None:
            parts.append(f"no held-out {unit}")
            continue
        interval = f"95% {100 * held['ci95'][0]:.1f}–{100 * held['ci95'][1]:.1f}%, " if held.get("ci95") else ""
        parts.append(f"held-out {label} accuracy {100 * held['accuracy']:.1f}% ({interval}{held['n']} {unit})")
    if metrics.get("raters_ceiling") is not None:
        parts.append(f"raters' ceiling {100 * metrics['raters_ceiling']:.1f}%")
    return ", ".join(parts)


def best_of_markdown(b: dict) -> list[str]:
    """The best-of-n section: first candidate, pick and oracle, paired differences overall and by kind, a caveat."""
    n, first, picked, oracle = b["candidates"], b["first"], b["picked"], b["oracle"]
    judge = (
        "the very weights the evaluator judges with"
        if b.get("trunk_is_the_judge")
        else "a frozen copy of a recognizer trunk whose weights differ from the evaluator's, a related model"
    )
    lines = [
        "",
        f"Best-of-{n} for {b['model']}: each prompt draws {n} candidates (the first is the image scored above, the "
        f"others from seeds derived from its seed) and the reward model `{b['reward_model']}` "
        f"({reward_note(b.get('reward_metrics'))}) picks one.",
        "",
        f"**Caveat:** the reward model's image features come from the recognizer's trunk ({judge}), and the "
        "recognizer is also the judge here, so this gain is measured by a judge related to the picker: a pick can "
        "please the recognizer without pleasing people. Read it beside human judgements (the arena).",
        "",
        "| image scored | identity | count | background | position | composition | domain FD |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in (("first candidate (best-of-1)", first), ("picked by the reward model", picked)):
        scores = " | ".join(f"{100 * r['accuracy'][m]:.1f}%" for m in METRICS)
        lines.append(f"| {label} | {scores} | {r['fd']:.2f} |")
    lines.append(
        f"| oracle: any of the {n} composes correctly | – | – | – | – | {100 * oracle['composition']:.1f}% | – |"
    )
    c = b["difference"]["composition"]
    lines += [
        "",
        f"Picked minus first, composition: {100 * c['difference']:+.1f} points (95% paired bootstrap interval "
        f"{100 * c['ci95'][0]:+.1f} to {100 * c['ci95'][1]:+.1f}).",
    ]
    gain = 100 * (oracle["composition"] - first["accuracy"]["composition"])
    if b.get("oracle_gap_closed") is None:
        lines.append("No later candidate composed correctly where the first did not, so no reranker could gain here.")
    else:
        lines.append(
            f"The picks realise {100 * b['oracle_gap_closed']:.0f}% of the {gain:.1f} points an oracle reranker "
            "would gain over the first candidate."
        )
    lines += [
        "",
        "| kind of prompt | prompts | first | picked | oracle | picked − first (95% paired interval) |",
        "|---|---|---|---|---|---|",
    ]
    for kind, (right, total) in oracle["composition_by_kind"].items():
        d = b["difference_by_kind"]["composition"][kind]
        first_ok, picked_ok = first["composition_by_kind"][kind][0], picked["composition_by_kind"][kind][0]
        lines.append(
            f"| {kind} | {total} | {100 * first_ok / total:.0f}% | {100 * picked_ok / total:.0f}% | "
            f"{100 * right / total:.0f}% | {100 * d['difference']:+.1f} ({100 * d['ci95'][0]:+.1f} to "
            f"{100 * d['ci95'][1]:+.1f}) |"
        )
    return lines


def markdown(results: dict) -> str:
    """A short table for the README and the model card."""
    lines = [
        f"Held-out prompts: {results['config_note']}; {results['steps']} {results.get('sampler', DEFAULT_SAMPLER)} "
        f"steps, CFG {results['cfg']}.",
        "",
        "| model | training images | identity | count | background | position | composition | domain FD |",
        "|---|---|---|---|---|---|---|---|",
    ]
    real = results["recognizer_on_real"]
    lines.append(
        "| real scenes (recognizer check) | – | " + " | ".join(f"{100 * real[m]:.1f}%" for m in METRICS) + " | 0 |"
    )
    for name, r in results["models"].items():
        scores = " | ".join(f"{100 * r['accuracy'][m]:.1f}%" for m in METRICS)
        lines.append(f"| {name} | {images_and_steps(r.get('training'))} | {scores} | {r['fd']:.2f} |")
    for name, r in results["models"].items():
        if failures := {mode: n for mode, n in r.get("identity_failures", {}).items() if n}:
            listed = ", ".join(f"{mode} {n}" for mode, n in failures.items())
            lines += ["", f"{name}, prompts whose emoji was not read in place: {listed} (of {r['n']})."]
    for name, r in results["models"].items():
        if objects := r.get("objects_in_place_by_kind"):
            listed = ", ".join(f"{kind} {100 * ok / n:.0f}% ({ok}/{n})" for kind, (ok, n) in objects.items())
            lines += ["", f"{name}, objects read as the stated emoji in their place, by kind of prompt: {listed}."]
    for grouping, (label, _) in GROUPINGS.items():
        for metric in GROUPED_METRICS:
            for name, r in results["models"].items():
                if counts := r.get(f"{metric}_by_{grouping}"):
                    listed = ", ".join(f"{group} {100 * ok / n:.0f}% ({ok}/{n})" for group, (ok, n) in counts.items())
                    lines += ["", f"{name}, {metric} by {label}: {listed}."]
    if "comparison" in results:
        ours, other = compared_models(results)
        lines.append("")
        for metric, c in results["comparison"].items():
            low, high = c["ci95"]
            lines.append(
                f"{ours} minus {other}, {metric}: {100 * c['difference']:+.1f} points "
                f"(95% paired bootstrap interval {100 * low:+.1f} to {100 * high:+.1f})."
            )
    if "best_of" in results:
        lines += best_of_markdown(results["best_of"])
    if "routing" in results:
        r = results["routing"]
        lines += [
            "",
            f"Routing paths ({r['tokens']} word tokens, {r['distinct_paths']} distinct paths): gradient boosting "
            f"separates noun / adjective / other with balanced accuracy {100 * r['balanced_accuracy_gbdt']:.1f}% "
            f"(chance {100 * r['balanced_accuracy_chance']:.1f}%; the same analysis on freshly initialised routers: "
            f"{100 * r['balanced_accuracy_untrained_routers']:.1f}%).",
        ]
    return "\n".join(lines) + "\n"


def add_prompt_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that choose the held-out prompts: the slice of the domain (``make eval`` passes the shipped stage's,
    from ``model.training.curriculum --eval-flags``) and the seed of the draw. Shared with the sampler curve.
    """
    p.add_argument(
        "--prompt-seed",
        type=int,
        default=EVAL_SEED,
        help="another seed draws validation prompts: choose settings (CFG) there, report on the default",
    )
    p.add_argument("--num-emoji", type=int, default=None, help="restrict prompts to the curriculum stage trained")
    p.add_argument("--max-objects", type=int, default=3)
    p.add_argument("--max-count", type=int, default=3)
    p.add_argument("--styles", default=None, help="comma-separated styles (default: all)")


def prompt_config(args: argparse.Namespace) -> SceneConfig:
    """The scene slice that :func:`add_prompt_arguments`' flags chose."""
    styles = tuple(s.strip() for s in args.styles.split(",")) if args.styles else None
    return SceneConfig(num_emoji=args.num_emoji, max_objects=args.max_objects, max_count=args.max_count, styles=styles)


def config_note(config: SceneConfig, n: int, prompt_seed: int = EVAL_SEED, wording: str | None = None) -> str:
    """``"256 prompts, 30 emoji, up to 2 object(s) x 2, styles flat, positions ..."``: which prompts were scored."""
    return (
        f"{n} prompts, {config.num_emoji or len(load_atlas().emoji)} emoji, up to {config.max_objects} "
        f"object(s) x {config.max_count}, styles {', '.join(config.styles) if config.styles else 'all'}, positions "
        f"{'/'.join(POSITIONS)}"
        + ("" if prompt_seed == EVAL_SEED else f", validation prompts (seed {prompt_seed})")
        + (f", only prompts worded: {wording}" if wording else "")
    )


def main() -> None:
    apply_offline_defaults()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_BUNDLE, help="RaphaelPipeline folder to evaluate")
    p.add_argument(
        "--baseline", type=Path, default=None, help="pipeline folder to compare: the dense baseline or earlier weights"
    )
    p.add_argument("--name", default=MODEL, help="the first model's name in the tables")
    p.add_argument("--baseline-name", default=BASELINE, help="the second model's name, e.g. for earlier weights")
    p.add_argument("--n", type=int, default=64, help="held-out prompts")
    p.add_argument("--steps", type=int, default=DEFAULT_INFERENCE_STEPS)
    p.add_argument(
        "--cfg", type=float, default=DEFAULT_GUIDANCE_SCALE, help="chosen on validation prompts (--prompt-seed)"
    )
    p.add_argument("--sampler", choices=tuple(SAMPLERS), default=DEFAULT_SAMPLER)
    add_prompt_arguments(p)
    p.add_argument(
        "--wording",
        choices=tuple(WORDINGS),
        default=None,
        help="only prompts that name an emoji by a held-out synonym, or only prompts in trained words",
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument(
        "--best-of",
        type=int,
        default=1,
        metavar="N",
        help="draw N candidates per prompt for --model and also score the one --reward picks (1: off)",
    )
    p.add_argument(
        "--reward", type=Path, default=None, metavar="DIR", help="reward model folder that picks among the candidates"
    )
    p.add_argument("--out", type=Path, default=Path("model/checkpoints/raphael-tiny/eval"))
    args = p.parse_args()
    if args.best_of < 1:
        p.error(f"--best-of must be 1 or more, not {args.best_of}.")
    if args.best_of > 1 and args.reward is None:
        p.error(f"--best-of {args.best_of} needs --reward DIR, the reward model that picks among the candidates.")
    if args.reward is not None and args.best_of == 1:
        p.error("--reward picks among --best-of candidates, so it needs --best-of 2 or more.")
    try:
        reward = load_reward_model(args.reward, flag="--reward") if args.reward is not None else None
    except FileNotFoundError as error:
        p.error(str(error))

    config = prompt_config(args)
    args.out.mkdir(parents=True, exist_ok=True)
    recognizer = load_default()
    results: dict = {
        "config": asdict(config),
        "config_note": config_note(config, args.n, args.prompt_seed, WORDINGS.get(args.wording)),
        "steps": args.steps,
        "cfg": args.cfg,
        "sampler": args.sampler,
        "prompt_seed": args.prompt_seed,
        "wording": WORDINGS.get(args.wording),
        "recognizer_on_real": evaluate(recognizer, config, 256, seed=EVAL_SEED),
        "models": {},
    }
    groups = heldout_prompts(config, args.n, args.prompt_seed, WORDINGS.get(args.wording))
    for name, path in ((args.name, args.model), (args.baseline_name, args.baseline)):
        if path is None:
            continue
        pipe = load_bundle(path)
        pipe.scheduler = build_sampler(args.sampler, pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        best_of = args.best_of if not results["models"] else 1  # the first model only; a baseline is drawn once
        r = generate_and_score(pipe, recognizer, groups, args.steps, args.cfg, args.batch, reward, best_of)
        stem = samples_stem(name, results["models"])
        save_grid(r.pop("grid"), args.out / f"samples_{stem}.png")
        if "best_of" in r:
            b = r.pop("best_of")
            save_grid(b["picked"].pop("grid"), args.out / f"samples_{stem}_best-of-{best_of}.png")
            results["best_of"] = {
                "model": name,
                "reward_model": str(args.reward),
                "reward_metrics": reward_metrics(args.reward),
                "trunk_is_the_judge": same_weights(reward.recognizer, recognizer),
                **b,
            }
        r["training"] = training_record(path)
        results["models"][name] = r
        if path == args.model and pipe.unet.config.num_space_experts > 0:  # a dense FFN has no routes to analyse
            results["routing"] = routing_analysis(pipe, config)
    if len(results["models"]) == 2:
        records = [r["training"] for r in results["models"].values()]
        if not same_training(records):
            logger.warning("The two models did not see the same number of training images: %s", records)
        ours, dense = (r["per_prompt"] for r in results["models"].values())
        results["comparison"] = {m: paired_difference(ours[m], dense[m]) for m in ("identity", "composition")}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out / "results.md").write_text(table)
    logger.info("\n%s", table)


if __name__ == "__main__":
    main()
