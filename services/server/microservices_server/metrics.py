"""Prometheus metrics: requests by route, method and status, latency, Redis errors, the fault
switches (on, and changes).

`init_app` times every request (before/after hooks) and serves GET /metrics. Each app gets
its own registry (tests build many apps in one process). Under gunicorn with several worker
processes, the gunicorn hooks (lifecycle.py) point PROMETHEUS_MULTIPROC_DIR at a fresh folder
before any worker imports prometheus_client, and /metrics adds up every worker's numbers.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from .lifecycle import MULTIPROC_ENV

# What redis_errors_total counts by: the API's calls (api.py), readiness' PING (probes.py),
# the page's status read (page.py), and WAIT for replicas (api.py, with REDIS_WAIT_REPLICAS).
REDIS_OPERATIONS = ("get", "increment", "reset", "ping", "status", "wait")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route and method.",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.fault_changes = Counter(
            "faults_changes_total",
            "Fault switches turned on or off through /faults, by switch and action.",
            ["switch", "action"],
            registry=self.registry,
        )
        # Collectors asked at each scrape (the fault switches' state), by render() too.
        self.collectors: list = []
        self.redis_errors = Counter(
            "redis_errors_total",
            "Redis commands that failed (connection refused, timeout, auth...), by operation.",
            ["operation"],
            registry=self.registry,
        )
        # Each operation's series from the start, at 0: a series born at its first error
        # starts at that value, and rate() or increase() would never see the burst.
        for operation in REDIS_OPERATIONS:
            self.redis_errors.labels(operation)

        # The labelled children, made once per label set: .labels() hashes and locks on
        # every call, and the request path needs only the child's inc() and observe().
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        children = self._children.get((route, method, status))
        if children is None:
            children = self._children[(route, method, status)] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def redis_error(self, operation: str) -> None:
        self.redis_errors.labels(operation).inc()

    def fault_changed(self, switch: str, action: str) -> None:
        self.fault_changes.labels(switch, action).inc()

    def add_collector(self, collector) -> None:
        """A collector read at each scrape, of this process only (the pod's shared state)."""
        self.collectors.append(collector)
        self.registry.register(collector)

    def render(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            for collector in self.collectors:
                registry.register(collector)
            return generate_latest(registry)
        return generate_latest(self.registry)


# The methods a label may name; any other is counted as OTHER. HTTP lets a client invent
# methods, and a label per invented one would grow /metrics (and memory) without end.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
STARTED = "microservices.started"  # the environ key under which a request's clock starts


class _StartClock:
    """WSGI middleware: note when the request reached the app (cheaper than a
    before_request hook, and it counts Flask's own set-up too)."""

    def __init__(self, wsgi_app) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        environ[STARTED] = time.perf_counter()
        return self.wsgi_app(environ, start_response)


def init_app(app: Flask, metrics: Metrics) -> None:
    """Time every request of `app` into `metrics`, and serve them at GET /metrics."""

    def count_request(response: Response) -> Response:
        req = request._get_current_object()  # one context lookup instead of four
        rule = req.url_rule.rule if req.url_rule else "unmatched"
        seconds = time.perf_counter() - req.environ.get(STARTED, time.perf_counter())
        method = req.method if req.method in METHODS else "OTHER"
        metrics.observe(rule, method, response.status_code, seconds)
        return response

    def prometheus() -> Response:
        return Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)

    app.wsgi_app = _StartClock(app.wsgi_app)
    app.after_request(count_request)
    app.add_url_rule("/metrics", "metrics", prometheus, methods=["GET"])
