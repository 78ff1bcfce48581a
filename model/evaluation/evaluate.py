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

Results go to ``<out>/results.json`` and ``<out>/results.md``, with a sample grid PNG.
"""

import argparse
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable
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
from model.evaluation.recognizer import METRICS, Recognizer, evaluate, load_default, score
from model.offline import apply_offline_defaults
from model.pipeline.bundled import DEFAULT_BUNDLE, load_bundle
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


def generate_and_score(
    pipe: RaphaelPipeline, recognizer: Recognizer, groups: dict, steps: int, cfg: float, batch: int
) -> dict:
    """Generate every held-out prompt at its own bucket and score it against its scene.

    ``prompts`` lists the captions in the order of ``per_prompt``, so each score can be traced to its prompt.
    """
    totals: dict[str, list[bool]] = {m: [] for m in METRICS}
    failures = dict.fromkeys(FAILURE_MODES, 0)
    # grouping -> metric -> group -> [passed, prompts]
    grouped = {g: {m: defaultdict(lambda: [0, 0]) for m in GROUPED_METRICS} for g in GROUPINGS}
    prompts: list[str] = []
    real_feats, fake_feats, grid = [], [], []
    total = sum(len(v) for v in groups.values())
    bar = tqdm(total=total, desc="generate")
    for bucket, items in groups.items():
        height, width = pipe.aspect_buckets[bucket]
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            generators = [torch.Generator().manual_seed(EVAL_SEED + start + i) for i in range(len(chunk))]
            out = pipe(
                [c[1] for c in chunk],
                height=height,
                width=width,
                num_inference_steps=steps,
                guidance_scale=cfg,
                generator=generators,
                output_type="np",
            )
            fake = image_array(out.images)
            real = np.stack([c[0] for c in chunk])
            result = score(fake, [c[2] for c in chunk], recognizer)
            for m in METRICS:
                totals[m] += result[m]
            for i, (prediction, item) in enumerate(zip(result["predictions"], chunk, strict=True)):
                if mode := failure_mode(prediction, item[2]):
                    failures[mode] += 1
                for grouping, (_, group_of) in GROUPINGS.items():
                    group = group_of(item[1], item[2])
                    for m in GROUPED_METRICS:
                        grouped[grouping][m][group][0] += int(result[m][i])
                        grouped[grouping][m][group][1] += 1
                prompts.append(item[1])
            real_feats.append(features(recognizer, real))
            fake_feats.append(features(recognizer, fake))
            grid += [(real[i], fake[i], result["composition"][i]) for i in range(len(chunk))]
            bar.update(len(chunk))
    bar.close()
    return {
        "accuracy": {m: float(np.mean(v)) for m, v in totals.items()},
        "per_prompt": {m: [bool(x) for x in v] for m, v in totals.items()},
        "prompts": prompts,
        "n": total,
        "identity_failures": failures,
        **{
            f"{m}_by_{grouping}": dict(sorted(counts.items()))
            for grouping, metrics in grouped.items()
            for m, counts in metrics.items()
        },
        "fd": frechet_distance(np.concatenate(real_feats), np.concatenate(fake_feats)),
        "grid": grid,
    }


def paired_difference(a: list[bool], b: list[bool], samples: int = 10_000, seed: int = 0) -> dict:
    """Difference of two accuracies on the same prompts, with a 95% paired bootstrap interval."""
    diff = np.asarray(a, float) - np.asarray(b, float)  # (n,) per prompt: -1, 0 or 1
    if len(diff) < 2:  # nothing to resample
        return {"difference": float(diff.mean()), "ci95": [float(diff.mean())] * 2}
    interval = stats.bootstrap(
        (diff,), np.mean, n_resamples=samples, method="percentile", rng=np.random.default_rng(seed)
    ).confidence_interval
    return {"difference": float(diff.mean()), "ci95": [float(interval.low), float(interval.high)]}


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
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--cfg", type=float, default=2.0, help="chosen on validation prompts (--prompt-seed)")
    p.add_argument("--sampler", choices=tuple(SAMPLERS), default=DEFAULT_SAMPLER)
    p.add_argument(
        "--prompt-seed",
        type=int,
        default=EVAL_SEED,
        help="another seed draws validation prompts: choose settings (CFG) there, report on the default",
    )
    p.add_argument(
        "--wording",
        choices=tuple(WORDINGS),
        default=None,
        help="only prompts that name an emoji by a held-out synonym, or only prompts in trained words",
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--num-emoji", type=int, default=None, help="restrict prompts to the curriculum stage trained")
    p.add_argument("--max-objects", type=int, default=3)
    p.add_argument("--max-count", type=int, default=3)
    p.add_argument("--styles", default=None, help="comma-separated styles (default: all)")
    p.add_argument("--out", type=Path, default=Path("model/checkpoints/raphael-tiny/eval"))
    args = p.parse_args()

    styles = tuple(s.strip() for s in args.styles.split(",")) if args.styles else None
    config = SceneConfig(
        num_emoji=args.num_emoji, max_objects=args.max_objects, max_count=args.max_count, styles=styles
    )
    args.out.mkdir(parents=True, exist_ok=True)
    recognizer = load_default()
    results: dict = {
        "config": asdict(config),
        "config_note": (
            f"{args.n} prompts, {args.num_emoji or len(load_atlas().emoji)} emoji, up to {args.max_objects} "
            f"object(s) x {args.max_count}, styles {', '.join(styles) if styles else 'all'}, positions "
            f"{'/'.join(POSITIONS)}"
            + ("" if args.prompt_seed == EVAL_SEED else f", validation prompts (seed {args.prompt_seed})")
            + (f", only prompts worded: {WORDINGS[args.wording]}" if args.wording else "")
        ),
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
        r = generate_and_score(pipe, recognizer, groups, args.steps, args.cfg, args.batch)
        save_grid(r.pop("grid"), args.out / f"samples_{samples_stem(name, results['models'])}.png")
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
