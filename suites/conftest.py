"""The readiness checklist as tests.

Each suite module claims its checklist items with markers (``@pytest.mark.blind_spot("B3")``)
and measures them on the target from ``--spark-target`` (the embedded sandbox by default)
through the probes in ``pytest_spark.probes``. Thresholds come from ``ops/`` through the
``limits`` fixture, never from here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_spark import OpsFileError, Reach, Target, TargetConfigError
from pytest_spark.probes import money
from pytest_spark.probes.spark_api import SparkApi
from suites.limits import Limits, load_limits

OPS_DIR = Path(__file__).resolve().parents[1] / "ops"


@pytest.fixture(scope="session")
def limits() -> Limits:
    """Every threshold of ``ops/`` (blind spots, money, contracts, go/no-go), typed and checked:
    ``limits.b1.ntp_offset_ms``, ``limits.market.symbols``, ``limits.g03.orders_per_key``."""
    try:
        return load_limits(OPS_DIR)
    except OpsFileError as exc:
        pytest.fail(f"the gate's thresholds cannot be used: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def ops_dir(spark_target: Target) -> Path:
    """The release's ops artefacts as the target deploys them (``ops_dir``): for the sandbox
    the repository's ``ops/``, or the copy a seeded defect changed."""
    try:
        return Path(spark_target.require("ops_dir"))
    except TargetConfigError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def listed_symbols(spark_target: Target, limits: Limits) -> list[str]:
    """The instruments the target lists (``market_symbols`` of its endpoints), else those of
    ``[market] symbols``: one per BIST tick band, so every band and edge is reachable."""
    listed = spark_target.endpoints.get("market_symbols", "")
    return [s.strip() for s in listed.split(",") if s.strip()] or list(limits.market.symbols)


@pytest.fixture
def spark_api(spark_target: Target, limits: Limits) -> Iterator[SparkApi]:
    """The target's API (``api_url``) with the market's HTTP timeout; calls go inside
    ``with reach("api_url"):`` so that an unreachable API names the key to check."""
    with SparkApi(spark_target.require("api_url"), limits.market.http_timeout_s) as api:
        yield api


@pytest.fixture
def instruments(
    reach: Reach, spark_api: SparkApi, listed_symbols: list[str]
) -> list[money.Instrument]:
    """The listed symbols with base price and tick as ``GET /api/market/{symbol}`` reports."""
    with reach("api_url"):
        return [spark_api.instrument(symbol) for symbol in listed_symbols]
