"""With a token, the fault proxy's API answers only who presents it (the sandbox and the gate),
not any other local process; readiness and metrics stay open."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import httpx
import pytest
from chaosproxy_support import start_fault_proxy

from pytest_spark.probes.toxiproxy import ToxiproxyClient, ToxiproxyError

TOKEN = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def guarded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    service, url = start_fault_proxy(tmp_path_factory.mktemp("guarded"), token=TOKEN)
    try:
        yield url
    finally:
        service.stop()


WRONG_AUTHORIZATIONS = {
    "none": None,
    "another token": "Bearer wrong",
    "another scheme": f"Basic {TOKEN}",
    "no scheme": TOKEN,
}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/proxies"), ("POST", "/proxies"), ("POST", "/reset"), ("GET", "/version"),
     ("POST", "/populate"), ("DELETE", "/proxies/spark_api/toxics/latency_downstream")],
)  # fmt: skip
@pytest.mark.parametrize("wrong", list(WRONG_AUTHORIZATIONS))
def test_every_control_route_refuses_a_missing_or_wrong_token(
    guarded_url: str, method: str, path: str, wrong: str
) -> None:
    authorization = WRONG_AUTHORIZATIONS[wrong]
    headers = {"Authorization": authorization} if authorization else {}
    answer = httpx.request(method, f"{guarded_url}{path}", headers=headers, json={}, timeout=5)
    assert answer.status_code == 401
    assert answer.json() == {"error": "missing or wrong bearer token", "status": 401}
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_health_and_metrics_need_no_token(guarded_url: str) -> None:
    assert httpx.get(f"{guarded_url}/health", timeout=5).status_code == 200
    assert httpx.get(f"{guarded_url}/metrics", timeout=5).status_code == 200


def test_the_typed_client_sends_its_token(guarded_url: str, echo_upstream: str) -> None:
    name = f"guarded_{uuid.uuid4().hex[:8]}"
    with ToxiproxyClient(guarded_url, token=TOKEN) as client:
        proxy = client.create_proxy(name, upstream=echo_upstream)
        with client.toxic(proxy.name, type="latency", attributes={"latency": 10}):
            assert [t.type for t in client.toxics(proxy.name)] == ["latency"]
        client.delete_proxy(name)
    with ToxiproxyClient(guarded_url) as anonymous, pytest.raises(ToxiproxyError) as refused:
        anonymous.proxies()
    assert refused.value.status == 401 and TOKEN not in str(refused.value)
