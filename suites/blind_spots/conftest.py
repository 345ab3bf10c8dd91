"""Blind-spot fixtures: thresholds from the repository's ``ops/blind_spots.toml``, and
reaching a target endpoint with a failure that names the config key to check."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest

LIMITS_FILE = Path(__file__).resolve().parents[2] / "ops" / "blind_spots.toml"


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
