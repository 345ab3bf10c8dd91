"""Run the REST API and every proxy on one event loop, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Generator
from pathlib import Path

import uvicorn

from spark_sandbox.chaosproxy.api import build_app
from spark_sandbox.chaosproxy.collection import ProxyCollection
from spark_sandbox.chaosproxy.model import ApiError, is_loopback

log = logging.getLogger("spark_sandbox.chaosproxy")


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal capture: we stop the proxies first, then exit 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(
    host: str, port: int, config: Path | None, allow_non_loopback: bool, token: str | None = None
) -> int:
    """Serve until a stop signal; return the process exit code."""
    if not allow_non_loopback and not is_loopback(host):
        log.error(
            "refusing to serve the fault API on %s: not loopback (--allow-non-loopback)", host
        )
        return 2
    collection = ProxyCollection(allow_non_loopback=allow_non_loopback)
    try:
        if config is not None:
            # Loaded before the API listens, so "API answers" implies "proxies exist".
            proxies = await collection.populate(json.loads(config.read_text()))
            log.info("populated %d proxies from %s", len(proxies), config)
        server = ApiServer(
            uvicorn.Config(
                build_app(collection, token),
                host=host,
                port=port,
                lifespan="off",
                access_log=False,
                log_level="warning",
                timeout_graceful_shutdown=2,
            )
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _request_exit, server)
        log.info("starting the fault proxy API (Toxiproxy 2.x REST) on %s:%d", host, port)
        await server.serve()
        return 0 if server.started else 1
    except (ApiError, OSError, ValueError) as exc:
        log.error("fault proxy failed: %s", exc)
        return 1
    finally:
        await collection.close()


def _request_exit(server: uvicorn.Server) -> None:
    server.should_exit = True


def run(
    host: str, port: int, config: Path | None, allow_non_loopback: bool, token: str | None = None
) -> int:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s chaosproxy %(message)s"
    )
    if token:
        log.info("the API requires a bearer token (except /health and /metrics)")
    return asyncio.run(serve(host, port, config, allow_non_loopback, token))
