"""Settings from flags over environment over defaults; app.py imports without serving; categories."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from app.categories import OTHER, PromptCategorizer
from app.settings import ROOT, Settings, from_args, from_env


def test_defaults() -> None:
    settings = Settings()
    assert settings.model_path == ROOT / "model" / "checkpoints" / "raphael-tiny"
    assert settings.db_url == f"sqlite:///{ROOT / 'data' / 'feedback.db'}"
    assert (settings.host, settings.port, settings.share) == ("127.0.0.1", 7860, False)
    assert (settings.max_prompt_chars, settings.max_steps, settings.max_images) == (1000, 150, 8)


def test_environment_then_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAPHAEL_MODEL", str(tmp_path / "env-model"))
    monkeypatch.setenv("RAPHAEL_PORT", "9000")
    monkeypatch.setenv("RAPHAEL_SHARE", "true")
    monkeypatch.setenv("RAPHAEL_DB", "sqlite:///env.db")
    env = from_env()
    assert (env.model_path, env.port, env.share, env.db_url) == (
        tmp_path / "env-model",
        9000,
        True,
        "sqlite:///env.db",
    )
    flags = from_args(["--model", "other", "--port", "9100", "--no-share", "--host", "0.0.0.0"])
    assert (flags.model_path, flags.port, flags.share, flags.host) == (Path("other"), 9100, False, "0.0.0.0")
    assert flags.db_url == "sqlite:///env.db"  # not given as a flag: the environment's value stays


def test_rate_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A classroom behind one address, or a load test, raises them without editing code."""
    monkeypatch.setenv("RAPHAEL_VOTES_PER_MINUTE_PER_IP", "6000")
    monkeypatch.setenv("RAPHAEL_VOTES_PER_MINUTE", "600")
    monkeypatch.setenv("RAPHAEL_GENERATIONS_PER_MINUTE", "10")
    env = from_env()
    assert (env.votes_per_minute_per_ip, env.votes_per_minute, env.generations_per_minute) == (6000, 600, 10)
    assert env.generations_per_minute_per_ip == Settings().generations_per_minute_per_ip
    monkeypatch.setenv("RAPHAEL_VOTES_PER_MINUTE", "many")
    with pytest.raises(ValueError, match="^RAPHAEL_VOTES_PER_MINUTE: "):
        from_env()


def test_bad_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPHAEL_SHARE", "maybe")
    with pytest.raises(ValueError, match="RAPHAEL_SHARE"):
        from_env()


def test_durability_and_ip_hash_retention(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().sqlite_synchronous, Settings().ip_hash_days) == ("NORMAL", 30)
    monkeypatch.setenv("RAPHAEL_SQLITE_SYNCHRONOUS", "full")
    monkeypatch.setenv("RAPHAEL_IP_HASH_DAYS", "0")
    assert (from_env().sqlite_synchronous, from_env().ip_hash_days) == ("FULL", 0)
    flags = from_args(["--sqlite-synchronous", "normal", "--ip-hash-days", "7"])
    assert (flags.sqlite_synchronous, flags.ip_hash_days) == ("NORMAL", 7)
    monkeypatch.setenv("RAPHAEL_SQLITE_SYNCHRONOUS", "off")
    with pytest.raises(ValueError, match="RAPHAEL_SQLITE_SYNCHRONOUS: expected one of NORMAL, FULL"):
        from_env()
    with pytest.raises(ValueError, match="ip_hash_days must be 0"):
        Settings(ip_hash_days=-1)


def test_help_explains_every_flag() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for name in ("model", "db", "host", "port", "share", "sqlite-synchronous", "ip-hash-days"):
        assert f"--{name}" in result.stdout and f"RAPHAEL_{name.upper().replace('-', '_')}" in result.stdout


def test_importing_app_py_serves_nothing() -> None:
    spec = importlib.util.spec_from_file_location("app_entry", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.build_demo) and callable(module.launch) and callable(module.main)


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("two cats on a red background", "animal"),
        ("A KITTEN", "animal"),
        ("three kitties", "animal"),  # a synonym's plural
        ("an apple and a cat", "food"),  # the first emoji named decides
        ("☀ over the sea", "nature"),
        ("a teapot of moonlight", OTHER),
        ("", OTHER),
    ],
)
def test_prompt_categories(prompt: str, category: str) -> None:
    assert PromptCategorizer().category(prompt) == category
