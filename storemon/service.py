"""The storemon service: the refresh scheduler, the report workers and the HTTP API, wired together.

`storemon serve` runs it headless; the console runs the same object in-process. `start()` and `stop()` are all a
caller needs; `listen()` registers a callback for changes (reports, refreshes) that the console turns into
messages. Each thread uses its own database connection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storemon import incidents, reports, runs
from storemon.alerts import DEFAULT_ALERT_AFTER_MINUTES, Alert, Notifier
from storemon.api import DEFAULT_TRIGGERS_PER_MINUTE, build_app
from storemon.background import tell
from storemon.db import BUSY_TIMEOUT_S, get_meta, open_db
from storemon.ingest import DEFAULT_RETAIN_DAYS
from storemon.jobs import DEFAULT_KEEP_REPORTS, DEFAULT_WORKERS, DaskTarget, ReportJobs
from storemon.metrics import Metrics
from storemon.parse import format_instant
from storemon.refresh import DEFAULT_INTERVAL_S, Refresher
from storemon.runs import Refresh
from storemon.server import DEFAULT_API_THREADS, DEFAULT_HOST, DEFAULT_PORT, ApiServer, PortUnavailable
from storemon.state import FleetNow, fleet_now

log = logging.getLogger(__name__)


@dataclass
class ServiceConfig:
    """Where the data and database are, where the API listens, how many report workers, how often to refresh,
    and the Dask cluster reports run on, if any."""

    data_dir: Path
    db_path: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = DEFAULT_WORKERS
    refresh_interval: float = DEFAULT_INTERVAL_S
    api_threads: int = DEFAULT_API_THREADS
    busy_timeout: float = BUSY_TIMEOUT_S
    retain_days: int = DEFAULT_RETAIN_DAYS
    triggers_per_minute: int = DEFAULT_TRIGGERS_PER_MINUTE
    keep_reports: int = DEFAULT_KEEP_REPORTS
    notify_urls: tuple[str, ...] = ()
    alert_after_minutes: float = DEFAULT_ALERT_AFTER_MINUTES
    dask: DaskTarget | None = None


@dataclass(frozen=True)
class Change:
    """What changed: `kind` is 'report' (one was queued, started, progressed or ended), 'refresh' (with its
    result) or 'alert' (a notification was sent)."""

    kind: str
    refresh: Refresh | None = None
    alert: Alert | None = None


class Service:
    """The report workers, the refresh scheduler and the API server, started and stopped together."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._listeners: list[Callable[[Change], None]] = []
        self.metrics = Metrics(lambda: vars(self.fleet_now()))
        self.jobs = ReportJobs(config.db_path, config.workers, on_change=self._report_changed,
                               keep_reports=config.keep_reports, on_finish=self.metrics.report_done,
                               dask=config.dask)
        self.refresher = Refresher(config.data_dir, config.db_path, config.refresh_interval,
                                   on_refresh=self._refreshed, busy_timeout=config.busy_timeout,
                                   retain_days=config.retain_days)
        self.notifier = Notifier(str(config.db_path), list(config.notify_urls), config.alert_after_minutes,
                                 on_sent=lambda alert: self._emit(Change("alert", alert=alert)))
        self.app = build_app(self, config.triggers_per_minute)
        self.server = ApiServer(self.metrics.count_requests(self.app), config.host, config.port,
                                config.api_threads)
        self.api_error: str | None = None
        self.started = False

    def listen(self, callback: Callable[[Change], None]) -> None:
        """Call `callback(change)` (from a service thread) whenever a report or the data changes."""
        self._listeners.append(callback)

    def start(self, *, require_api: bool = True) -> None:
        """Start everything. Without `require_api`, a port that cannot be bound is recorded in `api_error`."""
        db = self.db()
        interrupted = runs.mark_interrupted(db)
        if interrupted:
            log.warning("%d ingest(s) were interrupted by a stop; the next refresh completes them", interrupted)
        try:
            self.server.start()
        except PortUnavailable as exc:
            if require_api:
                raise
            self.api_error = str(exc)
            log.warning("%s", exc)
        self.jobs.start()
        self.notifier.start()
        self.refresher.start()
        self.started = True
        log.info("service started: data %s, database %s, API %s", self.config.data_dir, self.config.db_path,
                 self.api_address or self.api_error)

    def stop(self) -> None:
        """Stop the workers (leaving unfinished reports queued: a trigger meanwhile is recorded and queued too),
        then stop accepting requests and stop the refresh."""
        if not self.started:
            return
        self.started = False
        self.jobs.stop()
        self.server.stop()
        self.refresher.stop()
        self.notifier.stop()
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
        log.info("service stopped")

    @property
    def api_address(self) -> str | None:
        if self.api_error is not None:
            return None
        host, port = self.server.address
        return f"http://{host}:{port}"

    def db(self):
        """This thread's database connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = open_db(self.config.db_path)
        return db

    def _report_changed(self, report_id: str) -> None:
        self._emit(Change("report"))

    def _refreshed(self, result: Refresh) -> None:
        self.jobs.data_ready.set()
        self.metrics.refresh_done(result.ok, result.seconds or 0.0)
        self.notifier.wake()
        self._emit(Change("refresh", refresh=result))

    def _emit(self, change: Change) -> None:
        for callback in list(self._listeners):
            tell(callback, change, what="change listener")

    # The API's backend.

    def trigger_report(self, as_of: object = None, interpolation: object = None) -> str:
        return self.jobs.trigger(self.db(), as_of, interpolation)

    def report_status(self, report_id: str) -> dict | None:
        status = reports.summary(self.db(), report_id)
        unstored = self.jobs.unstored_failures.get(report_id)
        if status is not None and unstored is not None and status["status"] in (reports.QUEUED, reports.RUNNING):
            status.update(status=reports.FAILED, error=unstored)
        return status

    def report_csv(self, report_id: str) -> str | None:
        return reports.report_csv(self.db(), report_id)

    def recent_reports(self, limit: int = 50) -> list[dict]:
        return reports.recent(self.db(), limit)

    def incidents(self, store_id: str | None, since_us: int | None, ongoing: bool, limit: int) -> list[dict]:
        return incidents.listing(self.db(), store_id, since_us, ongoing, limit)

    def fleet_now(self) -> FleetNow:
        """Stores, open and down at the data's latest instant, as the last ingest stored them."""
        return fleet_now(self.db())

    def metrics_text(self) -> tuple[bytes, str]:
        return self.metrics.exposition()

    def recent_refreshes(self, limit: int = 20) -> list[Refresh]:
        return runs.recent(self.db(), limit)

    def last_refresh(self) -> Refresh | None:
        """The latest refresh: the last recorded, or one that failed before it could be recorded."""
        pending = self.refresher.last_result
        if pending is not None and pending.id is None:
            return pending
        last = runs.recent(self.db(), 1)
        return last[0] if last else None

    def refresh_now(self, wait_seconds: float = 0.0) -> Refresh | None:
        return self.refresher.refresh_now(wait_seconds)

    def health(self) -> dict:
        try:
            db = self.db()
            stores, polls = get_meta(db, "polled_stores", 0), get_meta(db, "poll_count", 0)
            max_ts = get_meta(db, "max_poll_ts")
            version = get_meta(db, "data_version", 0)
            pending = reports.pending_counts(db)
            last_refresh = self.last_refresh()
            finished = last_refresh if last_refresh and last_refresh.finished else next(
                (r for r in runs.recent(db, 10) if r.finished), None)
        except Exception as exc:
            log.exception("health check: database unreachable")
            return {"status": "error", "database": f"unreachable: {exc}"}
        warnings = []
        if not db.execute("SELECT 1 FROM business_hours LIMIT 1").fetchone() and stores:
            warnings.append("menu_hours.csv has no rows: every store is open 24x7")
        if not db.execute("SELECT 1 FROM zones LIMIT 1").fetchone() and stores:
            warnings.append("timezones.csv has no rows: every store is computed in America/Chicago")
        # a refresh still running has no outcome yet: the failing files are those of the last finished one
        failing = finished.errors if finished else []
        return {
            "status": "ok" if not failing else "degraded",
            "database": "ok",
            "data_as_of": format_instant(max_ts),
            "data_version": version,
            "stores": stores,
            "polls": polls,
            "last_refresh": last_refresh.to_dict() if last_refresh else None,
            "failing": failing,
            "warnings": warnings,
            "next_refresh": self.refresher.next_run,
            "reports_queued": pending[reports.QUEUED],
            "reports_running": pending[reports.RUNNING],
            "api": self.api_address,
        }
