"""GO/NO-GO fixtures: settings from ``ops/money.toml`` (order integrity, G03), reaching the
target with a failure that names the config key, and an HTTP client with a timeout."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pytest_spark.config import Target
from pytest_spark.probes import orders

SETTINGS_FILE = Path(__file__).resolve().parents[2] / "ops" / "money.toml"
DSN_PASSWORD = re.compile(r"password=(\S+)|://[^:/@\s]+:([^@\s]+)@")


@pytest.fixture(scope="session")
def order_settings() -> dict[str, dict[str, Any]]:
    """``order_settings["G03"]["concurrent_submissions"]``, ``order_settings["market"]``."""
    return orders.load_settings(SETTINGS_FILE)


def _hide_password(endpoint: str) -> str:
    return DSN_PASSWORD.sub(lambda m: m.group(0).replace(m.group(1) or m.group(2), "***"), endpoint)


@pytest.fixture
def reach(spark_target: Target) -> Callable[..., AbstractContextManager[list[str]]]:
    """``with reach("api_url", "postgres_dsn") as [api_url, dsn]:``; an unreachable endpoint
    fails the check naming the config keys and the endpoints (passwords hidden)."""

    @contextlib.contextmanager
    def reaching(*keys: str) -> Iterator[list[str]]:
        endpoints = [spark_target.require(key) for key in keys]
        try:
            yield endpoints
        except (OSError, psycopg.OperationalError, httpx.HTTPError) as exc:
            shown = "; ".join(
                f"{k} = {_hide_password(e)}" for k, e in zip(keys, endpoints, strict=True)
            )
            error = " ".join(str(exc).split())
            # Endpoints last: the bundle's redaction masks a password up to the next space.
            pytest.fail(
                f"cannot reach the target: {error}; check {', '.join(keys)} in the target file "
                f"(or that the deployment is up): {shown}",
                pytrace=False,
            )

    return reaching


@pytest.fixture
def api_client(order_settings: dict[str, dict[str, Any]]) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=float(order_settings["market"]["http_timeout_s"])) as client:
        yield client
