"""Prometheus metrics of one app, in a registry of its own (so two apps in one process,
as in tests, never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "aether_http_requests", "HTTP requests answered", ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aether_http_request_duration_seconds", "Time to answer an HTTP request",
            ["method", "route"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.revision = Gauge(
            "aether_revision", "The store's newest revision", registry=self.registry
        )
        self.watchers = Gauge(
            "aether_watch_subscribers", "Subscribers of the watch hub (SSE streams, "
            "watcher plugins, caches)", registry=self.registry,
        )
        self.streams = Gauge(
            "aether_http_watch_streams", "Open SSE watch streams", registry=self.registry
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
