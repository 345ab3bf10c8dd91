"""A small bounded pool of async psycopg connections that fails fast when saturated.

psycopg-pool is not installed in this environment, so the API keeps its own pool: a semaphore
bounds the connections, acquiring waits at most ``acquire_timeout`` (a saturated pool must
answer 503 quickly, never hang), and any connection that saw an error is closed rather than
reused. ``prepare_threshold=None`` because PgBouncer's transaction pooling hands each
transaction a different server, so auto-prepared statements would vanish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import pq


class PoolTimeout(Exception):
    """No connection became free within the acquire timeout."""


class ConnectionPool:
    def __init__(
        self,
        conninfo: str,
        *,
        size: int = 10,
        acquire_timeout: float = 1.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self.conninfo = conninfo
        self.size = size
        self.acquire_timeout = acquire_timeout
        self.connect_timeout = connect_timeout
        self.in_use = 0
        self._slots = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """An autocommit connection; raises PoolTimeout when none frees up in time."""
        try:
            async with asyncio.timeout(self.acquire_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise PoolTimeout(
                f"no database connection free within {self.acquire_timeout:.1f} s "
                f"({self.size} in use)"
            ) from None
        self.in_use += 1
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            conn = await self._take()
            yield conn
        except BaseException:
            # An error or a cancellation can leave the session mid-transaction or desynchronised.
            if conn is not None:
                await _close_quietly(conn)
            raise
        else:
            if conn.closed or conn.info.transaction_status != pq.TransactionStatus.IDLE:
                await _close_quietly(conn)
            else:
                self._idle.append(conn)
        finally:
            self.in_use -= 1
            self._slots.release()

    async def _take(self) -> psycopg.AsyncConnection[Any]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        async with asyncio.timeout(self.connect_timeout + 0.5):
            return await psycopg.AsyncConnection.connect(
                self.conninfo,
                autocommit=True,
                prepare_threshold=None,
                connect_timeout=max(1, int(self.connect_timeout)),
            )

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close_quietly(conn)


async def _close_quietly(conn: psycopg.AsyncConnection[Any]) -> None:
    with contextlib.suppress(Exception):
        await conn.close()
