"""All proxies of one fault-proxy server, and the operations the REST API performs on them."""

from __future__ import annotations

import asyncio
from typing import Any

from spark_sandbox.chaosproxy.model import (
    PROXY_EXISTS,
    PROXY_NOT_FOUND,
    ApiError,
    bad_request,
    missing_field,
)
from spark_sandbox.chaosproxy.proxy import Proxy

DEFAULT_LISTEN = "127.0.0.1:0"


class ProxyCollection:
    """Proxies by name. Mutations are serialised: populate awaits between steps."""

    def __init__(self, allow_non_loopback: bool = False) -> None:
        self.allow_non_loopback = allow_non_loopback
        self.proxies: dict[str, Proxy] = {}
        self._lock = asyncio.Lock()

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise PROXY_NOT_FOUND
        return proxy

    async def create(self, body: object) -> Proxy:
        name, listen, upstream, enabled = self._proxy_fields(body, position=None)
        async with self._lock:
            if name in self.proxies:
                raise PROXY_EXISTS
            proxy = Proxy(name, listen, upstream, self.allow_non_loopback)
            proxy.validate()
            if enabled:
                await proxy.start()
            self.proxies[name] = proxy
            return proxy

    async def update(self, name: str, body: object) -> Proxy:
        if not isinstance(body, dict):
            raise bad_request("expected a JSON object")
        async with self._lock:
            proxy = self.get(name)
            listen = _text(body, "listen", proxy.listen)
            upstream = _text(body, "upstream", proxy.upstream)
            enabled = _flag(body, "enabled", proxy.enabled)
            candidate = Proxy(name, listen, upstream, self.allow_non_loopback)
            candidate.validate()
            moved = listen != proxy.listen or upstream != proxy.upstream
            # Like Toxiproxy: a changed address restarts the proxy, dropping its connections.
            if moved or not enabled:
                await proxy.stop()
            proxy.listen, proxy.upstream = listen, upstream
            if enabled:
                await proxy.start()
            return proxy

    async def remove(self, name: str) -> None:
        async with self._lock:
            proxy = self.get(name)
            await proxy.stop()
            del self.proxies[name]

    async def populate(self, body: object) -> list[Proxy]:
        """Create or replace every proxy in the list; validate all before changing any."""
        if not isinstance(body, list):
            raise bad_request("expected a JSON list of proxies")
        wanted = [self._proxy_fields(item, position=i + 1) for i, item in enumerate(body)]
        names = [fields[0] for fields in wanted]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ApiError(f"duplicate proxy name {duplicates[0]!r}", 400)
        for name, listen, upstream, enabled in wanted:
            if enabled:
                Proxy(name, listen, upstream, self.allow_non_loopback).validate()
        result: list[Proxy] = []
        async with self._lock:
            for name, listen, upstream, enabled in wanted:
                existing = self.proxies.get(name)
                if (
                    existing is not None
                    and existing.listen == listen
                    and existing.upstream == upstream
                ):
                    result.append(existing)
                    continue
                if existing is not None:
                    await existing.stop()
                    del self.proxies[name]
                proxy = Proxy(name, listen, upstream, self.allow_non_loopback)
                if enabled:
                    await proxy.start()
                self.proxies[name] = proxy
                result.append(proxy)
        return result

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic (``POST /reset``)."""
        async with self._lock:
            for proxy in self.proxies.values():
                await proxy.start()
                proxy.reset_toxics()

    async def close(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.stop()

    def _proxy_fields(self, body: object, position: int | None) -> tuple[str, str, str, bool]:
        where = "" if position is None else f" at proxy {position}"
        if not isinstance(body, dict):
            raise bad_request(f"expected a JSON object{where}")
        name = _text(body, "name", "")
        if not name:
            raise missing_field(f"name{where}")
        upstream = _text(body, "upstream", "")
        if not upstream:
            raise missing_field(f"upstream{where}")
        listen = _text(body, "listen", "") or DEFAULT_LISTEN
        return name, listen, upstream, _flag(body, "enabled", True)


def _text(body: dict[str, Any], key: str, default: str) -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string")
    return value


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be true or false")
    return value
