"""Shared test set-up: offline environment and the server fixtures.

Each fixture that starts a server lives in its own module under ``tests/fixtures`` and owns
that server's whole life. A fixture that cannot start its server fails the test loudly.
"""

from model.offline import apply_offline_defaults

apply_offline_defaults()

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.stores",
    "tests.fixtures.browser",
    "tests.fixtures.app_server",
]


def pytest_collection_modifyitems(config, items) -> None:
    """Skip ``gpu`` tests cleanly on machines without CUDA (CI has none)."""
    import pytest
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
