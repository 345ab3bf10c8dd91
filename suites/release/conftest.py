"""Fixtures the release items share."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pytest_spark import Reach
from pytest_spark.probes import money
from pytest_spark.probes.spark_api import SparkApi


@pytest.fixture
def tradable(reach: Reach, spark_api: SparkApi, listed_symbols: list[str]) -> tuple[str, Decimal]:
    """A listed symbol and a price inside its band on the tick grid (its base price): what a
    probe order buys or sells."""
    with reach("api_url"):
        instrument = spark_api.instrument(listed_symbols[0])
    [price] = money.aligned_prices_near(instrument.base_price, instrument.band, 1)
    return instrument.symbol, price
