"""The refresh: a scheduler thread that re-ingests the data directory at start-up, then every interval.

Built on the `schedule` library with a private Scheduler and a stop Event (`wait`, not `sleep`), so shutdown is
prompt. A refresh is the core ingest (only what changed is read, one transaction); the thread never dies from an
exception: a failure is logged and recorded, and the next run tries again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import schedule

from storemon import runs
from storemon.background import BackgroundThread, tell
from storemon.db import BUSY_TIMEOUT_S, now_iso, open_db
from storemon.ingest import DEFAULT_RETAIN_DAYS, IngestCancelled, RunFailed, describe_failure, ingest
from storemon.runs import Refresh

log = logging.getLogger(__name__)
RETRY_FIRST_S = 5.0
DEFAULT_INTERVAL_S = 3600.0


class Refresher(BackgroundThread):
    """Runs refreshes on its own thread: once at start, then every `interval` seconds, and on request."""

    thread_name = "refresher"

    def __init__(
        self,
        data_dir: str | Path,
        db_path: str | Path,
        interval: float = DEFAULT_INTERVAL_S,
        on_refresh: Callable[[Refresh], None] | None = None,
        busy_timeout: float = BUSY_TIMEOUT_S,
        retain_days: int = DEFAULT_RETAIN_DAYS,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.db_path = str(db_path)
        self.interval = interval
        self.busy_timeout = busy_timeout
        self.retain_days = retain_days
        self.on_refresh = on_refresh
        self.first_done = threading.Event()
        self.last_result: Refresh | None = None
        # (step, done, total) of the refresh running now, as `ingest` reports it; None between refreshes
        self.progress: tuple[str, int, int] | None = None
        self.next_run: str | None = None
        self._scheduler = schedule.Scheduler()
        self._finished = threading.Condition()
        self._count = 0
        self._refreshing = False
        self._unrecorded: list[Refresh] = []
        self._failures = 0

    def refresh_now(self, wait_seconds: float = 0.0) -> Refresh | None:
        """Ask for a refresh now; wait up to `wait_seconds` for it and return its result (None if not done)."""
        with self._finished:
            target = self._count + 1 if not self._refreshing else self._count + 2
            self._wake.set()
            done = self._finished.wait_for(lambda: self._count >= target, timeout=wait_seconds)
        return self.last_result if done else None

    def run(self) -> None:
        self._refresh()
        while not self._stop.is_set():
            idle = self._scheduler.idle_seconds
            self._wake.wait(timeout=max(0.05, min(idle if idle is not None else 1.0, 1.0)))
            if self._stop.is_set():
                break
            if self._wake.is_set():
                self._wake.clear()
                self._refresh()
            else:
                self._scheduler.run_pending()

    def _refresh(self) -> None:
        """One refresh; never raises."""
        self._refreshing = True
        started = time.monotonic()
        try:
            result = self._ingest()
            result.seconds = round(time.monotonic() - started, 3)
            self._failures = 0 if result.ok else self._failures + 1
        finally:
            self._refreshing = False
            self._scheduler_reset()
        self.last_result = result
        self.first_done.set()
        with self._finished:
            self._count += 1
            self._finished.notify_all()
        tell(self.on_refresh, result, what="refresh listener")

    def _scheduler_reset(self) -> None:
        """The next scheduled refresh is one interval after this one ended, however this one was started; after a
        failure, sooner: RETRY_FIRST_S, doubling with each failure in a row, never later than the interval."""
        self._scheduler.clear()
        delay = self.interval
        if self._failures:
            delay = min(self.interval, RETRY_FIRST_S * 2 ** (self._failures - 1))
        self._scheduler.every(delay).seconds.do(self._refresh)
        next_run = self._scheduler.next_run
        self.next_run = next_run.astimezone().isoformat(timespec="seconds") if next_run else None

    def _ingest(self) -> Refresh:
        started = now_iso()
        db = None
        try:
            db = open_db(self.db_path, busy_timeout=self.busy_timeout)
            self._record_failures(db)
            outcome = ingest(db, self.data_dir, retain_days=self.retain_days, cancel=self._stop,
                             progress=self._progressed)
            if outcome.ok:
                log.info("refresh #%s: data version %s%s", outcome.id, outcome.data_version,
                         "" if outcome.changed else " (nothing changed)")
            else:
                log.warning("refresh #%s: %s", outcome.id, "; ".join(outcome.errors))
            return outcome
        except IngestCancelled:
            log.info("refresh stopped: the service is stopping")
            return Refresh.failed(started, "stopped", runs.INTERRUPTED)
        except RunFailed as exc:
            failure = exc.run
        except Exception as exc:
            if not isinstance(exc, sqlite3.Error | OSError):
                log.exception("refresh failed")
            failure = Refresh.failed(started, describe_failure(exc))
        finally:
            self.progress = None
            if db is not None:
                db.close()
        log.warning("refresh failed: %s", failure.error)
        self._unrecorded.append(failure)
        return failure

    def _progressed(self, step: str, done: int, total: int) -> None:
        self.progress = (step, done, total)

    def _record_failures(self, db) -> None:
        """Record refreshes that failed on the database (locked, say), now that it answers: the run's own row is
        marked failed, or a failed row is added for a run that never got one."""
        while self._unrecorded:
            runs.record_failed(db, self._unrecorded[0])
            self._unrecorded.pop(0)
