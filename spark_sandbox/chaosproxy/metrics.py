"""Prometheus view of the fault proxy, read from the proxies at scrape time.

Nothing is counted on the data path: a scrape walks the collection, so an idle proxy with
no toxic costs the same whether or not Prometheus is watching. The chaos dashboards use
``chaosproxy_proxy_toxics`` to show when a fault was active.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from spark_sandbox.chaosproxy.collection import ProxyCollection


class ProxyStateCollector(Collector):
    def __init__(self, collection: ProxyCollection) -> None:
        self.collection = collection

    def collect(self) -> Iterator[Metric]:
        enabled = GaugeMetricFamily(
            "chaosproxy_proxy_enabled", "1 when the proxy listens", labels=["proxy"]
        )
        connections = GaugeMetricFamily(
            "chaosproxy_proxy_connections", "Open client connections", labels=["proxy"]
        )
        toxics = GaugeMetricFamily(
            "chaosproxy_proxy_toxics",
            "Toxics configured on the proxy",
            labels=["proxy", "toxic", "type", "stream"],
        )
        for name, proxy in sorted(self.collection.proxies.items()):
            enabled.add_metric([name], 1.0 if proxy.enabled else 0.0)
            connections.add_metric([name], float(proxy.open_connections))
            for toxic in proxy.ordered_toxics():
                toxics.add_metric([name, toxic.name, toxic.type, toxic.stream], 1.0)
        yield from (enabled, connections, toxics)


def metrics_registry(collection: ProxyCollection) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyStateCollector(collection))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
