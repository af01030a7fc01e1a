"""Prometheus metrics of the device endpoint (served by the management API at /metrics).

Label children are resolved once and kept, so counting a request on the hot path is a dict lookup, an
increment and a histogram observation (a few microseconds), not a label parse.
"""

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class DeviceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._requests = Counter(
            "thingport_requests", "Device requests by dialect, endpoint and result code",
            ["dialect", "endpoint", "code"], registry=self.registry,
        )
        self._latency = Histogram(
            "thingport_request_seconds", "Device request latency", ["dialect", "endpoint"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self._auth = Counter(
            "thingport_auth", "Device authentication results", ["dialect", "result"], registry=self.registry
        )
        self._stored = Counter(
            "thingport_messages_stored", "Messages committed to the durable log", ["dialect"], registry=self.registry
        )
        self._children: dict[tuple, tuple] = {}

    def request(self, dialect: str, endpoint: str, code: str, seconds: float) -> None:
        key = (dialect, endpoint, code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._requests.labels(dialect, endpoint, code),
                self._latency.labels(dialect, endpoint),
                self._auth.labels(dialect, "success" if code in ("0", "200") else "failure"),
            )
        children[0].inc()
        children[1].observe(seconds)
        if endpoint == "auth":
            children[2].inc()

    def stored(self, dialect: str, count: int = 1) -> None:
        child = self._children.get(dialect)
        if child is None:
            child = self._children[dialect] = self._stored.labels(dialect)
        child.inc(count)
