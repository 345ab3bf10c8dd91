"""Every REST endpoint answers with Toxiproxy's routes, status codes and JSON shapes."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import httpx
import pytest
from chaosproxy_support import connect, receive_until_closed, round_trip

from pytest_spark.probes.toxiproxy import Proxy
from spark_sandbox.services.ports import free_port, is_listening


@pytest.fixture
def api(fault_proxy_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fault_proxy_url, timeout=5.0) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_version(api: httpx.Client) -> None:
    response = api.get("/version")
    assert response.status_code == 200
    assert response.json()["version"].startswith("2.")


def test_create_show_list_and_delete_a_proxy(api: httpx.Client, echo_upstream: str) -> None:
    name = unique("orders_db")
    created = api.post("/proxies", json={"name": name, "upstream": echo_upstream})
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"name", "listen", "upstream", "enabled", "toxics"}
    assert body["enabled"] is True and body["toxics"] == []
    host, port = body["listen"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0  # port 0 became the real bound port
    assert is_listening(int(port))

    assert api.get(f"/proxies/{name}").json() == body
    assert api.get("/proxies").json()[name] == body

    assert api.delete(f"/proxies/{name}").status_code == 204
    assert api.get(f"/proxies/{name}").status_code == 404
    assert not is_listening(int(port))


def test_create_on_a_given_port(api: httpx.Client, echo_upstream: str) -> None:
    name, port = unique("feed"), free_port()
    body = {"name": name, "listen": f"127.0.0.1:{port}", "upstream": echo_upstream}
    try:
        assert api.post("/proxies", json=body).json()["listen"] == f"127.0.0.1:{port}"
        assert is_listening(port)
    finally:
        api.delete(f"/proxies/{name}")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"upstream": "127.0.0.1:1"}, 400, "missing required field: name"),
        ({"name": "no_upstream"}, 400, "missing required field: upstream"),
        ({"name": "wide", "listen": "0.0.0.0:0", "upstream": "127.0.0.1:1"}, 400, "loopback"),
        ({"name": "away", "upstream": "192.0.2.1:5432"}, 400, "loopback"),
        ({"name": "bad", "upstream": "no-port"}, 400, "host:port"),
    ],
)
def test_create_refuses_invalid_proxies(
    api: httpx.Client, body: dict[str, str], status: int, message: str
) -> None:
    response = api.post("/proxies", json=body)
    assert response.status_code == status
    assert response.json()["status"] == status
    assert message in response.json()["error"]
    assert body.get("name", "") not in api.get("/proxies").json()


def test_errors_use_toxiproxy_shape(api: httpx.Client, echo_proxy: Proxy) -> None:
    duplicate = api.post("/proxies", json={"name": echo_proxy.name, "upstream": "127.0.0.1:1"})
    assert duplicate.status_code == 409
    assert duplicate.json() == {"error": "proxy already exists", "status": 409}
    assert api.get("/proxies/absent").json() == {"error": "proxy not found", "status": 404}
    assert api.post("/proxies", content=b"{not json").status_code == 400


def test_browsers_are_refused(api: httpx.Client) -> None:
    response = api.get("/proxies", headers={"User-Agent": "Mozilla/5.0"})
    assert response.status_code == 403


def test_disable_closes_connections_and_refuses_new_ones(
    api: httpx.Client, echo_proxy: Proxy
) -> None:
    with connect(echo_proxy) as sock:
        assert round_trip(sock, b"open") == b"open"
        disabled = api.post(f"/proxies/{echo_proxy.name}", json={"enabled": False})
        assert disabled.status_code == 200 and disabled.json()["enabled"] is False
        with contextlib.suppress(ConnectionResetError):  # closed is closed, FIN or RST
            assert receive_until_closed(sock) == b""
    with pytest.raises(ConnectionRefusedError):
        connect(echo_proxy).close()

    enabled = api.patch(f"/proxies/{echo_proxy.name}", json={"enabled": True})
    assert enabled.json()["listen"] == echo_proxy.listen  # same port again
    with connect(echo_proxy) as sock:
        assert round_trip(sock, b"back") == b"back"


def test_update_upstream_and_listen(api: httpx.Client, echo_proxy: Proxy) -> None:
    port = free_port()
    updated = api.post(
        f"/proxies/{echo_proxy.name}",
        json={"listen": f"127.0.0.1:{port}", "upstream": "127.0.0.1:1"},
    )
    assert updated.status_code == 200
    assert updated.json()["listen"] == f"127.0.0.1:{port}"
    assert updated.json()["upstream"] == "127.0.0.1:1"
    assert not is_listening(echo_proxy.listen_port)
    moved = Proxy.from_json(updated.json())
    with connect(moved) as sock:  # nothing on port 1: the proxy closes the client at once
        assert receive_until_closed(sock) == b""


def test_populate_creates_keeps_and_replaces(api: httpx.Client, echo_upstream: str) -> None:
    kept, replaced = unique("api"), unique("db")
    first = api.post(
        "/populate",
        json=[
            {"name": kept, "listen": "127.0.0.1:0", "upstream": echo_upstream},
            {"name": replaced, "upstream": echo_upstream, "enabled": False},
        ],
    )
    try:
        assert first.status_code == 201
        proxies = {p["name"]: p for p in first.json()["proxies"]}
        assert proxies[kept]["enabled"] is True
        assert proxies[replaced]["enabled"] is False

        second = api.post(
            "/populate",
            json=[
                {"name": kept, "listen": proxies[kept]["listen"], "upstream": echo_upstream},
                {"name": replaced, "upstream": "127.0.0.1:1"},
            ],
        )
        assert second.status_code == 201
        again = {p["name"]: p for p in second.json()["proxies"]}
        assert again[kept] == proxies[kept]
        assert again[replaced]["upstream"] == "127.0.0.1:1"
        assert again[replaced]["enabled"] is True

        invalid = api.post(
            "/populate",
            json=[{"name": kept, "upstream": "127.0.0.2:1"}, {"name": "no_upstream"}],
        )
        assert invalid.status_code == 400
        assert api.get(f"/proxies/{kept}").json() == again[kept]  # nothing applied
        duplicate = api.post(
            "/populate",
            json=[{"name": kept, "upstream": "127.0.0.1:1"}] * 2,
        )
        assert duplicate.status_code == 400
    finally:
        api.delete(f"/proxies/{kept}")
        api.delete(f"/proxies/{replaced}")


def test_toxic_endpoints(api: httpx.Client, echo_proxy: Proxy) -> None:
    toxics = f"/proxies/{echo_proxy.name}/toxics"
    created = api.post(toxics, json={"type": "latency", "attributes": {"latency": 100}})
    assert created.status_code == 200
    assert created.json() == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 100, "jitter": 0},
    }
    named = api.post(
        toxics,
        json={"name": "db_cut", "type": "limit_data", "stream": "upstream", "toxicity": 0.5},
    )
    assert named.json()["attributes"] == {"bytes": 0}

    listed = api.get(toxics).json()
    assert [t["name"] for t in listed] == ["db_cut", "latency_downstream"]  # upstream first
    assert api.get(f"/proxies/{echo_proxy.name}").json()["toxics"] == listed
    assert api.get(f"{toxics}/db_cut").json() == named.json()

    updated = api.post(f"{toxics}/latency_downstream", json={"attributes": {"jitter": 10}})
    assert updated.json()["attributes"] == {"latency": 100, "jitter": 10}
    patched = api.patch(f"{toxics}/db_cut", json={"toxicity": 1})
    assert patched.json()["toxicity"] == 1.0

    assert api.post(toxics, json={"type": "latency"}).status_code == 409
    assert api.post(toxics, json={"type": "mars"}).json()["error"] == "invalid toxic type"
    assert api.post(toxics, json={"type": "latency", "stream": "sideways"}).status_code == 400
    assert api.post(toxics, json={"type": "latency", "toxicity": 2}).status_code == 400
    bad = api.post(toxics, json={"type": "bandwidth", "attributes": {"rate": -1}})
    assert bad.status_code == 400
    assert api.get(f"{toxics}/absent").json() == {"error": "toxic not found", "status": 404}

    assert api.delete(f"{toxics}/db_cut").status_code == 204
    assert api.delete(f"{toxics}/db_cut").status_code == 404
    assert [t["name"] for t in api.get(toxics).json()] == ["latency_downstream"]
    assert api.get("/proxies/absent/toxics").status_code == 404


def test_reset_enables_everything_and_removes_every_toxic(
    api: httpx.Client, echo_proxy: Proxy
) -> None:
    api.post(f"/proxies/{echo_proxy.name}/toxics", json={"type": "timeout"})
    api.post(f"/proxies/{echo_proxy.name}", json={"enabled": False})
    assert api.post("/reset").status_code == 204
    proxy = api.get(f"/proxies/{echo_proxy.name}").json()
    assert proxy["enabled"] is True and proxy["toxics"] == []
    with connect(echo_proxy) as sock:
        assert round_trip(sock, b"steady") == b"steady"


def test_health_and_metrics_show_proxies_connections_and_toxics(
    api: httpx.Client, echo_proxy: Proxy
) -> None:
    assert api.get("/health").json()["status"] == "ok"
    api.post(f"/proxies/{echo_proxy.name}/toxics", json={"name": "db_slow", "type": "latency"})
    with connect(echo_proxy) as sock:
        assert round_trip(sock, b"scrape") == b"scrape"
        text = api.get("/metrics").text
    assert f'chaosproxy_proxy_enabled{{proxy="{echo_proxy.name}"}} 1.0' in text
    assert f'chaosproxy_proxy_connections{{proxy="{echo_proxy.name}"}} 1.0' in text
    assert (
        f'chaosproxy_proxy_toxics{{proxy="{echo_proxy.name}",stream="downstream",'
        'toxic="db_slow",type="latency"} 1.0'
    ) in text
