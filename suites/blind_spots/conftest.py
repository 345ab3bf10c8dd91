"""Blind-spot fixtures: thresholds from the repository's ``ops/blind_spots.toml``, and
reaching a target endpoint with a failure that names the config key to check."""

from __future__ import annotations

import contextlib
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import psycopg
import pytest

from pytest_spark.config import Target

LIMITS_FILE = Path(__file__).resolve().parents[2] / "ops" / "blind_spots.toml"
DSN_PASSWORD = re.compile(r"password=(\S+)|://[^:/@\s]+:([^@\s]+)@")


def load_limits(path: Path) -> dict[str, dict[str, float]]:
    """``[B1]``, ``[B2]``, ... tables of numbers; anything else is an error naming the key."""
    with path.open("rb") as handle:
        raw = tomllib.load(handle)
    limits: dict[str, dict[str, float]] = {}
    for item, table in raw.items():
        if not isinstance(table, Mapping):
            raise ValueError(f"{path}: {item} must be a table such as [B1], not a value")
        limits[item] = {}
        for key, value in table.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{path}: [{item}] {key} = {value!r} must be a number")
            limits[item][key] = float(value)
    return limits


@pytest.fixture(scope="session")
def blind_spot_limits() -> dict[str, dict[str, float]]:
    """Thresholds per blind spot, e.g. ``blind_spot_limits["B1"]["ntp_offset_ms"]``."""
    return load_limits(LIMITS_FILE)


def hide_password(endpoint: str) -> str:
    """The endpoint as it may be shown: the password of a conninfo string or URL masked."""
    return DSN_PASSWORD.sub(lambda m: m.group(0).replace(m.group(1) or m.group(2), "***"), endpoint)


@pytest.fixture
def reach(spark_target: Target) -> Callable[..., AbstractContextManager[list[str]]]:
    """``with reach("postgres_dsn") as [dsn]:`` gives the endpoints named; when one cannot be
    reached the test fails naming the config keys, the endpoints (passwords hidden) and the
    error, which says which host and port refused."""

    @contextlib.contextmanager
    def reaching(*keys: str) -> Iterator[list[str]]:
        endpoints = [spark_target.require(key) for key in keys]
        try:
            yield endpoints
        except (OSError, psycopg.OperationalError, httpx.HTTPError) as exc:
            shown = "; ".join(
                f"{k} = {hide_password(e)}" for k, e in zip(keys, endpoints, strict=True)
            )
            # One line: the gate's reason column shows a failure's last line only.
            error = " ".join(str(exc).split())
            # The endpoints go last: the bundle's redaction masks a password up to the next space.
            pytest.fail(
                f"cannot reach the target: {error}; check {', '.join(keys)} in the target file "
                f"(or that the deployment is up): {shown}",
                pytrace=False,
            )

    return reaching
