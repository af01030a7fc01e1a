"""Prometheus metrics of the device endpoint (served by the management API at /metrics).

The hot path counts into plain Python numbers (a dict lookup and a few additions, well under a
microsecond); a custom collector turns them into Prometheus metric families only when /metrics is
scraped. prometheus_client's own Counter/Histogram take a lock per update, which cost ~20% of a report.
"""

import re
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _Series:
    __slots__ = ("count", "total", "buckets")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf


class DeviceMetrics(Collector):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._requests: dict[tuple[str, str, str], _Series] = {}
        self._stored: dict[str, int] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._refused: dict[tuple[str, str], int] = {}
        self.registry.register(self)

    def request(self, dialect: str, endpoint: str, code: str, seconds: float) -> None:
        key = (dialect, endpoint, code)
        series = self._requests.get(key)
        if series is None:
            series = self._requests[key] = _Series()
        series.count += 1
        series.total += seconds
        series.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def stored(self, dialect: str, count: int = 1) -> None:
        self._stored[dialect] = self._stored.get(dialect, 0) + count

    def error(self, dialect: str, exc: Exception) -> None:
        """A request refused by ``exc``: counted by its kind, so an ACL refusal (``topic_denied``) stays
        apart from a storage failure (``store_unavailable``) even where a dialect answers both one code."""
        kind = _KINDS.get(type(exc))
        if kind is None:
            kind = _KINDS[type(exc)] = _snake(type(exc).__name__)
        key = (dialect, kind)
        self._errors[key] = self._errors.get(key, 0) + 1

    def refused(self, dialect: str, refusals: Sequence[Any]) -> None:
        """Values the thing model refused, one count each, by the dialect's refusal code (Alink's numeric
        codes; IoTDA replies name no code: ``property``)."""
        for refusal in refusals:
            key = (dialect, str(getattr(refusal, "code", "property")))
            self._refused[key] = self._refused.get(key, 0) + 1

    def collect(self) -> Iterator:
        requests = CounterMetricFamily(
            "thingport_requests", "Device requests by dialect, endpoint and result code",
            labels=["dialect", "endpoint", "code"],
        )
        auth = CounterMetricFamily("thingport_auth", "Device authentication results", labels=["dialect", "result"])
        latency = HistogramMetricFamily("thingport_request_seconds", "Device request latency",
                                        labels=["dialect", "endpoint"])
        by_endpoint: dict[tuple[str, str], list] = {}
        auth_counts: dict[tuple[str, str], int] = {}
        for (dialect, endpoint, code), series in list(self._requests.items()):
            requests.add_metric([dialect, endpoint, code], series.count)
            merged = by_endpoint.setdefault((dialect, endpoint), [[0] * len(series.buckets), 0.0])
            merged[0] = [a + b for a, b in zip(merged[0], series.buckets, strict=True)]
            merged[1] += series.total
            if endpoint == "auth":
                result = "success" if code in ("0", "200") else "failure"
                auth_counts[(dialect, result)] = auth_counts.get((dialect, result), 0) + series.count
        for (dialect, endpoint), (buckets, total) in by_endpoint.items():
            cumulative, running = [], 0
            for bound, n in zip([*map(str, LATENCY_BUCKETS), "+Inf"], buckets, strict=True):
                running += n
                cumulative.append((bound, running))
            latency.add_metric([dialect, endpoint], cumulative, total)
        for labels, count in auth_counts.items():
            auth.add_metric(list(labels), count)
        stored = CounterMetricFamily("thingport_messages_stored", "Messages committed to the durable log",
                                     labels=["dialect"])
        for dialect, count in list(self._stored.items()):
            stored.add_metric([dialect], count)
        errors = CounterMetricFamily("thingport_request_errors", "Device requests refused, by the kind of refusal",
                                     labels=["dialect", "error"])
        for (dialect, kind), count in list(self._errors.items()):
            errors.add_metric([dialect, kind], count)
        refused = CounterMetricFamily("thingport_validation_refusals",
                                      "Reported values the thing model refused, by refusal code",
                                      labels=["dialect", "code"])
        for (dialect, code), count in list(self._refused.items()):
            refused.add_metric([dialect, code], count)
        yield from (requests, auth, latency, stored, errors, refused)


_KINDS: dict[type, str] = {}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
