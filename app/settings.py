"""One ``Settings`` object for the demo, read from CLI flags over environment variables over defaults.

Every knob an operator may turn lives here, so that the UI, the handlers and the tests agree on
limits (prompt length, steps, images per prompt) without repeating numbers.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.request_limits import MAX_BODY_BYTES, MAX_UPLOAD_BYTES
from feedback.engine import SYNCHRONOUS_MODES
from feedback.keys import IP_HASH_DAYS
from feedback.models import MAX_COMMENT_CHARS
from model.pipeline.limits import MAX_GUIDANCE, MAX_IMAGES, MAX_PROMPT_CHARS, MAX_STEPS

ROOT = Path(__file__).resolve().parent.parent


def _app_version() -> str:
    """Read the version from pyproject.toml so that provenance and packaging agree."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


APP_VERSION = _app_version()


@dataclass(frozen=True)
class Settings:
    """Everything the demo needs to start; defaults suit a laptop run from the repository root."""

    model_path: Path = ROOT / "model" / "checkpoints" / "raphael-tiny"  # the Generate tab's model, version 1
    more_models: tuple[Path, ...] = ()  # further versions for the arena
    versions_dir: Path = ROOT / "data" / "versions"  # every pipeline folder in it is a version (make next-version)
    db_url: str = f"sqlite:///{ROOT / 'data' / 'feedback.db'}"
    image_dir: Path = ROOT / "data" / "images"
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    device: str | None = None  # None: CUDA when available, else CPU
    torch_threads: int | None = None  # None: torch's default
    # Input limits: the pipeline's and the store's, with the Miaohua demo's CFG range of 1-20 within the pipeline's.
    max_prompt_chars: int = MAX_PROMPT_CHARS
    max_comment_chars: int = MAX_COMMENT_CHARS
    min_steps: int = 1
    max_steps: int = MAX_STEPS
    default_steps: int = 50
    min_cfg: float = 1.0
    max_cfg: float = 20.0
    default_cfg: float = 7.0
    max_images: int = MAX_IMAGES
    default_images: int = 2
    max_image_steps: int = 400  # steps × images × best-of of one request: 50 steps × 8 images, or 150 × 2
    reward_model: Path | None = None  # a reward model folder: offers best-of-n on the Generate tab
    max_best_of: int = 4  # candidates drawn per shown image, at most
    # Serving limits. Limits per IP address come before the rater's, and apply before a new rater is created.
    queue_size: int = 64
    concurrency: int = 4  # events that do not touch the model
    max_waiting_generations: int = 8  # model runs admitted at once (one runs, the rest wait); more are told to retry
    max_waiting_per_ip: int = 2
    generations_per_minute: int = 30
    generations_per_minute_per_ip: int = 60
    votes_per_minute: int = 240
    votes_per_minute_per_ip: int = 1200  # a classroom behind one address still rates freely
    new_raters_per_hour_per_ip: int = 60
    max_body_bytes: int = MAX_BODY_BYTES  # any request but an upload
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    trusted_proxies: tuple[str, ...] = ()  # addresses whose X-Forwarded-For names the client; none by default
    admin_key: str | None = field(default=None, repr=False)  # opens the dashboard's per-rater tables
    keys_dir: Path | None = None  # install secret and IP-hash key; None: keys/ beside the SQLite file (or images)
    sqlite_synchronous: str = "NORMAL"  # FULL: every commit synced, so votes survive a power loss too
    ip_hash_days: int = IP_HASH_DAYS  # a rater's IP hash is cleared after this many days; 0 stores none
    sign_in: bool = False  # offer "Sign in with Hugging Face" (a Space with hf_oauth); raters keep their account
    app_version: str = APP_VERSION

    def __post_init__(self) -> None:
        # Settings may tighten the pipeline's and the store's limits, never loosen them.
        if not (
            self.max_prompt_chars <= MAX_PROMPT_CHARS
            and self.max_comment_chars <= MAX_COMMENT_CHARS
            and 1 <= self.min_steps <= self.default_steps <= self.max_steps <= MAX_STEPS
            and 0 <= self.min_cfg <= self.default_cfg <= self.max_cfg <= MAX_GUIDANCE
            and 1 <= self.default_images <= self.max_images <= MAX_IMAGES
            and self.default_steps * self.default_images <= self.max_image_steps <= MAX_STEPS * MAX_IMAGES
            and 1 <= self.max_waiting_per_ip <= self.max_waiting_generations
            and 1 <= self.max_best_of <= MAX_IMAGES
        ):
            raise ValueError("Settings limits must lie within the pipeline's and the feedback store's own limits.")
        if self.sqlite_synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"sqlite_synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}.")
        if self.ip_hash_days < 0:
            raise ValueError("ip_hash_days must be 0 (store no IP hash) or more.")


# Environment variable -> Settings field. CLI flags override these.
ENV_VARS: dict[str, str] = {
    "RAPHAEL_MODEL": "model_path",
    "RAPHAEL_VERSIONS": "versions_dir",
    "RAPHAEL_DB": "db_url",
    "RAPHAEL_IMAGE_DIR": "image_dir",
    "RAPHAEL_HOST": "host",
    "RAPHAEL_PORT": "port",
    "RAPHAEL_SHARE": "share",
    "RAPHAEL_DEVICE": "device",
    "RAPHAEL_TORCH_THREADS": "torch_threads",
    "RAPHAEL_QUEUE_SIZE": "queue_size",
    "RAPHAEL_CONCURRENCY": "concurrency",
    "RAPHAEL_MAX_WAITING": "max_waiting_generations",
    "RAPHAEL_NEW_RATERS_PER_HOUR": "new_raters_per_hour_per_ip",
    "RAPHAEL_GENERATIONS_PER_MINUTE": "generations_per_minute",
    "RAPHAEL_GENERATIONS_PER_MINUTE_PER_IP": "generations_per_minute_per_ip",
    "RAPHAEL_VOTES_PER_MINUTE": "votes_per_minute",
    "RAPHAEL_VOTES_PER_MINUTE_PER_IP": "votes_per_minute_per_ip",
    "RAPHAEL_TRUSTED_PROXIES": "trusted_proxies",
    "RAPHAEL_ADMIN_KEY": "admin_key",
    "RAPHAEL_KEYS_DIR": "keys_dir",
    "RAPHAEL_SQLITE_SYNCHRONOUS": "sqlite_synchronous",
    "RAPHAEL_IP_HASH_DAYS": "ip_hash_days",
    "RAPHAEL_SIGN_IN": "sign_in",
    "RAPHAEL_REWARD_MODEL": "reward_model",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(name: str, raw: str) -> object:
    """Turn an environment string into the type of field ``name``; raise ValueError with the variable's meaning."""
    if name in {"model_path", "image_dir", "versions_dir", "keys_dir", "reward_model"}:
        return Path(raw).expanduser()
    if name in {
        "port", "queue_size", "concurrency", "torch_threads", "max_waiting_generations", "new_raters_per_hour_per_ip",
        "ip_hash_days", "generations_per_minute", "generations_per_minute_per_ip", "votes_per_minute",
        "votes_per_minute_per_ip",
    }:  # fmt: skip
        return int(raw)
    if name == "sqlite_synchronous":
        if raw.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"expected one of {', '.join(SYNCHRONOUS_MODES)}, got {raw!r}")
        return raw.upper()
    if name == "trusted_proxies":
        return tuple(host.strip() for host in raw.split(",") if host.strip())
    if name in {"share", "sign_in"}:
        if raw.lower() not in _TRUE | _FALSE:
            raise ValueError(f"expected a boolean (1/0, true/false), got {raw!r}")
        return raw.lower() in _TRUE
    return raw


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``RAPHAEL_*`` environment variables."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for var, name in ENV_VARS.items():
        if var in environ:
            try:
                values[name] = _convert(name, environ[var])
            except ValueError as err:
                raise ValueError(f"{var}: {err}") from err
    return Settings(**values)


def build_parser() -> argparse.ArgumentParser:
    """The CLI; each flag's default comes from the environment, so ``--help`` shows what will be used."""
    env = from_env()
    parser = argparse.ArgumentParser(
        description="Serve the RAPHAEL text-to-image demo with per-image 👍/👎 feedback.",
        epilog="Each flag can also be set through the environment variable named in its help. Without a flag: "
        "RAPHAEL_TORCH_THREADS (CPU threads for torch), RAPHAEL_QUEUE_SIZE (waiting requests before 'queue full'), "
        "RAPHAEL_CONCURRENCY (parallel non-model events), RAPHAEL_MAX_WAITING (model runs admitted at once), "
        "RAPHAEL_NEW_RATERS_PER_HOUR (new rater tokens per address, 60; raise it for a classroom behind one NAT), "
        "RAPHAEL_GENERATIONS_PER_MINUTE and RAPHAEL_VOTES_PER_MINUTE (per rater, 30 and 240), "
        "RAPHAEL_GENERATIONS_PER_MINUTE_PER_IP and RAPHAEL_VOTES_PER_MINUTE_PER_IP (per address, 60 and 1200), "
        "RAPHAEL_ADMIN_KEY (opens the dashboard's per-rater tables), RAPHAEL_IP_SALT (a fixed key for the stored IP "
        "hashes, with no daily rotation).",
    )
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        help="local diffusers pipeline directory: the bundled RAPHAEL checkpoint or any other "
        "(e.g. a Stable Diffusion folder); repeat it to serve more versions in the arena, the first one also "
        f"serves the Generate tab [RAPHAEL_MODEL; default: {env.model_path}]",
    )
    parser.add_argument(
        "--versions",
        type=Path,
        default=env.versions_dir,
        help="a folder of model versions for the arena: each pipeline folder in it (or <run>/pipeline, as "
        "make finetune writes) is one; make next-version registers new ones there [RAPHAEL_VERSIONS; default: "
        "%(default)s, when it exists]",
    )
    parser.add_argument(
        "--db",
        default=env.db_url,
        help="SQLAlchemy URL of the feedback database, SQLite or PostgreSQL (postgresql+psycopg://...) "
        "[RAPHAEL_DB; default: %(default)s]",
    )
    parser.add_argument(
        "--image-dir",
        type=Path,
        default=env.image_dir,
        help="where generated images are kept as content-addressed PNGs [RAPHAEL_IMAGE_DIR; default: %(default)s]",
    )
    parser.add_argument(
        "--host",
        default=env.host,
        help="interface to listen on; 0.0.0.0 exposes the demo to the network [RAPHAEL_HOST; default: %(default)s]",
    )
    parser.add_argument("--port", type=int, default=env.port, help="TCP port [RAPHAEL_PORT; default: %(default)s]")
    parser.add_argument(
        "--share",
        action=argparse.BooleanOptionalAction,
        default=env.share,
        help="also open a temporary public gradio.live link (needs internet) [RAPHAEL_SHARE; default: %(default)s]",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        help="address or network (CIDR) of a reverse proxy in front of the app; only from these is X-Forwarded-For "
        "believed; repeat for several [RAPHAEL_TRUSTED_PROXIES, comma-separated; default: none]",
    )
    parser.add_argument(
        "--keys-dir",
        type=Path,
        default=env.keys_dir,
        help="folder of the install secret (signs rater tokens) and the daily IP-hash key; keep it out of the "
        "image folder [RAPHAEL_KEYS_DIR; default: a keys folder beside the SQLite database]",
    )
    parser.add_argument(
        "--sqlite-synchronous",
        type=str.upper,
        choices=SYNCHRONOUS_MODES,
        default=env.sqlite_synchronous,
        help="SQLite's durability: NORMAL keeps every acknowledged vote through a crash or kill of the server; "
        "FULL also through a power loss or OS crash, at one disk sync per vote [RAPHAEL_SQLITE_SYNCHRONOUS; "
        "default: %(default)s]",
    )
    parser.add_argument(
        "--ip-hash-days",
        type=int,
        default=env.ip_hash_days,
        help="days a rater's keyed IP hash is kept before it is cleared; 0 stores none [RAPHAEL_IP_HASH_DAYS; "
        "default: %(default)s]",
    )
    parser.add_argument(
        "--reward-model",
        type=Path,
        default=env.reward_model,
        help="a reward model folder (python -m model.evaluation.reward train): the Generate tab then offers best of "
        f"up to {Settings.max_best_of}, drawing more candidates and showing those the reward model scores highest "
        "[RAPHAEL_REWARD_MODEL; default: none]",
    )
    parser.add_argument(
        "--sign-in",
        action=argparse.BooleanOptionalAction,
        default=env.sign_in,
        help="offer an optional 'Sign in with Hugging Face' and keep each rater's account; needs a Space with "
        "hf_oauth: true [RAPHAEL_SIGN_IN; default: %(default)s]",
    )
    parser.add_argument(
        "--device",
        default=env.device,
        help="torch device such as cpu or cuda [RAPHAEL_DEVICE; default: CUDA when available, else CPU]",
    )
    return parser


def from_args(argv: Sequence[str] | None = None) -> Settings:
    """Build settings from the command line over the environment."""
    args = build_parser().parse_args(argv)
    env = from_env()
    models = args.model or [env.model_path]
    overrides = {
        "model_path": models[0],
        "more_models": tuple(models[1:]),
        "versions_dir": args.versions,
        "db_url": args.db,
        "image_dir": args.image_dir,
        "host": args.host,
        "port": args.port,
        "share": args.share,
        "device": args.device,
        "trusted_proxies": tuple(args.trusted_proxy) if args.trusted_proxy else env.trusted_proxies,
        "keys_dir": args.keys_dir,
        "sqlite_synchronous": args.sqlite_synchronous,
        "ip_hash_days": args.ip_hash_days,
        "sign_in": args.sign_in,
        "reward_model": args.reward_model,
    }
    return replace(env, **overrides)
