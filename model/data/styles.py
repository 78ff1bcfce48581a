"""Rendering styles: how each one treats the sprites and the named background colour.

Every effect is applied per sprite inside its own box, or to the background alone, so a
style never moves ink outside the ground-truth boxes. How the background colour survives:

- ``flat``: the exact RGB.
- ``outline sketch``: the exact RGB plus faint paper grain (+-6 levels); sprites become a dark
  coloured-pencil outline over a pale wash of their own colours.
- ``pixel art``: the exact RGB; sprites are box-downsampled to 8-15 blocks across (1-px blocks
  below 16 px, so 32-px scenes stay legible) and nearest-upsampled, with posterised colours and
  a hard alpha edge.
- ``soft watercolour``: the RGB lifted 15% towards white with soft low-frequency blotches
  (+-10 levels); sprites are blurred and lightened.
- ``night``: the RGB at 60% brightness (hue kept) with a few pale stars outside the objects;
  sprites are dimmed with a blue cast.
- ``sticker``: the exact RGB; sprites get a one-pixel white die-cut border.

Randomness (grain, blotches, stars) comes only from ``Scene.seed``, so rendering is a pure
function of the scene.
"""

import random
from functools import cache

import numpy as np
from PIL import Image

from model.data.atlas import load_atlas

STYLES: tuple[str, ...] = ("flat", "outline sketch", "pixel art", "soft watercolour", "night", "sticker")

NIGHT_DIM = 0.6
WATERCOLOUR_LIFT = 0.15
STAR_RGB = np.array([255.0, 246.0, 205.0], dtype=np.float32)
_TEXTURES = 4  # texture variants per image size; a scene picks one (and a flip) by its seed


def _blur(x: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur of an (H, W, C) array with zero padding."""
    p = np.pad(x, ((1, 1), (0, 0), (0, 0)))
    x = (p[:-2] + 2 * p[1:-1] + p[2:]) / 4
    p = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    return (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) / 4


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion of an (H, W) mask (outside counts as empty)."""
    p = np.pad(mask, 1)
    return mask & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _dilate(mask: np.ndarray) -> np.ndarray:
    """8-neighbour binary dilation of an (H, W) mask."""
    p = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= p[dy : dy + h, dx : dx + w]
    return out


def _outline(rgba: np.ndarray) -> np.ndarray:
    ink_mask = rgba[..., 3] > 0.5
    lum = rgba[..., :3].mean(-1) * rgba[..., 3]
    grad = np.zeros_like(lum)
    grad[:, 1:] += np.abs(np.diff(lum, axis=1))
    grad[1:, :] += np.abs(np.diff(lum, axis=0))
    edge = (ink_mask & ~_erode(ink_mask)) | (ink_mask & (grad > 0.3))
    rgb = np.where(edge[..., None], rgba[..., :3] * 0.55, rgba[..., :3] * 0.5 + 0.5)
    alpha = np.where(edge, 1.0, rgba[..., 3] * 0.45)
    return np.concatenate([rgb, alpha[..., None]], axis=-1)


def _pixel_art(sprite: Image.Image) -> np.ndarray:
    size = sprite.width
    cells = size // max(1, size // 8)  # at least 8 blocks across: tiny sprites stay legible, big ones get chunky
    coarse = sprite.resize((cells, cells), Image.Resampling.BOX).resize((size, size), Image.Resampling.NEAREST)
    rgba = np.asarray(coarse, dtype=np.float32) / 255.0
    rgba[..., :3] = np.round(rgba[..., :3] * 4) / 4
    rgba[..., 3] = rgba[..., 3] > 0.5
    return rgba


def _watercolour(rgba: np.ndarray) -> np.ndarray:
    premult = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=-1)
    blurred = _blur(premult)
    # Small sprites keep some crispness so they stay recognisable; large ones get a second pass.
    premult = _blur(blurred) if premult.shape[0] >= 24 else 0.6 * blurred + 0.4 * premult
    alpha = premult[..., 3:]
    rgb = np.divide(premult[..., :3], alpha, out=np.zeros_like(premult[..., :3]), where=alpha > 1e-4)
    rgb = rgb * (1 - WATERCOLOUR_LIFT) + WATERCOLOUR_LIFT
    return np.concatenate([rgb, alpha * 0.92], axis=-1)


def _night(rgba: np.ndarray) -> np.ndarray:
    out = rgba.copy()
    out[..., :3] *= np.array([0.6, 0.63, 0.72], dtype=np.float32)
    return out


def _sticker(index: int, size: int) -> np.ndarray:
    inner = np.zeros((size, size, 4), dtype=np.float32)
    inner[1:-1, 1:-1] = load_atlas().sprite_array(index, size - 2)
    border = _dilate(inner[..., 3] > 0.3).astype(np.float32)
    alpha = inner[..., 3] + (1 - inner[..., 3]) * border
    premult = inner[..., :3] * inner[..., 3:] + ((1 - inner[..., 3]) * border)[..., None]
    rgb = np.divide(premult, alpha[..., None], out=np.zeros_like(premult), where=alpha[..., None] > 1e-4)
    return np.concatenate([rgb, alpha[..., None]], axis=-1)


@cache
def styled_sprite(style: str, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(premultiplied RGB in 0..255, alpha in 0..1)`` float32 arrays for one sprite (cached)."""
    atlas = load_atlas()
    if style == "sticker":
        rgba = _sticker(index, size)
    elif style == "pixel art":
        rgba = _pixel_art(atlas.sprite(index, size))
    else:
        rgba = atlas.sprite_array(index, size)
        if style == "outline sketch":
            rgba = _outline(rgba)
        elif style == "soft watercolour":
            rgba = _watercolour(rgba)
        elif style == "night":
            rgba = _night(rgba)
        elif style != "flat":
            raise ValueError(f"Unknown style {style!r}; choose from {STYLES}.")
    alpha = np.ascontiguousarray(rgba[..., 3:4], dtype=np.float32)
    premult = np.ascontiguousarray(rgba[..., :3] * alpha * 255.0, dtype=np.float32)
    premult.setflags(write=False)
    alpha.setflags(write=False)
    return premult, alpha


@cache
def _texture_bank(kind: str, height: int, width: int) -> tuple[np.ndarray, ...]:
    """Fixed zero-mean textures of shape (H, W, 1): fine paper grain or soft watercolour blotches."""
    rng = np.random.default_rng(height * 1009 + width)
    bank = []
    for _ in range(_TEXTURES):
        if kind == "grain":
            field = rng.normal(0.0, 3.0, size=(height, width)).clip(-6, 6)
        else:
            coarse = Image.fromarray(rng.uniform(-10, 10, size=(4, 4)).astype(np.float32), mode="F")
            field = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC)).clip(-10, 10)
        bank.append(field.astype(np.float32)[..., None])
    return tuple(bank)


def _texture(kind: str, height: int, width: int, seed: int) -> np.ndarray:
    field = _texture_bank(kind, height, width)[seed % _TEXTURES]
    if seed & 4:
        field = field[::-1]
    if seed & 8:
        field = field[:, ::-1]
    return field


def style_background(style: str, rgb: tuple[int, int, int], height: int, width: int, seed: int) -> np.ndarray:
    """The background of a scene as a float32 (H, W, 3) array in 0..255, before any sprite."""
    colour = np.asarray(rgb, dtype=np.float32)
    if style == "night":
        colour = colour * NIGHT_DIM
    elif style == "soft watercolour":
        colour = colour * (1 - WATERCOLOUR_LIFT) + 255.0 * WATERCOLOUR_LIFT
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = colour
    if style == "outline sketch":
        image += _texture("grain", height, width, seed)
    elif style == "soft watercolour":
        image += _texture("blotch", height, width, seed)
    return image


def add_stars(image: np.ndarray, boxes: list[tuple[int, int, int, int]], seed: int) -> None:
    """Draw the night sky's stars in place, skipping any that fall inside an object's box.

    Star candidates depend only on the seed and the image size, so the same scene without its
    objects shows the same stars outside the boxes.
    """
    height, width = image.shape[:2]
    rng = random.Random(seed)
    for _ in range(2 + height * width // 256):
        y, x = rng.randrange(height), rng.randrange(width)
        if not any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in boxes):
            image[y, x] = STAR_RGB
