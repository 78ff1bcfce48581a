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

Streaming
---------
An export streams: rows come from :meth:`FeedbackStore.feedback_reader` (one read transaction) a chunk at a time,
images are read or converted for that chunk only, and each chunk becomes one Parquet row group or Arrow batch
(``datasets`` output: an Arrow file beside the export, then :meth:`datasets.Dataset.save_to_disk`). Pairs need no
more than one rater's votes at a time (ids and provenance, no images): comparison rows come first, in the order
the comparisons were made, then vote pairs rater by rater, merged with that rater's comparisons. The JPEGs are the
copies the image store keeps beside its PNGs (made here, once, for images stored before it kept them); worker
processes read them while the next chunk is read, and a small cache keeps the ones a rater's other pairs reuse.
The files are those the in-memory exporter wrote (columns, types, metadata, row order), in more row groups.
``--exclude-flagged`` and ``--campaign`` judge raters on all the kept feedback first, so they read every current
vote and comparison (ids only) into memory.

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
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, groupby
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.arrow_writer import get_parquet_column_options
from sqlalchemy.engine import make_url

from feedback.agreement import agreement
from feedback.campaigns import FLAG_REASONS, campaign_report, flag_counts
from feedback.cli import add_filter_arguments, add_store_arguments, open_store
from feedback.images import JPEG_QUALITY, jpeg_copy
from feedback.store import FeedbackReader, FeedbackStore, ImageRow, PreferenceRows

logger = logging.getLogger(__name__)

FORMATS = {"pickapic": "pickapic", "dpo": "pickapic", "kto": "kto", "jsonl": "jsonl"}
OUTPUTS = ("parquet", "jsonl", "datasets")
COMPARISON_LABELS = {"left": (1.0, 0.0), "right": (0.0, 1.0), "tie": (0.5, 0.5)}
CHUNK_ROWS = 1000  # rows read from the store at a time, and the most rows per Parquet row group or Arrow batch
CHUNK_BYTES = 32 * 2**20  # a chunk ends early once its image bytes reach this (large images)
JPEG_CACHE_BYTES = 8 * 2**20  # JPEGs kept for the pairs that reuse an image (a rater's likes × dislikes)
JPEG_WORKERS = 4  # the most processes that convert a pairs export's PNGs to JPEG
ROW_BYTES: dict[str, Callable[[dict[str, Any]], int]] = {  # the image bytes of a row, as chunks count them
    "pickapic": lambda row: 3 * sum(row[side].width * row[side].height for side in ("jpg_0", "jpg_1")),  # pixels
    "kto": lambda row: len(row["image"]["bytes"]),
    "jsonl": lambda row: 0,
}
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
EMPTY_COUNTS = {  # every count an export of each format reports, zero included
    "pickapic": PICKAPIC_COUNTS,
    "kto": ("rows", "likes", "dislikes", "images"),
    "jsonl": ("likes", "dislikes", "take_backs", "rows"),
}

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

    @property
    def selection(self) -> dict[str, Any]:
        """The filters the store applies itself (``preference_rows`` and ``feedback_reader`` take them alike)."""
        return {
            "model": self.model,
            "since": self.since,
            "until": self.until,
            "min_votes": self.min_votes,
            "campaign": self.campaign,
        }

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


def pickapic_rows(reader: FeedbackReader, counts: Counter[str]) -> Iterator[dict[str, Any]]:
    """Pick-a-Pic v2 rows from explicit comparisons and from each rater's 👍/👎 of one prompt and size, streamed.

    Comparison rows come first, in the order the comparisons were made; then vote pairs rater by rater, caption by
    caption. Memory holds one rater's votes (ids and provenance, no image bytes). ``jpg_0`` and ``jpg_1`` hold the
    images (:class:`ImageRow`) until :meth:`_Jpegs.fill` converts them. ``counts`` (:data:`PICKAPIC_COUNTS` but
    ``rows``) grows as the rows are taken.
    """
    repeated = reader.repeated_comparisons()
    for comparison, left, right in reader.comparisons():
        key = (comparison.rater_id, frozenset((comparison.left_image_id, comparison.right_image_id)))
        if key in repeated:  # only the latest judgement of the pair counts, in the place of the first
            first, latest = repeated[key]
            if comparison.id != first:
                counts["comparisons_replaced_by_later"] += 1
                continue
            if latest.left_image_id != comparison.left_image_id:
                left, right = right, left
            comparison = latest
        if comparison.outcome not in COMPARISON_LABELS:
            counts["both_bad_skipped"] += 1
        elif left.caption != right.caption:
            counts["cross_prompt_comparisons_skipped"] += 1
        elif not _same_size(left, right):
            counts["cross_size_comparisons_skipped"] += 1
        else:
            labels = COMPARISON_LABELS[comparison.outcome]
            yield _pair(left, right, labels, comparison.rater_id, "comparison")
            counts["pairs_from_comparisons"] += 1
            counts["ties"] += labels == (0.5, 0.5)

    compared = _ComparedPairs(reader.compared_pairs())
    for rater_id, votes in groupby(reader.votes(by_rater=True), key=lambda vote_image: vote_image[0].rater_id):
        compared_by_rater = compared.of(rater_id)
        by_prompt: dict[str, dict[int, list[ImageRow]]] = defaultdict(lambda: {1: [], -1: []})
        for vote, image in votes:
            by_prompt[image.caption][vote.value].append(image)
        for caption in sorted(by_prompt):
            liked_images, disliked_images = (sorted(by_prompt[caption][v], key=_image_id) for v in (1, -1))
            for liked in liked_images:
                for disliked in disliked_images:
                    if not _same_size(liked, disliked):
                        counts["cross_size_vote_pairs_skipped"] += 1
                        continue
                    if frozenset((liked.id, disliked.id)) in compared_by_rater:
                        counts["vote_pairs_superseded_by_comparison"] += 1
                        continue
                    first, second = sorted((liked, disliked), key=_image_id)
                    labels = (1.0, 0.0) if first is liked else (0.0, 1.0)
                    yield _pair(first, second, labels, rater_id, "votes")
                    counts["pairs_from_votes"] += 1


def kto_rows(reader: FeedbackReader, counts: Counter[str]) -> Iterator[tuple[dict[str, Any], ImageRow]]:
    """One unpaired row per rater and image with a current vote, in the order the votes were cast, with its image."""
    for vote, image in reader.votes():
        counts["likes" if vote.value == 1 else "dislikes"] += 1
        record = {
            "file_name": f"{image.sha256}.png",
            "caption": image.caption,
            "label": vote.value == 1,
            "user_id": vote.rater_id,
            "image_uid": vote.image_id,
            "model": image.model,
        }
        yield record, image


def log_rows(reader: FeedbackReader, counts: Counter[str]) -> Iterator[dict[str, Any]]:
    """One row per vote event with the image's full provenance."""
    for event, image in reader.events():
        counts[{1: "likes", -1: "dislikes", 0: "take_backs"}[event.value]] += 1
        provenance = {key: value for key, value in image.provenance.items() if key != "extra"}
        yield {
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


# -- writing ----------------------------------------------------------------------------------------


def without_raters(rows: PreferenceRows, raters: set[int]) -> PreferenceRows:
    """``rows`` less every vote, comparison and vote event of ``raters``."""
    return dataclasses.replace(
        rows,
        votes=[row for row in rows.votes if row.rater_id not in raters],
        comparisons=[row for row in rows.comparisons if row.rater_id not in raters],
        events=[row for row in rows.events if row.rater_id not in raters],
    )


def without_flagged_raters(rows: PreferenceRows) -> tuple[PreferenceRows, set[int], dict[str, int]]:
    """``rows`` less the feedback of the raters :func:`feedback.agreement.agreement` flags, those raters, and what
    went."""
    report = agreement(rows, n_boot=0)
    flagged = set(report.raters.loc[report.raters["flagged"], "rater_id"].astype(int))
    kept = without_raters(rows, flagged)
    dropped = {
        "flagged_raters_left_out": len(flagged),
        "votes_of_flagged_raters": len(rows.votes) - len(kept.votes),
        "comparisons_of_flagged_raters": len(rows.comparisons) - len(kept.comparisons),
    }
    logger.info("left out %d flagged raters: %s", len(flagged), dropped)
    return kept, flagged, dropped


def without_campaign_flagged_raters(
    store: FeedbackStore, rows: PreferenceRows, campaign: str
) -> tuple[PreferenceRows, set[int], dict[str, int]]:
    """``rows`` less the feedback of the raters :func:`feedback.campaigns.campaign_report` flags, those raters, and
    what went."""
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
    return kept, flagged, dropped


def left_out_raters(store: FeedbackStore, filters: ExportFilters) -> tuple[set[int], dict[str, int]]:
    """The raters ``--campaign`` and ``--exclude-flagged`` leave out, and the counts for the card.

    Both judge raters on all the feedback the other filters keep, so this reads every current vote and comparison
    (ids, no images) into memory: only these two filters make an export's memory grow with the store.
    """
    if filters.campaign is None and not filters.exclude_flagged:
        return set(), {}
    rows = store.preference_rows(**filters.selection, with_images=False, with_events=False)
    left_out: set[int] = set()
    dropped: dict[str, int] = {}
    if filters.campaign is not None:
        rows, flagged, counts = without_campaign_flagged_raters(store, rows, filters.campaign)
        left_out |= flagged
        dropped.update(counts)
    if filters.exclude_flagged:
        rows, flagged, counts = without_flagged_raters(rows)
        left_out |= flagged
        dropped.update(counts)
    return left_out, dropped


def export(
    store: FeedbackStore,
    fmt: str,
    out_dir: str | Path,
    output: str = "parquet",
    filters: ExportFilters | None = None,
    chunk_size: int = CHUNK_ROWS,
    jpeg_workers: int | None = None,
) -> ExportResult:
    """Write one export (data files plus README.md) into ``out_dir``, which must be new or empty.

    Rows stream from the store to the files ``chunk_size`` at a time (fewer when their images pass
    :data:`CHUNK_BYTES`): one Parquet row group or Arrow batch each, so memory does not grow with the store.
    ``jpeg_workers``: processes that convert a pairs export's images (default: one per CPU, at most
    :data:`JPEG_WORKERS`).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; choose from {', '.join(OUTPUTS)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    if jpeg_workers is None:
        jpeg_workers = min(JPEG_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
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

    left_out, dropped = left_out_raters(store, filters)
    counts: Counter[str] = Counter(dict.fromkeys(EMPTY_COUNTS[fmt], 0))
    with ExitStack() as stack:
        reader = stack.enter_context(
            store.feedback_reader(**filters.selection, without_raters=left_out, chunk_size=chunk_size)
        )
        if fmt == "pickapic":
            records = pickapic_rows(reader, counts)
        elif fmt == "jsonl":
            records = log_rows(reader, counts)
        elif output == "jsonl":  # kto as an imagefolder: the PNG files beside metadata.jsonl
            records = _copied_pngs(kto_rows(reader, counts), out)
        else:
            records = ({**record, "image": _png(image, record)} for record, image in kto_rows(reader, counts))
        if output == "jsonl":
            rows = _write_jsonl(records, out / ("metadata.jsonl" if fmt == "kto" else "train.jsonl"))
        else:
            chunks = _chunks(records, chunk_size, ROW_BYTES[fmt])
            if fmt == "pickapic":
                chunks = stack.enter_context(_Jpegs(jpeg_workers)).fill(chunks)
            features, chunks = _features_as_rows(fmt, chunks)
            write = _write_parquet if output == "parquet" else _save_to_disk
            rows = write(chunks, features, out / "train.parquet" if output == "parquet" else out)
        if fmt == "kto":
            counts["images"] = reader.voted_images()
    counts["rows"] = rows
    counts.update(dropped)

    result = ExportResult(out_dir=out, format=fmt, output=output, rows=rows, counts=dict(counts))
    (out / "README.md").write_text(dataset_card(result, filters, store.url), encoding="utf-8")
    logger.info("exported %d %s rows as %s to %s", rows, fmt, output, out)
    return result


def _png(image: ImageRow, record: dict[str, Any]) -> dict[str, Any]:
    """The stored PNG as a :class:`datasets.Image` value."""
    return {"bytes": image.path.read_bytes(), "path": record["file_name"]}


def _copied_pngs(rows: Iterable[tuple[dict[str, Any], ImageRow]], out: Path) -> Iterator[dict[str, Any]]:
    """HF imagefolder layout: each row's PNG copied beside metadata.jsonl (once per file), then the row."""
    for record, image in rows:
        target = out / record["file_name"]
        if not target.exists():
            shutil.copyfile(image.path, target)
        yield record


def _write_jsonl(records: Iterable[dict[str, Any]], path: Path) -> int:
    rows = 0
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            rows += 1
    return rows


def _features_as_rows(
    fmt: str, chunks: Iterator[list[dict[str, Any]]]
) -> tuple[datasets.Features, Iterator[list[dict[str, Any]]]]:
    """The format's features with the columns in the order of the rows' keys, as :meth:`datasets.Dataset.from_list`
    lays them out (:data:`FEATURES` order when there are no rows), and the chunks, none taken."""
    first = next(chunks, None)
    if first is None:
        return FEATURES[fmt], iter(())
    return datasets.Features({name: FEATURES[fmt][name] for name in first[0]}), chain([first], chunks)


def _write_parquet(chunks: Iterable[list[dict[str, Any]]], features: datasets.Features, path: Path) -> int:
    """One row group per chunk, with the column options, content-defined chunking and page index that
    :meth:`datasets.Dataset.to_parquet` uses, so the file reads as one that datasets wrote."""
    schema, rows = features.arrow_schema, 0
    with pq.ParquetWriter(
        path,
        schema,
        use_content_defined_chunking=datasets.config.DEFAULT_CDC_OPTIONS,
        write_page_index=True,
        **get_parquet_column_options(features, schema),
    ) as writer:
        for chunk in chunks:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            rows += len(chunk)
        writer.add_key_value_metadata({"content_defined_chunking": json.dumps(datasets.config.DEFAULT_CDC_OPTIONS)})
    return rows


def _save_to_disk(chunks: Iterable[list[dict[str, Any]]], features: datasets.Features, out: Path) -> int:
    """:meth:`datasets.Dataset.save_to_disk` into ``out``, from an Arrow file written chunk by chunk beside it and
    memory-mapped (the layout datasets keeps its own cache in), then removed."""
    schema, rows = features.arrow_schema, 0
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=out) as staging:
        arrow = Path(staging) / "train.arrow"
        with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for chunk in chunks:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                rows += len(chunk)
        dataset = datasets.Dataset.from_file(str(arrow))
        dataset.save_to_disk(str(out))
        del dataset  # unmaps the staging file before it goes
    return rows


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
            f"their standards as much as the images. Images are JPEG (quality {JPEG_QUALITY}) as in Pick-a-Pic;",
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


class _Jpegs:
    """Puts JPEG bytes into the ``jpg_0``/``jpg_1`` of pair rows, chunk by chunk, where :func:`pickapic_rows` left
    the images: each image's JPEG copy (:func:`~feedback.images.jpeg_copy`) is read once while it stays in a bounded
    cache (a rater's vote pairs reuse their images), and a chunk's reads run in ``workers`` processes while the next
    chunk is read from the store.

    The workers are forked (Linux), so they start at once with this module loaded; they only read image files. With
    one worker, or without fork, the reads run in this process.
    """

    def __init__(self, workers: int, max_bytes: int = JPEG_CACHE_BYTES) -> None:
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._bytes, self._max_bytes = 0, max_bytes
        fork = "fork" in multiprocessing.get_all_start_methods() and sys.platform == "linux"
        self._workers = workers if fork else 1
        context = multiprocessing.get_context("fork") if fork else None
        self._pool = ProcessPoolExecutor(workers, mp_context=context) if self._workers > 1 else None

    def __enter__(self) -> _Jpegs:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def fill(self, chunks: Iterable[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
        """The chunks with their JPEGs, each handed on once the next one's conversions have started."""
        pending = None
        for chunk in chunks:
            started = self._start(chunk)
            if pending is not None:
                yield self._finish(*pending)
            pending = (chunk, *started)
        if pending is not None:
            yield self._finish(*pending)

    def _start(self, chunk: list[dict[str, Any]]) -> tuple[dict[str, bytes], dict[str, Path], Iterator[bytes]]:
        """The chunk's JPEGs that are cached, the images still to convert, and their conversions, begun."""
        ready: dict[str, bytes] = {}
        todo: dict[str, Path] = {}
        for row in chunk:
            for image in (row["jpg_0"], row["jpg_1"]):
                if image.sha256 in ready or image.sha256 in todo:
                    continue
                if (cached := self._cache.get(image.sha256)) is not None:
                    self._cache.move_to_end(image.sha256)
                    ready[image.sha256] = cached
                else:
                    todo[image.sha256] = image.path
        if self._pool is None or len(todo) < 2:
            return ready, todo, map(jpeg_copy, todo.values())  # lazy: converted in _finish
        spread = max(1, len(todo) // (4 * self._workers))
        return ready, todo, self._pool.map(jpeg_copy, todo.values(), chunksize=spread)

    def _finish(
        self, chunk: list[dict[str, Any]], ready: dict[str, bytes], todo: dict[str, Path], jpegs: Iterator[bytes]
    ) -> list[dict[str, Any]]:
        for sha256, jpeg in zip(todo, jpegs, strict=True):
            ready[sha256] = self._cache[sha256] = jpeg
            self._bytes += len(jpeg)
        while self._bytes > self._max_bytes:
            self._bytes -= len(self._cache.popitem(last=False)[1])
        for row in chunk:
            row["jpg_0"], row["jpg_1"] = ready[row["jpg_0"].sha256], ready[row["jpg_1"].sha256]
        return chunk


class _ComparedPairs:
    """Each rater's compared pairs, from (rater, left, right) rows grouped by rater, asked for in rising rater order
    (a merge: one rater's pairs in memory at a time)."""

    def __init__(self, rows: Iterator[tuple[int, str, str]]) -> None:
        self._groups = groupby(rows, key=lambda row: row[0])
        self._next = next(self._groups, None)

    def of(self, rater_id: int) -> set[frozenset[str]]:
        while self._next is not None and self._next[0] < rater_id:
            self._next = next(self._groups, None)
        if self._next is None or self._next[0] != rater_id:
            return set()
        pairs = {frozenset((left, right)) for _, left, right in self._next[1]}
        self._next = next(self._groups, None)
        return pairs


def _chunks(
    records: Iterable[dict[str, Any]], rows: int, size: Callable[[dict[str, Any]], int]
) -> Iterator[list[dict[str, Any]]]:
    """``records`` in lists of ``rows``, or fewer once their ``size`` (image bytes) adds up to :data:`CHUNK_BYTES`."""
    chunk: list[dict[str, Any]] = []
    total = 0
    for record in records:
        chunk.append(record)
        total += size(record)
        if len(chunk) >= rows or total >= CHUNK_BYTES:
            yield chunk
            chunk, total = [], 0
    if chunk:
        yield chunk


def _image_id(image: ImageRow) -> str:
    return image.id


def _same_size(image_0: ImageRow, image_1: ImageRow) -> bool:
    return (image_0.width, image_0.height) == (image_1.width, image_1.height)


def _pair(
    image_0: ImageRow,
    image_1: ImageRow,
    labels: tuple[float, float],
    rater_id: int,
    source: str,
) -> dict[str, Any]:
    best = image_0.id if labels[0] > labels[1] else image_1.id if labels[1] > labels[0] else ""
    return {
        "caption": image_0.caption,
        "jpg_0": image_0,  # until _Jpegs.fill puts the JPEG bytes here
        "jpg_1": image_1,
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
