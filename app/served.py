"""``python app.py`` in a subprocess on a free loopback port, for as long as a ``with`` block: what ``make loop``
and the tests serve, so both start, wait for and stop the real server the same way."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.settings import ROOT

STARTUP_TIMEOUT_S = 300.0  # loading the models and Gradio on a busy 2-core machine


class ServerError(RuntimeError):
    """The app did not start serving; the message ends with the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedApp:
    """The demo started with ``args`` (beside host and port) and ``env`` over this process's environment."""

    def __init__(self, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.env = dict(env or {})
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, str(ROOT / "app.py"), *self.args, "--host", "127.0.0.1", "--port", str(port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as server_log:
            self._process = subprocess.Popen(
                command, cwd=ROOT, env={**os.environ, **self.env}, stdout=server_log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self.url

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerError(
                    f"The app exited with code {self._process.returncode} before serving; {self.log_path} ends:\n"
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(f"{self.url}/gradio_api/info", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise ServerError(
            f"The app did not answer within {STARTUP_TIMEOUT_S:.0f} s; {self.log_path} ends:\n{self.log_tail()}"
        )

    def crash(self) -> int:
        """Kill the server at once with SIGKILL, as the operating system would kill it: no shutdown code runs. Its
        exit status (minus the signal number)."""
        if self._process is None:
            raise ServerError("The app is not running.")
        self._process.kill()
        status = self._process.wait(timeout=30)
        self._process = None
        return status

    def stop(self) -> None:
        """Stop the server and reap it, so its CPU time reaches ``RUSAGE_CHILDREN``."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
