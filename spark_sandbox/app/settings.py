"""The API's configuration, read once from the environment at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from spark_sandbox.defects import switches

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FLAGS_FILE = REPO_ROOT / "ops" / "flags.toml"
DISTRIBUTION = "pytest-spark-gate"


def installed_version() -> str:
    """The version of the installed distribution: what this build serves by default."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@dataclass(frozen=True)
class Settings:
    app_dsn: str
    listen_dsn: str | None
    feed_addr: tuple[str, int] | None
    third_party_origin: str
    unlisted_origin: str
    flags_file: Path
    defects: frozenset[str]
    sandbox: bool
    pool_size: int
    idempotency_gc_interval_s: float
    # The release track this process serves ("canary", "stable"), as /health reports it; the
    # metrics carry it as Prometheus's target label, not as a label of their own.
    track: str | None = None
    # spark_build_info's version; None: the installed distribution's.
    build_version: str | None = None


def parse_addr(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"SPARK_FEED_ADDR must be host:port, got {value!r}")
    return host, int(port)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``SPARK_*`` variables; a missing DSN or unknown defect fails start-up."""
    env = os.environ if env is None else env
    dsn = env.get("SPARK_APP_DSN")
    if not dsn:
        raise RuntimeError("SPARK_APP_DSN is not set: the API needs its database conninfo")
    feed = env.get("SPARK_FEED_ADDR")
    return Settings(
        app_dsn=dsn,
        listen_dsn=env.get("SPARK_LISTEN_DSN") or None,
        feed_addr=parse_addr(feed) if feed else None,
        third_party_origin=env.get("SPARK_THIRD_PARTY_ORIGIN", "").rstrip("/"),
        unlisted_origin=env.get("SPARK_UNLISTED_ORIGIN", "").rstrip("/"),
        flags_file=Path(env.get("SPARK_FLAGS_FILE") or DEFAULT_FLAGS_FILE),
        defects=switches(env.get("SPARK_DEFECTS", ""), "app", "app_stable"),
        sandbox=env.get("SPARK_SANDBOX") == "1",
        pool_size=int(env.get("SPARK_DB_POOL_SIZE", "10")),
        idempotency_gc_interval_s=float(env.get("SPARK_IDEMPOTENCY_GC_INTERVAL_S", "60")),
        track=env.get("SPARK_TRACK") or None,
        build_version=env.get("SPARK_BUILD_VERSION") or None,
    )
