"""Report jobs: a queue of triggered reports, run by a bounded pool of worker threads.

Every trigger is a row of the `reports` table before it is acknowledged, with its parameters, so that no triggered
report is lost: reports left queued or running by a stopped (or killed) process are queued again at the next
start. Workers wait until the data is ready (the start-up ingest has finished) and compute each report on one
consistent snapshot.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from storemon.db import open_db
from storemon.engine import INTERPOLATIONS, ReportCancelled, compute_report
from storemon.ingest import now_iso
from storemon.parse import format_instant, parse_instant
from storemon.snapshot import load_snapshot

log = logging.getLogger(__name__)

QUEUED, RUNNING, COMPLETE, FAILED = "Queued", "Running", "Complete", "Failed"
SUMMARY_COLUMNS = (
    "id, status, progress, requested_as_of, interpolation, as_of, data_version, created, started, finished, "
    "row_count, error"
)


class BadParameter(ValueError):
    """A report parameter that is not valid; the message names it and says why."""


def check_parameters(as_of: object, interpolation: object) -> tuple[str | None, str]:
    """Validate trigger parameters; returns (as_of as given or None, interpolation)."""
    if as_of is not None and as_of != "":
        if not isinstance(as_of, str):
            raise BadParameter("as_of: must be a string (an ISO-8601 date and time)")
        try:
            parse_instant(as_of)
        except ValueError as exc:
            raise BadParameter(f"as_of: {exc}") from None
    else:
        as_of = None
    if interpolation is None or interpolation == "":
        interpolation = "previous"
    if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS:
        raise BadParameter(f"interpolation: must be one of {', '.join(INTERPOLATIONS)}, not {interpolation!r}")
    return as_of, interpolation


class ReportJobs:
    """The report queue and its workers. `start()` re-queues unfinished reports; `stop()` leaves them resumable."""

    def __init__(self, db_path: str | Path, workers: int = 2,
                 on_change: Callable[[str], None] | None = None) -> None:
        self.db_path = str(db_path)
        self.workers = max(1, workers)
        self.data_ready = threading.Event()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._progress: dict[str, float] = {}
        self._on_change = on_change

    def start(self) -> None:
        db = open_db(self.db_path)
        try:
            unfinished = [row[0] for row in db.execute(
                "SELECT id FROM reports WHERE status IN (?, ?) ORDER BY created, rowid", [QUEUED, RUNNING]
            )]
            db.execute("UPDATE reports SET status = ?, progress = 0, started = NULL WHERE status = ?",
                       [QUEUED, RUNNING])
        finally:
            db.close()
        for report_id in unfinished:
            self._queue.put(report_id)
        if unfinished:
            log.info("re-queued %d unfinished reports", len(unfinished))
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"report-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers; a report being computed is put back in the queue for the next start."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def trigger(self, db, as_of: object = None, interpolation: object = None) -> str:
        """Record and queue a report; returns its id. Raises BadParameter for an invalid parameter."""
        requested_as_of, interpolation = check_parameters(as_of, interpolation)
        report_id = str(uuid.uuid4())
        db.execute(
            "INSERT INTO reports (id, status, progress, requested_as_of, interpolation, created) "
            "VALUES (?, ?, 0, ?, ?, ?)",
            [report_id, QUEUED, requested_as_of, interpolation, now_iso()],
        )
        self._queue.put(report_id)
        self._notify(report_id)
        return report_id

    def progress_of(self, report_id: str) -> float | None:
        """The live progress of a report being computed, if it is."""
        return self._progress.get(report_id)

    def _notify(self, report_id: str) -> None:
        if self._on_change is not None:
            try:
                self._on_change(report_id)
            except Exception:
                log.exception("report change listener failed")

    def _work(self) -> None:
        db = open_db(self.db_path)
        try:
            while not self._stopping.is_set():
                report_id = self._queue.get()
                if report_id is None:
                    break
                while not self.data_ready.wait(0.2):
                    if self._stopping.is_set():
                        return
                try:
                    self._run(db, report_id)
                except Exception:
                    log.exception("report %s: worker error", report_id)
        finally:
            db.close()

    def _run(self, db, report_id: str) -> None:
        row = db.execute("SELECT status, requested_as_of, interpolation FROM reports WHERE id = ?",
                         [report_id]).fetchone()
        if row is None or row[0] != QUEUED:
            return
        _, requested_as_of, interpolation = row
        db.execute("UPDATE reports SET status = ?, started = ?, progress = 0 WHERE id = ?",
                   [RUNNING, now_iso(), report_id])
        self._progress[report_id] = 0.0
        self._notify(report_id)

        def progress(fraction: float) -> None:
            self._progress[report_id] = fraction
            self._notify(report_id)

        try:
            snapshot = load_snapshot(db)
            as_of = parse_instant(requested_as_of) if requested_as_of else None
            report = compute_report(snapshot, as_of, interpolation, progress=progress, cancel=self._stopping)
            csv_text = report.to_csv()
        except ReportCancelled:
            db.execute("UPDATE reports SET status = ?, progress = 0, started = NULL WHERE id = ?",
                       [QUEUED, report_id])
            log.info("report %s: stopped, left queued for the next start", report_id)
            return
        except Exception as exc:
            log.exception("report %s failed", report_id)
            db.execute("UPDATE reports SET status = ?, finished = ?, error = ? WHERE id = ?",
                       [FAILED, now_iso(), f"{type(exc).__name__}: {exc}", report_id])
            return
        finally:
            self._progress.pop(report_id, None)
            self._notify(report_id)
        db.execute(
            "UPDATE reports SET status = ?, progress = 1, as_of = ?, data_version = ?, finished = ?, row_count = ?, "
            "csv = ? WHERE id = ?",
            [COMPLETE, format_instant(report.as_of_us), snapshot.data_version, now_iso(), len(report.store_ids),
             csv_text, report_id],
        )
        self._notify(report_id)
