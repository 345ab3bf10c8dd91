"""What a request handler needs, built once at start-up and kept on ``app.state``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from spark_sandbox.app import metrics
from spark_sandbox.app.db import ConnectionPool, PoolTimeout
from spark_sandbox.app.holds import Holds
from spark_sandbox.app.marketdata import MarketData
from spark_sandbox.app.money import Rounding
from spark_sandbox.app.problems import Problem, service_unavailable
from spark_sandbox.app.settings import Settings

# One unit of database work (a claim, the order transaction, a read) must finish in this time;
# a slow or wedged database then answers 503 + Retry-After instead of hanging the client.
DB_WORK_TIMEOUT_S = 3.0


@dataclass
class AppContext:
    settings: Settings
    pool: ConnectionPool
    market: MarketData
    rounding: Rounding
    # Sandbox only: keyed orders a check holds in flight (see holds.py).
    holds: Holds = field(default_factory=Holds)
    # Order submissions this process received, numbered from 1 (the "every n-th order"
    # defects count them; one event loop, so no lock).
    _order_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def defect(self, name: str) -> bool:
        """The switch point for app-layer defects: each is named at the line it changes."""
        return name in self.settings.defects

    def next_order_number(self) -> int:
        return next(self._order_numbers)


@contextlib.asynccontextmanager
async def database_errors(what: str, ctx: AppContext | None = None) -> AsyncIterator[None]:
    """Turn pool exhaustion, database errors and timeouts into a 503 problem."""
    try:
        yield
    except PoolTimeout as exc:
        metrics.DB_POOL_TIMEOUTS.inc()
        _timeout_defect(ctx, what, exc)
        raise service_unavailable(f"{what}: {exc}; retry shortly") from exc
    except TimeoutError as exc:
        metrics.DB_ERRORS.labels(kind="timeout").inc()
        _timeout_defect(ctx, what, exc)
        raise service_unavailable(
            f"{what}: the database did not answer within {DB_WORK_TIMEOUT_S:.0f} s"
        ) from exc
    except psycopg.Error as exc:
        metrics.DB_ERRORS.labels(kind=type(exc).__name__).inc()
        raise service_unavailable(f"{what}: database unavailable ({type(exc).__name__})") from exc


def _timeout_defect(ctx: AppContext | None, what: str, exc: Exception) -> None:
    """Defect (C1): a database timeout (no connection within the acquire timeout, or work
    past its deadline) answered as an unexpected error: 500, no Retry-After."""
    if ctx is not None and ctx.defect("db_timeout_answers_500"):
        raise Problem(500, "internal_error", f"{what}: unexpected server error") from exc


@contextlib.asynccontextmanager
async def db_work(
    ctx: AppContext, what: str, timeout: float = DB_WORK_TIMEOUT_S
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection for one bounded unit of work; failures become 503 problems."""
    async with database_errors(what, ctx), asyncio.timeout(timeout), ctx.pool.connection() as conn:
        yield conn
