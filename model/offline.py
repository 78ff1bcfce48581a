"""Offline defaults shared by the app, the CLIs and the tests.

No model hub is reachable where this project runs, so every entry point calls
:func:`apply_offline_defaults` before importing gradio, diffusers or transformers.
"""

import os

OFFLINE_DEFAULTS: dict[str, str] = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_offline_defaults() -> None:
    """Set the offline variables unless the user already chose a value."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
