"""Package a training run as the bundled checkpoint: ``python -m model.bundle --run runs/raphael-tiny``.

Writes a ``save_pretrained`` pipeline folder with the EMA UNet in fp16 safetensors, the DDIM
sampler of the training schedule and no text encoder (the packaged MiniLM is loaded instead), so
the folder stays small enough to live in the repository.
"""

import argparse
import logging
from pathlib import Path

import torch

from model.offline import apply_offline_defaults
from model.pipeline_raphael import RaphaelPipeline
from model.schedule import default_scheduler
from model.unet_raphael import RaphaelUNet

logger = logging.getLogger("model.bundle")

DEFAULT_BUNDLE = Path(__file__).parent / "checkpoints" / "raphael-tiny"


def bundle(run_dir: Path, out_dir: Path) -> Path:
    """Save the run's EMA UNet and sampler as a RaphaelPipeline in fp16."""
    unet = RaphaelUNet.from_pretrained(run_dir / "unet").to(torch.float16)
    scheduler = default_scheduler()
    pipe = RaphaelPipeline(unet=unet, scheduler=scheduler)
    pipe.save_pretrained(out_dir, include_text_encoder=False)
    size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    logger.info("Bundled %s into %s (%.1f MB)", run_dir, out_dir, size / 1e6)
    return out_dir


def load_bundle(path: str | Path = DEFAULT_BUNDLE, dtype: torch.dtype = torch.float32) -> RaphaelPipeline:
    """Load a bundled pipeline; weights are stored in fp16 and computed in ``dtype`` (fp32 on CPU)."""
    return RaphaelPipeline.from_pretrained(path, dtype=dtype)


def main() -> None:
    apply_offline_defaults()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/raphael-tiny"), help="training run folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_BUNDLE, help="pipeline folder to write")
    args = parser.parse_args()
    bundle(args.run, args.out)


if __name__ == "__main__":
    main()
