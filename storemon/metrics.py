"""The service's Prometheus metrics (`GET /metrics`), with prometheus-client.

Gauges of the fleet are read from the database when scraped (cached per data version); counters and histograms
are the service's own: refreshes, reports, API requests. Each service has its own registry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The registry of one service; `fleet_now()` returns the gauges' values (see `Service.fleet_now`)."""

    def __init__(self, fleet_now: Callable[[], dict]) -> None:
        self.registry = CollectorRegistry()
        self.refreshes = Counter("storemon_refreshes", "Refreshes of the data, by result (ok, failed).",
                                 ["result"], registry=self.registry)
        self.refresh_seconds = Histogram("storemon_refresh_duration_seconds", "How long a refresh took.",
                                         buckets=DURATION_BUCKETS, registry=self.registry)
        self.reports = Counter("storemon_reports", "Reports finished, by status (Complete, Failed).",
                               ["status"], registry=self.registry)
        self.report_seconds = Histogram("storemon_report_duration_seconds",
                                        "How long a report took from its start to its end.",
                                        buckets=DURATION_BUCKETS, registry=self.registry)
        self.requests = Counter("storemon_api_requests", "API requests answered, by route and status code.",
                                ["route", "status"], registry=self.registry)
        self.registry.register(_FleetCollector(fleet_now))

    def refresh_done(self, ok: bool, seconds: float) -> None:
        self.refreshes.labels("ok" if ok else "failed").inc()
        self.refresh_seconds.observe(seconds)

    def report_done(self, status: str, seconds: float | None) -> None:
        self.reports.labels(status).inc()
        if seconds is not None:
            self.report_seconds.observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in the Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def count_requests(self, app: Callable) -> Callable:
        """`app` (a WSGI application) counting each answer by route (its rule; "other" for unknown paths, so the
        labels stay bounded) and status code."""

        def counted(environ: dict, start_response: Callable) -> Iterable[bytes]:
            seen: list[str] = []

            def recording_start_response(status: str, headers: list, exc_info=None):
                seen.append(status.split(" ", 1)[0])
                return start_response(status, headers, exc_info)

            body = app(environ, recording_start_response)
            route = environ.get("route.handle")
            self.requests.labels(getattr(route, "rule", "other"), seen[-1] if seen else "500").inc()
            return body

        return counted


class _FleetCollector:
    """The fleet's gauges, read when scraped (the service reads the database again only for a new data version)."""

    def __init__(self, fleet_now: Callable[[], dict]) -> None:
        self.fleet_now = fleet_now
        self._lock = threading.Lock()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            now = self.fleet_now()
        yield GaugeMetricFamily("storemon_stores", "Stores with polls.", value=now["stores"])
        yield GaugeMetricFamily("storemon_stores_open", "Stores open at the data's latest instant.",
                                value=now["open"])
        yield GaugeMetricFamily("storemon_stores_down",
                                "Stores open at the data's latest instant whose latest poll is inactive.",
                                value=now["down"])
        latest = now["latest_us"]
        if latest is not None:
            yield GaugeMetricFamily("storemon_data_latest_timestamp_seconds",
                                    "The data's latest instant (the newest poll), as a Unix time.",
                                    value=latest / 1e6)
            yield GaugeMetricFamily("storemon_data_age_seconds",
                                    "Seconds from the data's latest instant to now.", value=time.time() - latest / 1e6)
