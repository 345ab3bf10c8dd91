"""One named proxy: a listening socket, its open links and its toxics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from spark_sandbox.chaosproxy.link import Link
from spark_sandbox.chaosproxy.model import (
    STREAMS,
    TOXIC_EXISTS,
    TOXIC_NOT_FOUND,
    ApiError,
    ToxicSpec,
    checked_address,
    updated_toxic,
)

log = logging.getLogger("spark_sandbox.chaosproxy")


class Proxy:
    """Listens on ``listen`` and forwards each connection to ``upstream`` through its toxics."""

    def __init__(self, name: str, listen: str, upstream: str, allow_non_loopback: bool) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.allow_non_loopback = allow_non_loopback
        self.toxics: list[ToxicSpec] = []
        self._server: asyncio.Server | None = None
        self._links: set[Link] = set()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [toxic.to_json() for toxic in self.ordered_toxics()],
        }

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def ordered_toxics(self) -> list[ToxicSpec]:
        """Upstream chain first, then downstream, each in the order added (Toxiproxy's order)."""
        return [t for stream in STREAMS for t in self.toxics if t.stream == stream]

    def validate(self) -> None:
        checked_address(self.listen, "listen", self.allow_non_loopback)
        checked_address(self.upstream, "upstream", self.allow_non_loopback)

    async def start(self) -> None:
        if self._server is not None:
            return
        host, port = checked_address(self.listen, "listen", self.allow_non_loopback)
        checked_address(self.upstream, "upstream", self.allow_non_loopback)
        # "localhost" could bind 127.0.0.1 and ::1 on two different ephemeral ports.
        bind_host = "127.0.0.1" if host == "localhost" else host
        try:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(self._accept, bind_host, port)
        except OSError as exc:
            raise ApiError(f"listen tcp {self.listen}: {exc.strerror or exc}", 500) from exc
        bound = self._server.sockets[0].getsockname()
        self.listen = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
        self.enabled = True
        log.info("proxy %s listening on %s -> %s", self.name, self.listen, self.upstream)

    async def stop(self) -> None:
        """Stop listening and close every open connection (what disabling a proxy means)."""
        server, self._server = self._server, None
        self.enabled = False
        if server is not None:
            server.close()
            log.info("proxy %s stopped, closing %d connections", self.name, len(self._links))
        for link in list(self._links):
            link.close()
        if server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def add_toxic(self, spec: ToxicSpec) -> ToxicSpec:
        if self.find_toxic(spec.name) is not None:
            raise TOXIC_EXISTS
        self.toxics.append(spec)
        log.info("proxy %s: toxic added %s", self.name, spec.to_json())
        for link in list(self._links):
            link.attach(spec)
        return spec

    def update_toxic(self, name: str, body: object) -> ToxicSpec:
        current = self.get_toxic(name)
        spec = updated_toxic(current, body)
        self.toxics[self.toxics.index(current)] = spec
        log.info("proxy %s: toxic updated %s", self.name, spec.to_json())
        for link in list(self._links):
            link.replace(spec)
        return spec

    def remove_toxic(self, name: str) -> None:
        self.toxics.remove(self.get_toxic(name))
        log.info("proxy %s: toxic %s removed", self.name, name)
        for link in list(self._links):
            link.detach(name)

    def reset_toxics(self) -> None:
        for spec in list(self.toxics):
            self.remove_toxic(spec.name)

    def find_toxic(self, name: str) -> ToxicSpec | None:
        return next((t for t in self.toxics if t.name == name), None)

    def get_toxic(self, name: str) -> ToxicSpec:
        spec = self.find_toxic(name)
        if spec is None:
            raise TOXIC_NOT_FOUND
        return spec

    def _accept(self) -> asyncio.Protocol:
        """A new client connection: its link connects upstream and registers itself."""
        address = checked_address(self.upstream, "upstream", self.allow_non_loopback)
        link = Link(address, lambda: self.toxics, self._links.add, self._links.discard)
        return link.client
