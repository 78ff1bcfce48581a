"""The autocast precision of a training run: ``--mixed-precision auto`` picks bf16 where the hardware computes it.

bf16 autocast is the GPU recipe. On a CPU it pays only where the cores multiply bf16 natively (AVX512-BF16 or AMX):
there a RAPHAEL-tiny step took 1.34 s against 1.87 s in fp32, side by side; a CPU without them falls back to slow
kernels, so it stays in fp32.
"""

from pathlib import Path

import torch

MIXED_PRECISION = ("auto", "no", "bf16")  # the --mixed-precision choices
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU's flags (Linux) include a bf16 multiply; False where they cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return bool(NATIVE_BF16_FLAGS.intersection(flags))


def resolve_mixed_precision(choice: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The autocast a run uses, ``bf16`` or ``no``: ``auto`` is bf16 on a GPU or a CPU with native bf16, else no."""
    if choice != "auto":
        return choice
    return "bf16" if torch.cuda.is_available() or cpu_has_native_bf16(cpuinfo) else "no"
