"""Rating campaigns in the app: the Rate tab's service, and the CLI that builds a campaign with the model.

The store keeps campaigns, serves their items and records answers (``feedback.campaigns``); this module
shows an item the way a rater judges it (the images, the text they were generated from) and times each answer,
so the report can flag raters who click faster than anyone can look. Gold items come from the domain's ground
truth: a real rendered scene under its own caption is a 👍, under another scene's caption a 👎, and a pair of a
real scene against another scene's image has a known winner. Raters are never told which items are gold.

CLI (admin): ``python -m app.campaigns create --name NAME --prompts FILE [--kind vote|pair] [--answers 3]``.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from app.generation import GenerationRequest, GenerationService
from app.settings import Settings, from_env
from feedback.campaigns import CampaignItemSpec
from feedback.images import generated_from, read_provenance
from feedback.store import CampaignInfo, CampaignItemRow, FeedbackStore
from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes

log = logging.getLogger(__name__)

ADMIN_RATER = "campaign-admin"  # the store's rater behind the images a campaign generates
GROUND_TRUTH = {"model_name": "emoji-scenes ground truth", "model_hash": "ground-truth", "sampler": "render"}


@dataclass(frozen=True)
class ShownItem:
    """What the Rate tab shows for one item: its images with their provenance, and when it was shown."""

    item_id: int
    kind: str
    paths: tuple[Path, ...]
    provenances: tuple[dict[str, Any], ...]  # read once from the PNGs: the display copies carry them too
    shown_at: float

    @property
    def text(self) -> str:
        """The text the item's images were generated from, which the rater judges them against."""
        return generated_from(self.provenances[0])


class CampaignService:
    """The Rate tab's calls: open campaigns, the next item for a rater, an answer, progress."""

    def __init__(self, store: FeedbackStore, seed: int | None = None) -> None:
        self.store = store
        self._rng = random.Random(seed)

    def open_campaigns(self) -> list[str]:
        return [c.name for c in self.store.campaigns()]

    def campaign(self, name: str) -> CampaignInfo:
        return self.store.campaign(name)

    def next_item(self, campaign: CampaignInfo, rater_id: int) -> ShownItem | None:
        """The item this rater should judge next, or None when they have judged every item."""
        item = self.store.next_campaign_item(campaign.id, rater_id, self._rng)
        return None if item is None else self._shown(item)

    def answer(self, item: ShownItem, rater_id: int, answer: str) -> None:
        self.store.answer_campaign_item(item.item_id, rater_id, answer, time.monotonic() - item.shown_at)

    def progress(self, campaign: CampaignInfo, rater_id: int) -> int:
        """How many items of ``campaign`` this rater has answered."""
        return self.store.campaign_answer_count(campaign.id, rater_id)

    def _shown(self, item: CampaignItemRow) -> ShownItem:
        ids = (item.image_id,) if item.kind == "vote" else (item.left_image_id, item.right_image_id)
        paths = tuple(self.store.image_path(image_id) for image_id in ids if image_id)
        provenances = tuple(read_provenance(path) for path in paths)
        return ShownItem(item.id, item.kind, paths, provenances, time.monotonic())


def ground_truth_scenes(n: int, seed: int) -> list[tuple[Image.Image, str]]:
    """``n`` real rendered scenes with their captions, from the held-out split of the whole domain."""
    scenes = EmojiScenes(SceneConfig(max_objects=2, max_count=2, styles=("flat",), split="heldout"), seed=seed)
    images, captions, _ = scenes.batch(0, n)
    return [(Image.fromarray(image), caption) for image, caption in zip(images, captions)]


def build_campaign(
    store: FeedbackStore,
    settings: Settings,
    name: str,
    prompts: list[str],
    kind: str,
    guidelines: str,
    answers_wanted: int,
    gold_rate: float,
    gold_items: int,
    seed: int = 0,
) -> int:
    """Generate the campaign's images with the served model, add gold items from real scenes, and store it."""
    service = GenerationService(settings.model_path, settings.device, settings.torch_threads)
    rater = store.rater(ADMIN_RATER)
    per_prompt = 1 if kind == "vote" else 2
    items: list[CampaignItemSpec] = []
    for index, prompt in enumerate(prompts):
        request = GenerationRequest(prompt=prompt, seed=seed + 100 * index, num_images=per_prompt)
        result = service.run(request)
        ids = store.record_generation(rater, result.provenance, result.images).image_ids
        if kind == "vote":
            items.append(CampaignItemSpec(image_id=ids[0]))
        else:
            items.append(CampaignItemSpec(left_image_id=ids[0], right_image_id=ids[1]))
    items += gold(store, rater, kind, gold_items, seed)
    return store.create_campaign(name, kind, guidelines, answers_wanted, gold_rate, items)


def gold(store: FeedbackStore, rater: int, kind: str, n: int, seed: int) -> list[CampaignItemSpec]:
    """``n`` gold items from real scenes: the known answer is the ground truth, not anyone's taste."""
    scenes = ground_truth_scenes(2 * n, seed)
    items = []
    for index in range(n):
        (image, caption), (other_image, other_caption) = scenes[2 * index], scenes[2 * index + 1]
        if kind == "vote":  # alternate: the scene under its own caption (👍), under another's (👎)
            shown_caption, answer = (caption, "1") if index % 2 == 0 else (other_caption, "-1")
            (image_id,) = _record_real(store, rater, shown_caption, [image])
            items.append(CampaignItemSpec(image_id=image_id, gold_answer=answer))
        else:  # the real scene of the caption against another scene, on a random side
            left_is_real = index % 2 == 0
            pair = [image, other_image] if left_is_real else [other_image, image]
            left, right = _record_real(store, rater, caption, pair)
            winner = "left" if left_is_real else "right"
            items.append(CampaignItemSpec(left_image_id=left, right_image_id=right, gold_answer=winner))
    return items


def _record_real(store: FeedbackStore, rater: int, caption: str, images: list[Image.Image]) -> list[str]:
    width, height = images[0].size
    provenance: dict[str, Any] = {
        **GROUND_TRUTH,
        "prompt": caption,
        "seed": 0,
        "steps": 0,
        "cfg": 0.0,
        "width": width,
        "height": height,
        "app_version": "ground truth",
    }
    return store.record_generation(rater, provenance, images).image_ids


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = from_env()
    parser = argparse.ArgumentParser(prog="python -m app.campaigns", description="Create a rating campaign.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="generate a campaign's images with the model and store it")
    create.add_argument("--name", required=True, help="campaign name, unique")
    create.add_argument("--prompts", type=Path, required=True, help="text file, one prompt per line")
    create.add_argument("--kind", choices=("vote", "pair"), default="vote", help="👍/👎 items or image pairs")
    create.add_argument("--guidelines", type=Path, default=None, help="markdown file shown to raters")
    create.add_argument("--answers", type=int, default=3, help="answers wanted per item (k)")
    create.add_argument("--gold-rate", type=float, default=0.2, help="share of served items that are gold")
    create.add_argument("--gold-items", type=int, default=6, help="gold items made from real scenes")
    create.add_argument("--seed", type=int, default=0, help="seeds of the generated images and the gold scenes")
    create.add_argument("--model", type=Path, default=env.model_path, help="pipeline folder [RAPHAEL_MODEL]")
    create.add_argument("--db", default=env.db_url, help="feedback database URL [RAPHAEL_DB]")
    create.add_argument("--image-dir", type=Path, default=env.image_dir, help="image store [RAPHAEL_IMAGE_DIR]")
    args = parser.parse_args(argv)
    prompts = [line.strip() for line in args.prompts.read_text().splitlines() if line.strip()]
    guidelines = args.guidelines.read_text() if args.guidelines else DEFAULT_GUIDELINES
    settings = Settings(model_path=args.model, db_url=args.db, image_dir=args.image_dir)
    with FeedbackStore(args.db, args.image_dir) as store:
        campaign_id = build_campaign(
            store,
            settings,
            name=args.name,
            prompts=prompts,
            kind=args.kind,
            guidelines=guidelines,
            answers_wanted=args.answers,
            gold_rate=args.gold_rate,
            gold_items=args.gold_items,
            seed=args.seed,
        )
    log.info("Created campaign %s (id %d) with %d prompts", args.name, campaign_id, len(prompts))


DEFAULT_GUIDELINES = """\
Judge whether each image shows **what its text asks for**: the right emoji, as many as asked, in the right place,
on the right background. Ignore beauty; a plain image that is right beats a pretty one that is wrong.
Pairs: pick the image that fits the text better; *tie* when both fit equally, *both bad* when neither does.
"""


if __name__ == "__main__":
    main()
