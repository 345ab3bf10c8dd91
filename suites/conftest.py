"""The readiness checklist as tests.

Each suite module claims its checklist items with markers (``@pytest.mark.blind_spot("B3")``)
and measures them on the target from ``--spark-target`` (the embedded sandbox by default)
through the probes in ``pytest_spark.probes``. Thresholds come from ``ops/``, never from here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import httpx
import psycopg
import pytest

from pytest_spark.config import Target
from pytest_spark.evidence.redact import Redactor

Reach = Callable[..., AbstractContextManager[list[str]]]
# The evidence redactor already masks passwords in conninfo strings and URLs.
hide_password = Redactor().text


@pytest.fixture
def reach(spark_target: Target) -> Reach:
    """``with reach("api_url", "postgres_dsn") as [api_url, dsn]:`` gives the endpoints named;
    when one cannot be reached the check fails naming the config keys, the endpoints
    (passwords hidden) and the error, which says which host and port refused."""

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
            # Endpoints last: the bundle's redaction masks a password up to the next space.
            pytest.fail(
                f"cannot reach the target: {error}; check {', '.join(keys)} in the target file "
                f"(or that the deployment is up): {shown}",
                pytrace=False,
            )

    return reaching
