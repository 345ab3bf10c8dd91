"""Fixtures of the chaos scenarios (C1–C6, gate ``chaos``): the interlock, first of all, and
what they trade."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pytest_spark import Reach, Target
from pytest_spark.probes import chaos, money
from pytest_spark.probes.spark_api import SparkApi
from suites.chaos.scenario import TOUCHED
from suites.limits import Limits


@pytest.fixture(autouse=True)
def chaos_interlock(request: pytest.FixtureRequest, spark_target: Target, limits: Limits) -> None:
    """Before any other fixture sends anything: refuse a target that is not on loopback and
    does not opt in for the proxies this module faults (its ``FAULTED``: roles of
    ``[proxies]`` in ops/chaos.toml)."""
    roles = getattr(request.module, "FAULTED", ())
    proxies = [getattr(limits.proxies, role) for role in roles]
    endpoints = {key: spark_target.require(key) for key in TOUCHED}
    refused = chaos.refusal(endpoints, spark_target.chaos, proxies)
    if refused is not None:
        pytest.fail(f"{request.node.name}: {refused}", pytrace=False)


@pytest.fixture
def tradable(reach: Reach, spark_api: SparkApi, listed_symbols: list[str]) -> tuple[str, Decimal]:
    """A listed symbol and a price inside its band on the tick grid (its base price)."""
    with reach("api_url"):
        instrument = spark_api.instrument(listed_symbols[0])
    [price] = money.aligned_prices_near(instrument.base_price, instrument.band, 1)
    return instrument.symbol, price
