"""The same operations through toxiproxy-python 0.1.1 and through our ToxiproxyClient."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from chaosproxy_support import connect, receive_until_closed, round_trip

from pytest_spark.probes.toxiproxy import Proxy, ToxiproxyClient, ToxiproxyError
from spark_sandbox.services.ports import free_port


@pytest.fixture
def legacy_toxiproxy(fault_proxy_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """toxiproxy-python keeps host and port as class attributes: patch them, then restore."""
    from toxiproxy import Toxiproxy
    from toxiproxy.api import APIConsumer

    host, port = fault_proxy_url.removeprefix("http://").rsplit(":", 1)
    monkeypatch.setattr(APIConsumer, "host", host)
    monkeypatch.setattr(APIConsumer, "port", int(port))
    yield Toxiproxy()


def test_toxiproxy_python_client(legacy_toxiproxy: object, echo_upstream: str) -> None:
    from toxiproxy import Toxiproxy
    from toxiproxy.exceptions import NotFound, ProxyExists

    server = legacy_toxiproxy
    assert isinstance(server, Toxiproxy)
    assert b"version" in server.version()
    name = f"legacy_{uuid.uuid4().hex[:8]}"
    proxy = server.create(upstream=echo_upstream, name=name)
    try:
        assert name in server.proxies()
        with pytest.raises(ProxyExists):
            server.create(upstream=echo_upstream, name=name)
        typed = Proxy.from_json(vars(proxy))

        proxy.add_toxic(type="limit_data", attributes={"bytes": 3})
        assert proxy.toxics()["limit_data_downstream"].attributes == {"bytes": 3}
        with connect(typed) as sock:
            sock.sendall(b"spark")
            assert receive_until_closed(sock) == b"spa"
        assert proxy.destroy_toxic("limit_data_downstream")
        assert proxy.toxics() == {}

        with proxy.down():
            assert server.get_proxy(name).enabled is False
            with pytest.raises(ConnectionRefusedError):
                connect(typed).close()
        assert server.get_proxy(name).enabled is True

        proxy.add_toxic(type="timeout", attributes={"timeout": 0})
        assert server.reset()
        assert proxy.toxics() == {}
        with connect(typed) as sock:
            assert round_trip(sock, b"steady") == b"steady"

        populated = server.populate(
            [{"name": name, "upstream": "127.0.0.1:1", "listen": f"127.0.0.1:{free_port()}"}]
        )
        assert [p.upstream for p in populated] == ["127.0.0.1:1"]
    finally:
        server.destroy(server.get_proxy(name))
    assert server.get_proxy(name) is None
    with pytest.raises(NotFound):
        proxy.destroy()


def test_toxiproxy_client_operations(toxiproxy: ToxiproxyClient, echo_upstream: str) -> None:
    assert toxiproxy.version().startswith("2.")
    name = f"typed_{uuid.uuid4().hex[:8]}"
    proxy = toxiproxy.create_proxy(name, upstream=echo_upstream)
    try:
        assert proxy.enabled and proxy.listen_port > 0 and proxy.toxics == ()
        assert toxiproxy.proxies()[name] == proxy
        assert toxiproxy.get_proxy(name) == proxy

        toxic = toxiproxy.add_toxic(name, "latency", {"latency": 50}, stream="upstream")
        assert toxic.name == "latency_upstream" and toxic.attributes["jitter"] == 0
        assert toxiproxy.toxics(name) == [toxic]
        assert toxiproxy.get_proxy(name).toxics == (toxic,)
        toxiproxy.remove_toxic(name, toxic.name)
        assert toxiproxy.toxics(name) == []

        assert toxiproxy.set_enabled(name, False).enabled is False
        with pytest.raises(ConnectionRefusedError):
            connect(proxy).close()
        toxiproxy.add_toxic(name, "bandwidth", {"rate": 1})
        toxiproxy.reset()
        after_reset = toxiproxy.get_proxy(name)
        assert after_reset.enabled and after_reset.toxics == ()

        (replaced,) = toxiproxy.populate([Proxy(name, "127.0.0.1:0", echo_upstream)])
        assert replaced.listen_port != proxy.listen_port  # a new listen address replaces
        with connect(replaced) as sock:
            assert round_trip(sock, b"populated") == b"populated"
    finally:
        toxiproxy.delete_proxy(name)
    assert name not in toxiproxy.proxies()


def test_errors_name_url_status_and_server_message(
    toxiproxy: ToxiproxyClient, fault_proxy_url: str
) -> None:
    with pytest.raises(ToxiproxyError) as caught:
        toxiproxy.get_proxy("absent")
    assert caught.value.status == 404
    assert caught.value.url == f"{fault_proxy_url}/proxies/absent"
    assert caught.value.message == "proxy not found"
    assert f"{fault_proxy_url}/proxies/absent" in str(caught.value)
    assert "HTTP 404" in str(caught.value) and "proxy not found" in str(caught.value)

    unreachable = ToxiproxyClient(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    with unreachable, pytest.raises(ToxiproxyError) as refused:
        unreachable.version()
    assert refused.value.status is None
    assert "ConnectError" in refused.value.message


def test_toxic_context_manager_removes_on_exit(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    with toxiproxy.toxic(echo_proxy.name, type="limit_data", attributes={"bytes": 2}) as toxic:
        assert toxiproxy.toxics(echo_proxy.name) == [toxic]
        with connect(echo_proxy) as sock:
            sock.sendall(b"order")
            assert receive_until_closed(sock) == b"or"  # shown to be active
    assert toxiproxy.toxics(echo_proxy.name) == []


def test_toxic_context_manager_removes_on_exception(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    with (
        pytest.raises(AssertionError, match="hypothesis broken"),
        toxiproxy.toxic(echo_proxy.name, type="timeout", attributes={"timeout": 0}),
    ):
        raise AssertionError("hypothesis broken")
    assert toxiproxy.toxics(echo_proxy.name) == []


def test_toxic_context_manager_removes_on_keyboard_interrupt(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        toxiproxy.toxic(echo_proxy.name, type="latency", name="db_latency", stream="upstream"),
    ):
        raise KeyboardInterrupt
    assert toxiproxy.toxics(echo_proxy.name) == []


def test_toxic_context_manager_tolerates_a_reset_inside(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    with toxiproxy.toxic(echo_proxy.name, type="slow_close", attributes={"delay": 10}):
        toxiproxy.reset()  # already gone on exit: not an error
    assert toxiproxy.toxics(echo_proxy.name) == []


def test_toxic_context_manager_leaves_a_toxic_it_did_not_add(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    existing = toxiproxy.add_toxic(echo_proxy.name, "latency", name="db_latency")
    with (
        pytest.raises(ToxiproxyError, match="toxic already exists"),
        toxiproxy.toxic(echo_proxy.name, type="latency", name="db_latency"),
    ):
        pytest.fail("the body must not run when the toxic could not be added")
    assert toxiproxy.toxics(echo_proxy.name) == [existing]
