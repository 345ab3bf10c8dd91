"""The API's bounded pool of async psycopg connections (psycopg-pool), failing fast when full.

At most ``size`` connections, opened on demand; a request waits at most ``acquire_timeout``
for one and at most ``size * QUEUE_PER_CONNECTION`` requests wait at all, so a saturated pool
answers 503 + Retry-After quickly (``PoolTimeout``), never hangs. psycopg-pool rolls back a
connection returned inside a transaction and discards one returned mid-query (a request
cancelled at its work deadline), so no session state leaks into the next request.
``prepare_threshold=None`` because PgBouncer's transaction pooling hands each transaction a
different server, so auto-prepared statements would vanish.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import psycopg_pool

# Requests allowed to queue for a connection, per connection: beyond that, refuse at once.
QUEUE_PER_CONNECTION = 4


class PoolTimeout(Exception):
    """No connection became free within the acquire timeout (or the queue for one is full)."""


class ConnectionPool:
    def __init__(
        self,
        conninfo: str,
        *,
        size: int = 10,
        acquire_timeout: float = 1.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self.size = size
        self.acquire_timeout = acquire_timeout
        # Opened on first use: psycopg-pool starts its workers in the running event loop.
        self._pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]] = (
            psycopg_pool.AsyncConnectionPool(
                conninfo,
                min_size=0,
                max_size=size,
                open=False,
                timeout=acquire_timeout,
                max_waiting=size * QUEUE_PER_CONNECTION,
                kwargs={
                    "autocommit": True,
                    "prepare_threshold": None,
                    "connect_timeout": max(1, int(connect_timeout)),
                },
                name="spark-api",
            )
        )

    @property
    def in_use(self) -> int:
        """Connections checked out right now (for ``spark_db_pool_connections_in_use``)."""
        stats = self._pool.get_stats()
        return int(stats.get("pool_size", 0)) - int(stats.get("pool_available", 0))

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """An autocommit connection; raises PoolTimeout when none frees up in time."""
        await self._pool.open()
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg_pool.TooManyRequests:
            raise PoolTimeout(
                f"no database connection free: {self._pool.max_waiting} requests already wait "
                f"for one of {self.size}"
            ) from None
        except psycopg_pool.PoolTimeout:
            raise PoolTimeout(
                f"no database connection free within {self.acquire_timeout:.1f} s "
                f"({self.in_use} of {self.size} in use)"
            ) from None

    async def close(self) -> None:
        await self._pool.close()
