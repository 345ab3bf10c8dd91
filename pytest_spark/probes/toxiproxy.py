"""A small typed client of the Toxiproxy 2.x REST API.

The chaos suites inject faults through it: against the sandbox's fault proxy and against a
real Toxiproxy in staging. ``ToxiproxyClient.toxic()`` is the way to inject one, because it
removes the toxic in every case: normal exit, a failed assertion, an error, Ctrl-C.

Not imported by ``pytest_spark.plugin`` (loading the plugin must not import httpx).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

# Removing a toxic is retried this often: a fault left behind poisons every later scenario.
REMOVAL_ATTEMPTS = 3


class ToxiproxyError(RuntimeError):
    """A Toxiproxy request failed; names the URL, the HTTP status and the server's message."""

    def __init__(self, method: str, url: str, status: int | None, message: str) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.message = message
        where = f"HTTP {status}" if status is not None else "no HTTP response"
        super().__init__(f"Toxiproxy {method} {url} failed ({where}): {message}")


@dataclass(frozen=True)
class Toxic:
    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Toxic:
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            stream=str(data.get("stream", "downstream")),
            toxicity=float(data.get("toxicity", 1.0)),
            attributes=dict(data.get("attributes") or {}),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True)
class Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool = True
    toxics: tuple[Toxic, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Proxy:
        return cls(
            name=str(data["name"]),
            listen=str(data["listen"]),
            upstream=str(data["upstream"]),
            enabled=bool(data.get("enabled", True)),
            toxics=tuple(Toxic.from_json(t) for t in data.get("toxics") or ()),
        )

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        """The bound port (the server reports it also when created with port 0)."""
        return int(self.listen.rpartition(":")[2])


class ToxiproxyClient:
    """``ToxiproxyClient("http://127.0.0.1:8474")``; every request is bounded by ``timeout``.

    ``token``: sent as ``Authorization: Bearer <token>``. The sandbox's fault proxy requires
    one (endpoint ``toxiproxy_token``); a plain Toxiproxy needs none and ignores the header.
    """

    def __init__(self, base_url: str, timeout: float = 5.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, trust_env=False, headers=headers
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ToxiproxyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def version(self) -> str:
        response = self._request("GET", "/version")
        try:
            return str(response.json()["version"])
        except (ValueError, KeyError, TypeError):
            return response.text.strip()  # Toxiproxy before 2.6 answers plain text

    def proxies(self) -> dict[str, Proxy]:
        data = self._request("GET", "/proxies").json()
        return {name: Proxy.from_json(value) for name, value in data.items()}

    def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True
    ) -> Proxy:
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        return Proxy.from_json(self._request("POST", "/proxies", json=body).json())

    def populate(self, proxies: Iterable[Proxy | Mapping[str, Any]]) -> list[Proxy]:
        """Create or replace each proxy (name, listen, upstream, enabled); toxics are ignored."""
        body = [_proxy_body(p) for p in proxies]
        data = self._request("POST", "/populate", json=body).json()
        return [Proxy.from_json(p) for p in data["proxies"]]

    def get_proxy(self, name: str) -> Proxy:
        return Proxy.from_json(self._request("GET", f"/proxies/{name}").json())

    def set_enabled(self, name: str, enabled: bool) -> Proxy:
        """Disabling closes the proxy's open connections and stops it listening."""
        # POST rather than PATCH: every Toxiproxy 2.x accepts it (PATCH arrived later).
        body = {"enabled": enabled}
        return Proxy.from_json(self._request("POST", f"/proxies/{name}", json=body).json())

    def set_upstream(self, name: str, upstream: str) -> Proxy:
        """Point the proxy at another ``host:port``; new connections go there."""
        body = {"upstream": upstream}
        return Proxy.from_json(self._request("POST", f"/proxies/{name}", json=body).json())

    def delete_proxy(self, name: str) -> None:
        self._request("DELETE", f"/proxies/{name}")

    def toxics(self, proxy: str) -> list[Toxic]:
        return [Toxic.from_json(t) for t in self._request("GET", f"/proxies/{proxy}/toxics").json()]

    def add_toxic(
        self,
        proxy: str,
        type: str,
        attributes: Mapping[str, Any] | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> Toxic:
        wanted = Toxic(name or f"{type}_{stream}", type, stream, toxicity, dict(attributes or {}))
        data = self._request("POST", f"/proxies/{proxy}/toxics", json=wanted.to_json()).json()
        return Toxic.from_json(data)

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._request("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._request("POST", "/reset")

    @contextlib.contextmanager
    def toxic(
        self,
        proxy: str,
        *,
        type: str,
        attributes: Mapping[str, Any] | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> Iterator[Toxic]:
        """Inject a toxic for the ``with`` block and remove it in every case.

        The name is fixed before the request is sent, so even a Ctrl-C that lands between
        the server creating the toxic and the answer arriving leaves nothing behind.
        """
        toxic_name = name or f"{type}_{stream}"
        try:
            added = self.add_toxic(proxy, type, attributes, stream, toxicity, toxic_name)
        except ToxiproxyError as exc:
            if exc.status is None:  # no answer: the server may have created it all the same
                self._remove_in_every_case(proxy, toxic_name)
            raise  # refused (e.g. 409): the toxic under that name is not ours to remove
        except BaseException:
            self._remove_in_every_case(proxy, toxic_name)
            raise
        try:
            yield added
        finally:
            self._remove_in_every_case(proxy, toxic_name)

    def _remove_in_every_case(self, proxy: str, name: str) -> None:
        """Remove the toxic; already gone is fine, an interrupt is held until it is removed."""
        interrupted: BaseException | None = None
        failure: ToxiproxyError | None = None
        for _ in range(REMOVAL_ATTEMPTS):
            try:
                self.remove_toxic(proxy, name)
                failure = None
                break
            except ToxiproxyError as exc:
                if exc.status == 404:
                    failure = None
                    break
                failure = exc
            except KeyboardInterrupt as exc:
                interrupted = exc
        if failure is not None:
            raise ToxiproxyError(
                failure.method,
                failure.url,
                failure.status,
                f"toxic {name!r} on proxy {proxy!r} could not be removed, the fault is still "
                f"active; remove it by hand or POST /reset: {failure.message}",
            ) from failure
        if interrupted is not None:
            raise interrupted

    def _request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        url = f"{self.base_url}{path}"
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ToxiproxyError(method, url, None, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise ToxiproxyError(method, url, response.status_code, _server_message(response))
        return response


def _server_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return response.text.strip()


def _proxy_body(proxy: Proxy | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(proxy, Proxy):
        return {
            "name": proxy.name,
            "listen": proxy.listen,
            "upstream": proxy.upstream,
            "enabled": proxy.enabled,
        }
    return dict(proxy)
