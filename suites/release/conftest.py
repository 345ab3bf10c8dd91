"""GO/NO-GO fixtures: settings from ``ops/money.toml`` (order integrity, G03), reaching the
target with a failure that names the config key, and an HTTP client with a timeout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_spark.probes import orders

SETTINGS_FILE = Path(__file__).resolve().parents[2] / "ops" / "money.toml"


@pytest.fixture(scope="session")
def order_settings() -> dict[str, dict[str, Any]]:
    """``order_settings["G03"]["concurrent_submissions"]``, ``order_settings["market"]``."""
    return orders.load_settings(SETTINGS_FILE)


@pytest.fixture
def api_client(order_settings: dict[str, dict[str, Any]]) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=float(order_settings["market"]["http_timeout_s"])) as client:
        yield client
