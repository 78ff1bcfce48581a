"""Shared test set-up: offline environment and the server fixtures.

Each fixture that starts a server lives in its own module under ``tests/fixtures`` and owns
that server's whole life. A fixture that cannot start its server fails the test loudly.
"""

from model.offline import apply_offline_defaults

apply_offline_defaults()

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.browser",
    "tests.fixtures.app_server",
]
