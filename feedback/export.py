"""Export the collected feedback as preference datasets for fine-tuning.

Formats
-------
``pickapic`` (alias ``dpo``)
    Pairwise rows in the Pick-a-Pic v2 layout that the Diffusion-DPO training script reads:
    ``caption, jpg_0, jpg_1, label_0, label_1, model_0, model_1, user_id, are_different,
    has_label, best_image_uid, image_0_uid, image_1_uid`` plus ``source``. Images are JPEG bytes
    (quality 95, no chroma subsampling), because Pick-a-Pic stores JPEG; the lossless PNG
    originals are in the image store and in the ``kto`` export. The caption is the text the model
    generated from and the rater saw on the card (the enhanced prompt, or a Chinese prompt's English
    translation); the prompt as typed is in the ``jsonl`` log.

    Pairs come from two sources, both **per rater**:

    1. *Explicit comparisons.* ``left`` → labels 1/0, ``right`` → 0/1, ``tie`` → 0.5/0.5 (the
       DPO script drops ties itself), ``both_bad`` → no row: it ranks neither image above the
       other. When a rater compared the same two images more than once, only the latest counts.
       A comparison of images with different prompts is skipped: a DPO row has one caption. So is
       a comparison of images of different sizes (width and height): Diffusion-DPO noises both
       images of a pair alike, so they must have one shape, and the fine-tuning would drop it.
    2. *Votes.* For each rater and each prompt (exact string match), every image that rater
       liked is paired with every image of the same size that rater disliked (so 2 likes and 3
       dislikes of one size give 6 rows); pairs of different sizes are skipped and counted. Image
       0 is the one with the smaller id, so the winner is not always first. A pair the same rater
       also compared explicitly is taken from the comparison only.

    Votes are paired within one rater, not across raters: a 👍 from one person and a 👎 from
    another on two images say as much about the two people's standards as about the images, and
    every Pick-a-Pic row is likewise one user's choice. ``user_id`` is the store's internal rater
    number (no browser id, no IP).

``kto``
    Unpaired rows as Diffusion-KTO reads them: ``file_name, caption, label`` (bool, 👍 = true)
    plus ``user_id, image_uid, model``; one row per rater and image with a current vote. Images
    are the original PNGs (provenance in their ``parameters`` text chunk).

``jsonl``
    The full history: one row per vote event (including changes and take-backs, value 0) with
    the image's complete provenance. No image bytes.

Outputs (``--as``)
------------------
``parquet``: ``train.parquet`` (images as bytes). ``jsonl``: ``train.jsonl``, except ``kto``,
which becomes an HF imagefolder: ``metadata.jsonl`` with the PNG files beside it. ``datasets``:
:meth:`datasets.Dataset.save_to_disk`. Every export also writes a ``README.md`` dataset card with
the columns, the pairing rule, the filters and the counts (rows made, and rows skipped and why).

``pickapic`` refuses ``jsonl``. The Diffusion-DPO training script loads its pairs with 🤗 datasets
and opens ``jpg_0``/``jpg_1`` as raw JPEG bytes (``Image.open(io.BytesIO(...))``), as Pick-a-Pic
ships them in Parquet. JSON has no bytes type: base64 text or paths to JPEG files beside the JSONL
would both fail in that script and need a loader of one's own, while Parquet and ``datasets``
carry the bytes and load as they are. A refusal that names them beats a file that only looks loadable.

Filters
-------
``--model`` keeps feedback on images of one model (name or full weights hash; both images of a
pair). ``--since`` (inclusive) / ``--until`` (exclusive) select by when a vote was last set, a
comparison made or an event happened (naive times are UTC). ``--min-votes N`` keeps images
judged at least N times (current votes plus comparisons, after the other filters).
``--exclude-flagged`` then leaves out every vote, comparison and vote event of the raters that
:mod:`feedback.agreement` flags (they match the other raters on fewer than half of at least 5
shared items, measured on the feedback the other filters kept). ``--campaign NAME`` keeps the
votes and comparisons on that rating campaign's normal items (not its gold items) and leaves out
every rater :mod:`feedback.campaigns` flags there (failed gold items, too fast, always the same
answer); the card counts them by reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import shutil
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import datasets
from PIL import Image as PILImage
from sqlalchemy.engine import make_url

from feedback.agreement import agreement
from feedback.campaigns import FLAG_REASONS, campaign_report, flag_counts
from feedback.cli import add_filter_arguments, add_store_arguments, open_store
from feedback.store import ComparisonRow, FeedbackStore, ImageRow, PreferenceRows

logger = logging.getLogger(__name__)

FORMATS = {"pickapic": "pickapic", "dpo": "pickapic", "kto": "kto", "jsonl": "jsonl"}
OUTPUTS = ("parquet", "jsonl", "datasets")
COMPARISON_LABELS = {"left": (1.0, 0.0), "right": (0.0, 1.0), "tie": (0.5, 0.5)}
JPEG_QUALITY = 95
PICKAPIC_COUNTS = (
    "rows",
    "pairs_from_comparisons",
    "pairs_from_votes",
    "ties",
    "both_bad_skipped",
    "cross_prompt_comparisons_skipped",
    "cross_size_comparisons_skipped",
    "cross_size_vote_pairs_skipped",
    "comparisons_replaced_by_later",
    "vote_pairs_superseded_by_comparison",
)

COLUMNS: dict[str, dict[str, str]] = {
    "pickapic": {
        "caption": "the text the model generated from and the rater saw (enhanced or translated prompt)",
        "jpg_0": "image 0, JPEG bytes",
        "jpg_1": "image 1, JPEG bytes, the same width and height as image 0",
        "label_0": "1.0 if image 0 won, 0.0 if it lost, 0.5 for a tie",
        "label_1": "1.0 - label_0",
        "model_0": "model version of image 0: name@first 12 hex digits of the weights hash",
        "model_1": "model version of image 1",
        "user_id": "internal rater number (pseudonymous)",
        "are_different": "false when both images have the same bytes",
        "has_label": "always true here (both_bad comparisons are not exported)",
        "best_image_uid": "uid of the preferred image, empty for a tie",
        "image_0_uid": "store id of image 0",
        "image_1_uid": "store id of image 1",
        "source": "'comparison' (explicit side-by-side) or 'votes' (paired 👍/👎 of one rater)",
    },
    "kto": {
        "file_name": "the PNG beside metadata.jsonl (named by its sha256)",
        "image": "the PNG (parquet and datasets outputs; imagefolder loads file_name as this)",
        "caption": "the text the model generated from and the rater saw (enhanced or translated prompt)",
        "label": "true for 👍, false for 👎",
        "user_id": "internal rater number (pseudonymous)",
        "image_uid": "store id of the image",
        "model": "model version: name@first 12 hex digits of the weights hash",
    },
    "jsonl": {
        "event_id": "order of the events",
        "created_at": "when the vote was set (ISO 8601, UTC)",
        "user_id": "internal rater number (pseudonymous)",
        "image_uid": "store id of the image",
        "value": "1 = 👍, -1 = 👎, 0 = vote taken back",
        "comment": "the rater's comment, if any",
        "generation_id": "id of the pipeline call that made the image",
        "batch_index": "position of the image in its batch",
        "sha256": "sha256 of the stored PNG",
        "file": "path of the PNG inside the image store",
        "generated_at": "when the image was generated (ISO 8601, UTC)",
        "prompt": "the prompt as typed",
        "enhanced_prompt": "the prompt after the prompt enhancer, if used",
        "model_prompt": "the text the model read: the enhanced prompt, or a Chinese prompt's translation",
        "negative_prompt": "negative prompt",
        "seed": "the image's own random seed (regenerates it alone)",
        "steps": "denoising steps",
        "cfg": "classifier-free guidance scale",
        "sampler": "scheduler name",
        "width": "image width",
        "height": "image height",
        "model_name": "model name",
        "model_hash": "weights hash",
        "model": "name@first 12 hex digits of the weights hash",
        "app_version": "app version that made the image",
        "category": "prompt category, if any",
        "extra": "any other provenance, as a JSON object in a string",
    },
}

_STRING, _INT, _FLOAT, _BOOL = (datasets.Value(t) for t in ("string", "int64", "float64", "bool"))
FEATURES: dict[str, datasets.Features] = {
    "pickapic": datasets.Features(
        {
            "caption": _STRING,
            "jpg_0": datasets.Value("binary"),
            "jpg_1": datasets.Value("binary"),
            "label_0": _FLOAT,
            "label_1": _FLOAT,
            "model_0": _STRING,
            "model_1": _STRING,
            "user_id": _INT,
            "are_different": _BOOL,
            "has_label": _BOOL,
            "best_image_uid": _STRING,
            "image_0_uid": _STRING,
            "image_1_uid": _STRING,
            "source": _STRING,
        }
    ),
    "kto": datasets.Features(
        {
            "image": datasets.Image(),
            "file_name": _STRING,
            "caption": _STRING,
            "label": _BOOL,
            "user_id": _INT,
            "image_uid": _STRING,
            "model": _STRING,
        }
    ),
    "jsonl": datasets.Features(
        {
            **dict.fromkeys(COLUMNS["jsonl"], _STRING),
            **dict.fromkeys(("event_id", "user_id", "value", "batch_index", "seed", "steps", "width", "height"), _INT),
            "cfg": _FLOAT,
        }
    ),
}


@dataclass(frozen=True)
class ExportFilters:
    """Which feedback goes into an export (see the module docstring)."""

    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_votes: int = 0
    exclude_flagged: bool = False
    campaign: str | None = None

    def describe(self) -> list[str]:
        lines = [
            f"model: {self.model or 'all'}",
            f"since: {self.since.isoformat() if self.since else 'the beginning'} (inclusive)",
            f"until: {self.until.isoformat() if self.until else 'now'} (exclusive)",
            f"min votes per image: {self.min_votes}",
            "raters flagged by `feedback.agreement`: "
            + ("left out (see the counts)" if self.exclude_flagged else "kept"),
        ]
        if self.campaign is None:
            return [*lines, "campaign: none (all feedback)"]
        return [
            *lines,
            f"campaign: `{self.campaign}`, its normal items only (gold items check raters and are not data)",
            "raters flagged by `feedback.campaigns` in that campaign: left out (see the counts "
            "`campaign_raters_flagged_*`); a rater is flagged who "
            + "; or who ".join(f"{text} (`{code}`)" for code, text in FLAG_REASONS.items()),
        ]


@dataclass(frozen=True)
class ExportResult:
    """Where an export went and what it holds."""

    out_dir: Path
    format: str
    output: str
    rows: int
    counts: dict[str, int]


# -- rows -------------------------------------------------------------------------------------------


def pickapic_rows(rows: PreferenceRows) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Pick-a-Pic v2 rows from explicit comparisons and from each rater's 👍/👎 of one prompt and size."""
    counts: Counter[str] = Counter(dict.fromkeys(PICKAPIC_COUNTS, 0))
    latest: dict[tuple[int, frozenset[str]], ComparisonRow] = {}
    for comparison in rows.comparisons:  # ordered by id: later judgements replace earlier ones
        key = (comparison.rater_id, frozenset((comparison.left_image_id, comparison.right_image_id)))
        counts["comparisons_replaced_by_later"] += key in latest
        latest[key] = comparison

    jpeg = _JpegCache()
    out: list[dict[str, Any]] = []
    for comparison in latest.values():
        left, right = rows.images[comparison.left_image_id], rows.images[comparison.right_image_id]
        if comparison.outcome not in COMPARISON_LABELS:
            counts["both_bad_skipped"] += 1
        elif left.caption != right.caption:
            counts["cross_prompt_comparisons_skipped"] += 1
        elif not _same_size(left, right):
            counts["cross_size_comparisons_skipped"] += 1
        else:
            labels = COMPARISON_LABELS[comparison.outcome]
            out.append(_pair(left, right, labels, comparison.rater_id, "comparison", jpeg))
            counts["pairs_from_comparisons"] += 1
            counts["ties"] += labels == (0.5, 0.5)

    by_rater_prompt: dict[tuple[int, str], dict[int, list[str]]] = defaultdict(lambda: {1: [], -1: []})
    for vote in rows.votes:
        by_rater_prompt[(vote.rater_id, rows.images[vote.image_id].caption)][vote.value].append(vote.image_id)
    for (rater_id, _caption), votes in sorted(by_rater_prompt.items()):
        for liked in sorted(votes[1]):
            for disliked in sorted(votes[-1]):
                if not _same_size(rows.images[liked], rows.images[disliked]):
                    counts["cross_size_vote_pairs_skipped"] += 1
                    continue
                if (rater_id, frozenset((liked, disliked))) in latest:
                    counts["vote_pairs_superseded_by_comparison"] += 1
                    continue
                first, second = sorted((liked, disliked))
                labels = (1.0, 0.0) if first == liked else (0.0, 1.0)
                out.append(_pair(rows.images[first], rows.images[second], labels, rater_id, "votes", jpeg))
                counts["pairs_from_votes"] += 1
    counts["rows"] = len(out)
    return out, counts


def kto_rows(rows: PreferenceRows) -> tuple[list[dict[str, Any]], Counter[str]]:
    """One unpaired row per rater and image with a current vote."""
    out = [
        {
            "file_name": f"{rows.images[vote.image_id].sha256}.png",
            "caption": rows.images[vote.image_id].caption,
            "label": vote.value == 1,
            "user_id": vote.rater_id,
            "image_uid": vote.image_id,
            "model": rows.images[vote.image_id].model,
        }
        for vote in rows.votes
    ]
    counts = Counter(rows=len(out), likes=sum(r["label"] for r in out), dislikes=sum(not r["label"] for r in out))
    counts["images"] = len({r["image_uid"] for r in out})
    return out, counts


def log_rows(rows: PreferenceRows) -> tuple[list[dict[str, Any]], Counter[str]]:
    """One row per vote event with the image's full provenance."""
    out = []
    for event in rows.events:
        image = rows.images[event.image_id]
        provenance = {key: value for key, value in image.provenance.items() if key != "extra"}
        out.append(
            {
                "event_id": event.id,
                "created_at": event.created_at.isoformat(),
                "user_id": event.rater_id,
                "image_uid": event.image_id,
                "value": event.value,
                "comment": event.comment,
                "generation_id": image.generation_id,
                "batch_index": image.batch_index,
                "sha256": image.sha256,
                "file": image.file,
                "generated_at": image.generated_at.isoformat(),
                **provenance,
                "model": image.model,
                "extra": json.dumps(image.provenance["extra"], sort_keys=True, ensure_ascii=False),
            }
        )
    counts = Counter(dict.fromkeys(("likes", "dislikes", "take_backs"), 0), rows=len(out))
    counts.update({1: "likes", -1: "dislikes", 0: "take_backs"}[r["value"]] for r in out)
    return out, counts


# -- writing ----------------------------------------------------------------------------------------


def without_raters(rows: PreferenceRows, raters: set[int]) -> PreferenceRows:
    """``rows`` less every vote, comparison and vote event of ``raters``."""
    return dataclasses.replace(
        rows,
        votes=[row for row in rows.votes if row.rater_id not in raters],
        comparisons=[row for row in rows.comparisons if row.rater_id not in raters],
        events=[row for row in rows.events if row.rater_id not in raters],
    )


def without_flagged_raters(rows: PreferenceRows) -> tuple[PreferenceRows, dict[str, int]]:
    """``rows`` less the feedback of the raters :func:`feedback.agreement.agreement` flags, and what went."""
    report = agreement(rows, n_boot=0)
    flagged = set(report.raters.loc[report.raters["flagged"], "rater_id"].astype(int))
    kept = without_raters(rows, flagged)
    dropped = {
        "flagged_raters_left_out": len(flagged),
        "votes_of_flagged_raters": len(rows.votes) - len(kept.votes),
        "comparisons_of_flagged_raters": len(rows.comparisons) - len(kept.comparisons),
    }
    logger.info("left out %d flagged raters: %s", len(flagged), dropped)
    return kept, dropped


def without_campaign_flagged_raters(
    store: FeedbackStore, rows: PreferenceRows, campaign: str
) -> tuple[PreferenceRows, dict[str, int]]:
    """``rows`` less the feedback of the raters :func:`feedback.campaigns.campaign_report` flags, and what went."""
    raters = campaign_report(store, campaign, n_boot=0).raters
    flagged = set(raters.loc[raters["flagged"], "rater_id"].astype(int))
    kept = without_raters(rows, flagged)
    dropped = {
        "campaign_flagged_raters_left_out": len(flagged),
        **{f"campaign_raters_flagged_{code}": n for code, n in flag_counts(raters).items()},
        "votes_of_campaign_flagged_raters": len(rows.votes) - len(kept.votes),
        "comparisons_of_campaign_flagged_raters": len(rows.comparisons) - len(kept.comparisons),
    }
    logger.info("left out %d raters flagged in campaign %r: %s", len(flagged), campaign, dropped)
    return kept, dropped


def export(
    store: FeedbackStore,
    fmt: str,
    out_dir: str | Path,
    output: str = "parquet",
    filters: ExportFilters | None = None,
) -> ExportResult:
    """Write one export (data files plus README.md) into ``out_dir``, which must be new or empty."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; choose from {', '.join(OUTPUTS)}")
    fmt, filters = FORMATS[fmt], filters or ExportFilters()
    if (fmt, output) == ("pickapic", "jsonl"):
        raise ValueError(
            "--as jsonl cannot carry the JPEG bytes that Diffusion-DPO reads from jpg_0 and jpg_1; "
            "export pickapic pairs with --as parquet or --as datasets."
        )
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose a new folder for the export")
    out.mkdir(parents=True, exist_ok=True)

    rows = store.preference_rows(
        model=filters.model,
        since=filters.since,
        until=filters.until,
        min_votes=filters.min_votes,
        with_events=fmt == "jsonl",  # only the vote log reads the history
        campaign=filters.campaign,
    )
    dropped = {}
    if filters.campaign is not None:
        rows, dropped = without_campaign_flagged_raters(store, rows, filters.campaign)
    if filters.exclude_flagged:
        rows, flagged = without_flagged_raters(rows)
        dropped.update(flagged)
    builders = {"pickapic": pickapic_rows, "kto": kto_rows, "jsonl": log_rows}
    records, counts = builders[fmt](rows)
    counts.update(dropped)

    if fmt == "kto" and output == "jsonl":
        _write_imagefolder(records, rows, out)
    elif output == "jsonl":
        with (out / "train.jsonl").open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        if fmt == "kto":
            for record in records:
                png = rows.images[record["image_uid"]].path.read_bytes()
                record["image"] = {"bytes": png, "path": record["file_name"]}
        dataset = datasets.Dataset.from_list(records, features=FEATURES[fmt]) if records else _empty(fmt)
        if output == "parquet":
            dataset.to_parquet(str(out / "train.parquet"))
        else:
            dataset.save_to_disk(str(out))

    result = ExportResult(out_dir=out, format=fmt, output=output, rows=len(records), counts=dict(counts))
    (out / "README.md").write_text(dataset_card(result, filters, store.url), encoding="utf-8")
    logger.info("exported %d %s rows as %s to %s", len(records), fmt, output, out)
    return result


def _write_imagefolder(records: list[dict[str, Any]], rows: PreferenceRows, out: Path) -> None:
    """HF imagefolder layout: metadata.jsonl plus the PNGs it names, each written once."""
    for record in records:
        target = out / record["file_name"]
        if not target.exists():
            shutil.copyfile(rows.images[record["image_uid"]].path, target)
    with (out / "metadata.jsonl").open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def dataset_card(result: ExportResult, filters: ExportFilters, source_url: str) -> str:
    """A README.md for the export: what it is, how to load it, how it was made, what it holds."""
    files, loader = {
        "parquet": ("`train.parquet`", 'load_dataset("parquet", data_files="train.parquet", split="train")'),
        "jsonl": ("`train.jsonl`", 'load_dataset("json", data_files="train.jsonl", split="train")'),
        "datasets": ("`Dataset.save_to_disk` files", 'load_from_disk(".")'),
    }[result.output]
    if (result.format, result.output) == ("kto", "jsonl"):
        files = "`metadata.jsonl` and the PNG files it names (HF imagefolder)"
        loader = 'load_dataset("imagefolder", data_dir=".", split="train")'
    title = {"pickapic": "pairwise preferences (Pick-a-Pic v2 / Diffusion-DPO)", "kto": "unpaired 👍/👎 (KTO)"}
    lines = [
        "---",
        "license: other",
        f"pretty_name: RAPHAEL demo feedback, {result.format}",
        "task_categories:",
        "- text-to-image",
        "tags:",
        "- human-feedback",
        "- preference",
        "---",
        "",
        f"# RAPHAEL demo feedback: {title.get(result.format, 'vote event log')}",
        "",
        f"Exported {datetime.now(UTC).isoformat(timespec='seconds')} from "
        f"`{make_url(source_url).render_as_string(hide_password=True)}` by `python -m feedback.export`.",
        "",
        f"- format: `{result.format}`; output: `{result.output}` ({files})",
        f"- load it: `from datasets import load_dataset, load_from_disk; ds = {loader}`",
        "",
        *(
            [
                "**This export is empty**: no feedback passed the filters. 🤗 datasets cannot load a file",
                "without rows (pandas and pyarrow can, and show the columns).",
                "",
            ]
            if result.rows == 0
            else []
        ),
        "## Columns",
        "",
        "| column | meaning |",
        "|---|---|",
        *(f"| `{name}` | {meaning} |" for name, meaning in COLUMNS[result.format].items()),
        "",
    ]
    if result.format == "pickapic":
        lines += [
            "## How pairs are made",
            "",
            "All pairs are **per rater**: one person's judgement of two images of one prompt and one size",
            "(width and height; Diffusion-DPO noises both images of a pair alike, so they share a shape).",
            "",
            "1. Explicit comparisons: left → labels 1/0, right → 0/1, tie → 0.5/0.5 (the Diffusion-DPO",
            "   script drops ties), both_bad → no row. Only a rater's latest comparison of the same two",
            "   images counts. Comparisons of two different prompts (one caption per row) or of two",
            "   different sizes are skipped; the counts below say how many.",
            "2. Votes: for each rater and prompt (exact match), every image they liked is paired with",
            "   every image of the same size they disliked (other sizes are skipped and counted); image 0",
            "   is the one with the smaller id. A pair that rater also compared explicitly comes from the",
            "   comparison only.",
            "",
            "Votes of different raters are never paired: one person's 👍 against another's 👎 measures",
            "their standards as much as the images. Images are JPEG (quality 95) as in Pick-a-Pic;",
            "the lossless PNGs with full provenance are in the image store and in the `kto` export.",
            "",
        ]
    lines += [
        "## Filters",
        "",
        *(f"- {line}" for line in filters.describe()),
        "",
        "## Counts",
        "",
        *(f"- {name}: {value}" for name, value in sorted(result.counts.items())),
        "",
        "## Licence and privacy",
        "",
        "The images were generated by the RAPHAEL demo model and the ratings were given by its",
        "users. No licence has been chosen for this data (`license: other`); set one, and check the",
        "terms of the model and of the people who rated, before you publish it. `user_id` is the",
        "store's internal rater number: no browser id, IP address or IP hash is exported, but free",
        "text comments may contain anything a rater typed.",
        "",
    ]
    return "\n".join(lines)


# -- helpers ----------------------------------------------------------------------------------------


class _JpegCache:
    """JPEG bytes of stored PNGs, each converted once."""

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    def __call__(self, image: ImageRow) -> bytes:
        if image.id not in self._cache:
            with PILImage.open(image.path) as png:
                buffer = io.BytesIO()
                png.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
            self._cache[image.id] = buffer.getvalue()
        return self._cache[image.id]


def _same_size(image_0: ImageRow, image_1: ImageRow) -> bool:
    return (image_0.width, image_0.height) == (image_1.width, image_1.height)


def _pair(
    image_0: ImageRow,
    image_1: ImageRow,
    labels: tuple[float, float],
    rater_id: int,
    source: str,
    jpeg: _JpegCache,
) -> dict[str, Any]:
    best = image_0.id if labels[0] > labels[1] else image_1.id if labels[1] > labels[0] else ""
    return {
        "caption": image_0.caption,
        "jpg_0": jpeg(image_0),
        "jpg_1": jpeg(image_1),
        "label_0": labels[0],
        "label_1": labels[1],
        "model_0": image_0.model,
        "model_1": image_1.model,
        "user_id": rater_id,
        "are_different": image_0.sha256 != image_1.sha256,
        "has_label": True,
        "best_image_uid": best,
        "image_0_uid": image_0.id,
        "image_1_uid": image_1.id,
        "source": source,
    }


def _empty(fmt: str) -> datasets.Dataset:
    return datasets.Dataset.from_dict({name: [] for name in FEATURES[fmt]}, features=FEATURES[fmt])


CLI_DESCRIPTION = """\
Export the ratings as a preference dataset; a README.md dataset card is written beside the data.

formats (--format):
  pickapic, dpo  Pick-a-Pic v2 / Diffusion-DPO pairs: caption, jpg_0, jpg_1, label_0, label_1, model_0,
                 model_1, user_id, are_different, has_label, best_image_uid, image_0_uid, image_1_uid
                 (+ source); images as JPEG bytes. Pairs are per rater: explicit comparisons (left 1/0,
                 right 0/1, tie 0.5/0.5, both_bad skipped, only a rater's latest comparison of two
                 images counts, two different prompts or sizes skipped) and, for each prompt, every
                 image the rater liked against every image of the same size the same rater disliked.
  kto            one row per current vote: file_name, caption, label (true = 👍), the original PNGs.
  jsonl          every vote event (changes and take-backs too) with the image's full provenance.

outputs (--as):
  parquet        train.parquet with image bytes
  jsonl          train.jsonl; kto: HF imagefolder, metadata.jsonl + PNG files; pickapic: refused, since
                 Diffusion-DPO reads jpg_0/jpg_1 as bytes, which JSON cannot hold (use parquet or datasets)
  datasets       Dataset.save_to_disk, for datasets.load_from_disk
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feedback.export",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=CLI_DESCRIPTION,
        epilog=(
            "examples:\n"
            "  python -m feedback.export --format pickapic --as parquet --out exports/dpo --since 2025-06-01\n"
            "  python -m feedback.export --format kto --as jsonl --out exports/kto --model raphael-tiny --min-votes 2"
        ),
    )
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="dataset layout (see above)")
    parser.add_argument(
        "--as", dest="output", default="parquet", choices=OUTPUTS, help="file layout (default: parquet)"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder; must be new or empty")
    add_store_arguments(parser)
    add_filter_arguments(parser)
    parser.add_argument(
        "--min-votes",
        type=int,
        default=0,
        help="only images judged at least this often: current votes plus comparisons (default: 0, no filter)",
    )
    parser.add_argument(
        "--exclude-flagged",
        action="store_true",
        help="leave out the raters that `python -m feedback.agreement` flags (they mostly disagree with the others)",
    )
    parser.add_argument(
        "--campaign",
        metavar="NAME",
        help="only the rating campaign's normal items, without the raters `python -m feedback.campaigns show` flags",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.verbose:
        datasets.disable_progress_bars()

    filters = ExportFilters(
        model=args.model,
        since=args.since,
        until=args.until,
        min_votes=args.min_votes,
        exclude_flagged=args.exclude_flagged,
        campaign=args.campaign,
    )
    with open_store(parser, args) as store:
        try:
            result = export(store, args.format, args.out, args.output, filters)
        except (FileExistsError, ValueError) as error:
            parser.error(str(error))
    print(f"wrote {result.rows} {result.format} rows to {result.out_dir} ({result.output})", file=sys.stderr)
    if skipped := {name: n for name, n in result.counts.items() if name.endswith("_skipped") and n}:
        print("skipped: " + ", ".join(f"{name}: {n}" for name, n in skipped.items()), file=sys.stderr)
    if result.rows == 0:
        print("warning: the export is empty; check --model, --since, --until and --min-votes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
