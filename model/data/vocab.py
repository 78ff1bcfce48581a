"""The closed vocabulary of scene attributes shared by the sampler, renderer, captions and recognizer."""

# Named background colours with fixed RGB; chosen far apart so every style keeps them distinct.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "red": (214, 48, 49),
    "orange": (243, 138, 28),
    "yellow": (246, 214, 58),
    "green": (58, 168, 78),
    "blue": (45, 100, 222),
    "purple": (128, 62, 182),
    "pink": (242, 132, 194),
    "white": (246, 246, 246),
    "black": (22, 22, 22),
    "gray": (128, 128, 128),
}

# Where an object lies: the left/right/top/bottom half, or the centre region.
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "centre")

# Sprite side as a fraction of the image's short side.
SIZES: dict[str, float] = {"small": 0.32, "medium": 0.40, "large": 0.48}

MAX_COUNT = 3
