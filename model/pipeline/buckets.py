"""Aspect buckets shared by the data generator, training and the pipeline.

RAPHAEL trains on several aspect buckets of near-equal area, one bucket per batch. Sizes are
given in units of ``sample_size // 8`` so that the same names work at 32 px and 64 px scale,
and every side stays divisible by 4 (two 2x downsamples in the tiny U-Net).
"""

# name (width:height) -> (height units, width units); 8 units = sample_size
ASPECT_BUCKETS: dict[str, tuple[int, int]] = {
    "1:1": (8, 8),
    "3:4": (9, 7),
    "4:3": (7, 9),
    "9:16": (10, 6),
    "16:9": (6, 10),
}

DEFAULT_BUCKET = "1:1"


def bucket_size(name: str, sample_size: int) -> tuple[int, int]:
    """Return ``(height, width)`` in pixels of bucket ``name`` at ``sample_size`` scale."""
    if name not in ASPECT_BUCKETS:
        raise ValueError(f"Unknown aspect bucket {name!r}; choose one of {', '.join(ASPECT_BUCKETS)}.")
    if sample_size % 8:
        raise ValueError(f"sample_size must be a multiple of 8, got {sample_size}.")
    unit = sample_size // 8
    h_units, w_units = ASPECT_BUCKETS[name]
    return h_units * unit, w_units * unit


def bucket_for_size(height: int, width: int, sample_size: int) -> str | None:
    """Return the bucket name whose size is exactly ``(height, width)``, or ``None``."""
    for name in ASPECT_BUCKETS:
        if bucket_size(name, sample_size) == (height, width):
            return name
    return None
