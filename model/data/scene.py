"""Scene ground truth, its sampler and its renderer.

A scene is a named background colour, a style, and up to five objects, each one emoji repeated
1-3 times at one of five positions. Positions are strict so that ground truth matches pixels:

- ``left``/``right``: every instance lies in that half; the group straddles the horizontal
  midline and its centre sits in the outer three quarters of the half.
- ``top``/``bottom``: the same, transposed.
- ``centre``: the group lies in the central region (1/8 margins), centred within a quarter of
  its own size, so it straddles both midlines.

So each object lies in exactly one position's region, different objects never overlap (a
one-pixel gap), and ``boxes`` are the exact sprite squares that were drawn.
"""

import random
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from model.data.atlas import load_atlas
from model.data.config import SceneConfig
from model.data.splits import is_reserved, reserved_combinations
from model.data.styles import add_stars, style_background, styled_sprite
from model.data.vocab import BACKGROUNDS, POSITIONS, SIZES
from model.pipeline.buckets import bucket_size

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), in pixels

_PLACEMENT_TRIES = 16


@dataclass
class SceneObject:
    """One emoji, drawn ``count`` times as a group at ``position``."""

    emoji: str
    count: int
    position: str
    size: str
    boxes: list[Box] = field(default_factory=list)

    @property
    def bounds(self) -> Box:
        """The union of this object's boxes."""
        xs0, ys0, xs1, ys1 = zip(*self.boxes, strict=True)
        return min(xs0), min(ys0), max(xs1), max(ys1)


@dataclass
class Scene:
    """Ground truth for one image; ``seed`` drives the style's texture and stars."""

    bucket: str
    height: int
    width: int
    background: str
    style: str
    objects: list[SceneObject]
    seed: int = 0

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (boxes as lists)."""
        data = asdict(self)
        for obj in data["objects"]:
            obj["boxes"] = [list(b) for b in obj["boxes"]]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Scene":
        """Inverse of :meth:`to_dict`."""
        objects = [SceneObject(**{**o, "boxes": [tuple(b) for b in o["boxes"]]}) for o in data["objects"]]
        return cls(**{**data, "objects": objects})

    def object_at(self, position: str) -> SceneObject | None:
        """The object at ``position``, if any."""
        return next((o for o in self.objects if o.position == position), None)


def region_box(position: str, height: int, width: int) -> Box:
    """The part of the image that every instance of an object at ``position`` lies inside."""
    half_w, half_h = width // 2, height // 2
    if position == "left":
        return 0, 0, half_w, height
    if position == "right":
        return width - half_w, 0, width, height
    if position == "top":
        return 0, 0, width, half_h
    if position == "bottom":
        return 0, height - half_h, width, height
    if position == "centre":
        mx, my = round(width / 8), round(height / 8)
        return mx, my, width - mx, height - my
    raise ValueError(f"Unknown position {position!r}; choose from {POSITIONS}.")


def sprite_pixels(size: str, height: int, width: int) -> int:
    """Side in pixels of one sprite of ``size`` in an image of this shape."""
    return max(4, round(SIZES[size] * min(height, width)))


def _arrangements(count: int, side: int) -> list[list[tuple[int, int]]]:
    """Candidate offsets of ``count`` instances in a group: row, column and (for 3) a triangle."""
    step = side + max(1, side // 8)
    if count == 1:
        return [[(0, 0)]]
    row = [(i * step, 0) for i in range(count)]
    column = [(0, i * step) for i in range(count)]
    if count == 2:
        return [row, column]
    return [row, column, [(step // 2, 0), (0, step), (step, step)]]


def _axis_range(lo: int, hi: int, extent: int, centre: float, spread: float) -> tuple[int, int] | None:
    """Start coordinates in [lo, hi - extent] whose group centre lies within ``spread`` of ``centre``."""
    first = max(lo, int(np.ceil(centre - spread - extent / 2)))
    last = min(hi - extent, int(np.floor(centre + spread - extent / 2)))
    return (first, last) if first <= last else None


def _place(rng: random.Random, position: str, gw: int, gh: int, height: int, width: int) -> tuple[int, int] | None:
    """Pick the top-left corner of a ``gw`` x ``gh`` group for ``position``, or None if it cannot fit."""
    x0, y0, x1, y1 = region_box(position, height, width)
    if position in ("left", "right"):
        outer = 0.375 * width if position == "left" else 0.625 * width
        xs = _axis_range(x0, x1, gw, outer, width / 2)
        if xs is not None:  # centre in the outer three quarters of the half, where the group fits there
            xs = _axis_range(x0, x1, gw, outer + (-1 if position == "left" else 1) * width / 4, width / 8) or xs
        ys = _axis_range(y0, y1, gh, height / 2, gh / 4)
    elif position in ("top", "bottom"):
        outer = 0.375 * height if position == "top" else 0.625 * height
        ys = _axis_range(y0, y1, gh, outer, height / 2)
        if ys is not None:
            ys = _axis_range(y0, y1, gh, outer + (-1 if position == "top" else 1) * height / 4, height / 8) or ys
        xs = _axis_range(x0, x1, gw, width / 2, gw / 4)
    else:
        xs = _axis_range(x0, x1, gw, width / 2, min(gw / 4, width / 10))
        ys = _axis_range(y0, y1, gh, height / 2, min(gh / 4, height / 10))
    if xs is None or ys is None:
        return None
    return rng.randint(*xs), rng.randint(*ys)


def _disjoint(a: Box, b: Box, gap: int = 1) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _layout(
    rng: random.Random, position: str, count: int, height: int, width: int, taken: list[Box]
) -> tuple[str, list[Box]] | None:
    """Choose a size and arrangement for the group and place it clear of ``taken``; None if no try fits."""
    for _ in range(_PLACEMENT_TRIES):
        size = rng.choice(tuple(SIZES))
        side = sprite_pixels(size, height, width)
        offsets = rng.choice(_arrangements(count, side))
        gw = max(dx for dx, _ in offsets) + side
        gh = max(dy for _, dy in offsets) + side
        corner = _place(rng, position, gw, gh, height, width)
        if corner is None:
            continue
        bounds = (corner[0], corner[1], corner[0] + gw, corner[1] + gh)
        if all(_disjoint(bounds, t) for t in taken):
            return size, [
                (corner[0] + dx, corner[1] + dy, corner[0] + dx + side, corner[1] + dy + side) for dx, dy in offsets
            ]
    return None


def _number_of_objects(rng: random.Random, config: SceneConfig) -> int:
    """How many distinct emoji a scene asks for: uniform, or as ``config.object_weights`` say."""
    most = min(config.max_objects, config.max_instances)
    if config.object_weights is None:
        return rng.randint(1, most)
    return rng.choices(range(1, most + 1), weights=config.object_weights[:most])[0]


def sample_scene(rng: random.Random, config: SceneConfig, bucket: str | None = None) -> Scene:
    """Draw one scene for ``config`` (in ``bucket`` if given), honouring the train/held-out split.

    A train scene never contains a reserved (emoji, background, position) combination; a
    held-out scene's first object always is one (see ``splits.py``).
    """
    names = load_atlas().names[: config.num_emoji]
    bucket = bucket or rng.choice(config.bucket_names)
    height, width = bucket_size(bucket, config.sample_size)
    style = rng.choice(config.style_names)
    n_objects = _number_of_objects(rng, config)
    if config.split == "heldout":
        first, background, first_position = rng.choice(reserved_combinations(names))
        others = [p for p in POSITIONS if p != first_position]
        positions = [first_position, *rng.sample(others, n_objects - 1)]
    else:
        first, background = None, rng.choice(tuple(BACKGROUNDS))
        positions = rng.sample(POSITIONS, n_objects)

    objects: list[SceneObject] = []
    taken: list[Box] = []
    used = 0
    for k, position in enumerate(positions):
        if first is not None and k == 0:
            emoji = first
        else:
            emoji = rng.choice(names)
            while emoji in (o.emoji for o in objects) or (
                config.split == "train" and is_reserved(emoji, background, position)
            ):
                emoji = rng.choice(names)
        budget = config.max_instances - used - (n_objects - k - 1)
        count = rng.randint(1, min(config.max_count, budget))
        placed = None
        while placed is None and count >= 1:
            placed = _layout(rng, position, count, height, width, taken)
            count -= placed is None
        if placed is None:
            continue  # no room left for this object; the scene simply has fewer objects
        size, boxes = placed
        objects.append(SceneObject(emoji=emoji, count=len(boxes), position=position, size=size, boxes=boxes))
        taken.append(objects[-1].bounds)
        used += len(boxes)
    return Scene(bucket, height, width, background, style, objects, seed=rng.getrandbits(31))


def render_scene(scene: Scene) -> np.ndarray:
    """Draw ``scene`` as a uint8 (H, W, 3) array; a pure function of the scene."""
    atlas = load_atlas()
    image = style_background(scene.style, BACKGROUNDS[scene.background], scene.height, scene.width, scene.seed)
    boxes = [box for obj in scene.objects for box in obj.boxes]
    if scene.style == "night":
        add_stars(image, boxes, scene.seed)
    for obj in scene.objects:
        index = atlas.by_name[obj.emoji].index
        for x0, y0, x1, y1 in obj.boxes:
            premult, alpha = styled_sprite(scene.style, index, x1 - x0)
            patch = image[y0:y1, x0:x1]
            patch *= 1.0 - alpha
            patch += premult
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def without_objects(scene: Scene) -> Scene:
    """The same scene with no objects: its rendering is the bare styled background."""
    return replace(scene, objects=[])
