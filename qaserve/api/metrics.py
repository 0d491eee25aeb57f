"""Prometheus metrics for GET /metrics: requests and latency by route and status, requests
in flight, /predict items and output tokens, admission, engine aborts, the backend in use.

Everything lives in prometheus_client's default registry, where vLLM registers its own
engine metrics (``vllm:*``) when its stats logging is on (LOG_ENGINE_STATS=1).
"""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

REQUESTS = Counter("qaserve_requests", "HTTP requests answered", ["route", "status"])
LATENCY = Histogram(
    "qaserve_request_seconds",
    "Seconds from a request's arrival to its response's end",
    ["route"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
IN_FLIGHT = Gauge("qaserve_requests_in_flight", "Requests being answered", ["route"])
ITEMS = Counter("qaserve_predict_items", "Questions answered by /predict")
OUTPUT_TOKENS = Counter("qaserve_output_tokens", "Tokens the engine generated for /predict")
# Admission (qaserve/api/admission.py): generating requests admitted and refused, the items
# admitted work holds, and requests the drain stopped at SHUTDOWN_TIMEOUT_SECONDS.
ADMITTED = Counter("qaserve_admitted", "Generating requests admitted", ["route"])
REFUSED = Counter(
    "qaserve_refused",
    "Generating requests refused: past a limit (requests, items) or while draining",
    ["route", "reason"],
)
ADMITTED_ITEMS = Gauge("qaserve_admitted_items_in_flight", "Engine requests of admitted work")
ABANDONED = Counter("qaserve_abandoned", "Admitted requests stopped by the drain's deadline")

OTHER_ROUTE = "other"  # paths that are no route: one label, not one per path a client tries


class EngineCollector:
    """The engine's own counters and the backend, read at scrape time."""

    def __init__(self) -> None:
        self.engine = None

    def collect(self):
        if self.engine is None:
            return
        info = self.engine.info
        backend = GaugeMetricFamily(
            "qaserve_backend", "The engine answering (1)", labels=["backend", "version"]
        )
        backend.add_metric([info.backend, info.version], 1)
        yield backend
        aborted = CounterMetricFamily(
            "qaserve_engine_aborted", "Engine requests stopped before they finished"
        )
        aborted.add_metric([], self.engine.stats.get("aborted", 0))
        yield aborted


ENGINE = EngineCollector()
REGISTRY.register(ENGINE)


class RequestMetrics:
    """Pure ASGI middleware: counts, times and tracks every HTTP request by route."""

    def __init__(self, app, routes: set[str]):
        self.app = app
        self.routes = routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else OTHER_ROUTE
        status = {"code": 500}  # what the client got if the app fails before answering

        async def send_recording_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        IN_FLIGHT.labels(route).inc()
        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            IN_FLIGHT.labels(route).dec()
            LATENCY.labels(route).observe(time.perf_counter() - started)
            REQUESTS.labels(route, str(status["code"])).inc()
