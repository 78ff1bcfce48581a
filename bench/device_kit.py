"""The device kit: what a lent GPU machine lacks to train RAPHAEL-tiny, small enough to travel with the repository.

The GPU machine has PyTorch, transformers and accelerate but neither diffusers nor the text encoder's package, and
a call carries at most 64 MiB with the working tree, which holds ~40 MB already (the bundled weights). The encoder
alone is 87 MB in fp32, so the kit carries it as the training captions use it:

- ``text-encoder/``: all-MiniLM-L6-v2's weights in fp16, its word embeddings cut to the rows of the tokens that the
  emoji-scenes captions use (every token of a large sample of captions of the whole domain, checked on a fresh
  sample) and its position embeddings to the 32 positions the pipeline reads; ``unpack`` rebuilds the full-size
  folder there (rows of other tokens zero, so a caption outside the domain's words would read wrong: the kit is
  for training on the generator's captions, not for serving people's prompts);
- ``diffusers.zip``: the diffusers modules that training, the benchmarks and the pipeline import (Python imports
  it from the zip on ``PYTHONPATH``).

``python -m bench.device_kit build`` writes ``.device/`` (ignored by git) and says whether it fits beside the tree;
``python -m bench.device_kit unpack`` (on the GPU machine) writes the full encoder to ``/tmp/raphael-text-encoder``;
``bench/device_window.sh`` is the prepared command that uses it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / ".device"
UNPACKED = Path("/tmp/raphael-text-encoder")  # where the GPU machine rebuilds the encoder (RAPHAEL_TEXT_ENCODER)
CARRY_LIMIT = 64 * 2**20  # bytes a device call carries: working tree and carried paths together
TOKENIZER_FILES = ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
PRUNED, FULL = "pruned.safetensors", "model.safetensors"
WORD_EMBEDDINGS, POSITION_EMBEDDINGS = "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"

logger = logging.getLogger("bench.device_kit")


def domain_token_ids(tokenizer, captions: int, check: int, seed: int = 0) -> list[int]:
    """Every token id of ``captions`` captions of the whole domain (both wordings), checked on ``check`` more."""
    from model.data.config import SceneConfig
    from model.data.dataset import EmojiScenes

    def ids(start: int, count: int) -> set[int]:
        found = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
        for paraphrases in (False, True) if count else ():
            data = EmojiScenes(SceneConfig(max_objects=3, max_count=3, paraphrases=paraphrases), seed=seed)
            texts = [data.describe(i)[0] for i in range(start, start + count)]
            for row in tokenizer(texts, add_special_tokens=True).input_ids:
                found.update(row)
        return found

    kept = ids(0, captions)
    if missing := ids(captions, check) - kept:
        raise RuntimeError(f"{len(missing)} tokens of fresh captions are not in the kit; sample more captions.")
    return sorted(kept)


def build_encoder(out: Path, captions: int, check: int) -> dict[str, int]:
    """The pruned fp16 encoder folder ``out``; returns what it kept."""
    from model.pipeline.text_encoder import MAX_LENGTH, load_text_encoder, packaged_encoder_path

    source = packaged_encoder_path()
    tokenizer, encoder = load_text_encoder(source)
    kept = domain_token_ids(tokenizer, captions, check)
    weights = {name: tensor.half().contiguous() for name, tensor in encoder.state_dict().items()}
    index = torch.tensor(kept, dtype=torch.int64)
    weights["kept_rows"] = weights.pop(WORD_EMBEDDINGS).index_select(0, index)
    weights["kept_ids"] = index.int()
    weights[POSITION_EMBEDDINGS] = weights[POSITION_EMBEDDINGS][:MAX_LENGTH].clone()
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, out / PRUNED)
    for name in TOKENIZER_FILES:
        shutil.copy2(source / name, out / name)
    return {"vocabulary": encoder.config.vocab_size, "kept_tokens": len(kept)}


def unpack_encoder(folder: Path, target: Path) -> Path:
    """The full-size fp32 encoder folder ``target`` (outside the tree, so the kit stays small), rebuilt from the
    pruned weights in ``folder``."""
    config = json.loads((folder / "config.json").read_text())
    weights = {name: tensor.float() for name, tensor in load_file(folder / PRUNED).items()}
    ids, rows = weights.pop("kept_ids").long(), weights.pop("kept_rows")
    table = torch.zeros(config["vocab_size"], config["hidden_size"])
    table[ids] = rows
    weights[WORD_EMBEDDINGS] = table
    positions = torch.zeros(config["max_position_embeddings"], config["hidden_size"])
    positions[: len(weights[POSITION_EMBEDDINGS])] = weights[POSITION_EMBEDDINGS]
    weights[POSITION_EMBEDDINGS] = positions
    target.mkdir(parents=True, exist_ok=True)
    save_file(weights, target / FULL)
    for name in TOKENIZER_FILES:
        shutil.copy2(folder / name, target / name)
    return target


def imported_diffusers_files() -> list[Path]:
    """The files of the diffusers modules that training, the benchmarks and the pipeline import, and every
    scheduler (the samplers menu), found in a fresh process."""
    probe = (
        "import sys, diffusers, diffusers.schedulers as s; import model.training.train, model.training.curriculum, "
        "model.pipeline.pipeline_raphael, model.pipeline.samplers, model.evaluation.evaluate, bench.moe_overhead; "
        "[getattr(s, n) for n in dir(s) if n.endswith('Scheduler')]; "
        "print('\\n'.join(m.__file__ for n, m in list(sys.modules.items()) "
        "if n.split('.')[0] == 'diffusers' and getattr(m, '__file__', None)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return sorted({Path(line) for line in done.stdout.split()})


def build_diffusers(out: Path) -> int:
    """``out`` (a zip importable from PYTHONPATH) with those modules; returns how many."""
    import diffusers

    package_parent = Path(diffusers.__file__).parents[1]
    files = imported_diffusers_files()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in files:
            archive.write(path, path.relative_to(package_parent).as_posix())
    return len(files)


def tree_bytes() -> int:
    """Bytes of the files a device call sends: tracked, and untracked that git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True
    ).stdout
    return sum((ROOT / name).stat().st_size for name in listed.decode().split("\0") if name and (ROOT / name).exists())


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def build(kit: Path, captions: int, check: int) -> dict[str, object]:
    """The kit in ``kit`` and whether it travels with the tree in one call."""
    shutil.rmtree(kit, ignore_errors=True)
    kit.mkdir(parents=True)
    encoder = build_encoder(kit / "text-encoder", captions, check)
    modules = build_diffusers(kit / "diffusers.zip")
    kit_bytes, tree = folder_bytes(kit), tree_bytes()
    return {
        **encoder,
        "diffusers_modules": modules,
        "kit_mib": round(kit_bytes / 2**20, 2),
        "tree_mib": round(tree / 2**20, 2),
        "carry_limit_mib": CARRY_LIMIT / 2**20,
        "fits": kit_bytes + tree <= CARRY_LIMIT,
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="write the kit here")
    make.add_argument("--kit", type=Path, default=KIT)
    make.add_argument("--captions", type=int, default=100_000, help="captions per wording whose tokens are kept")
    make.add_argument("--check", type=int, default=20_000, help="fresh captions per wording that must be covered")
    unpack = sub.add_parser("unpack", help="rebuild the encoder's full-size weights (on the GPU machine)")
    unpack.add_argument("--kit", type=Path, default=KIT)
    unpack.add_argument("--to", type=Path, default=UNPACKED, help="the encoder folder to write")
    args = parser.parse_args()
    if args.command == "build":
        report = build(args.kit, args.captions, args.check)
        print(json.dumps(report, indent=2))
        if not report["fits"]:
            sys.exit(f"The kit ({report['kit_mib']} MiB) and the tree ({report['tree_mib']} MiB) exceed 64 MiB.")
    else:
        print(unpack_encoder(args.kit / "text-encoder", args.to))


if __name__ == "__main__":
    main()
