"""Report jobs: a queue of triggered reports, computed in a pool of processes.

A few threads take reports off the queue; each hands its report to the pool of spawned processes (one per worker)
and waits for it, so that the engine's work never competes with the API and the console for the service's GIL.

Every trigger is a row of the `reports` table before it is acknowledged, with its parameters, so that no triggered
report is lost: reports left queued or running by a stopped (or killed) process are queued again at the next
start. Workers wait until the data is ready (the start-up ingest has finished) and compute each report on one
consistent snapshot.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.pool
import os
import queue
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path

from storemon import reports
from storemon.background import tell
from storemon.compute import report_from_db
from storemon.db import open_db
from storemon.engine import INTERPOLATIONS, ReportCancelled
from storemon.logs import log_to_file
from storemon.parse import format_instant, parse_as_of, parse_instant
from storemon.snapshot import BeforeRetainedData, data_state

log = logging.getLogger(__name__)

PROGRESS_POLL_S = 0.2
PROGRESS_BUSY_S = 1.0
DEFAULT_KEEP_REPORTS = 1000
DEFAULT_WORKERS = 2
# Report processes run at this much lower CPU priority than the service: on a machine whose cores they fill, the
# console's key presses and the API's answers come first, and a report takes the time left.
REPORT_NICENESS = 10


class BadParameter(ValueError):
    """A report parameter that is not valid; the message names it and says why."""


def check_parameters(as_of: object, interpolation: object) -> tuple[str | None, str]:
    """Validate trigger parameters; returns (as_of as given or None, interpolation)."""
    if as_of is not None and as_of != "":
        if not isinstance(as_of, str):
            raise BadParameter("as_of: must be a string (an ISO-8601 date and time)")
        try:
            parse_as_of(as_of)
        except ValueError as exc:
            raise BadParameter(f"as_of: {exc}") from None
    else:
        as_of = None
    if interpolation is None or interpolation == "":
        interpolation = "previous"
    if isinstance(interpolation, str):
        interpolation = interpolation.strip().lower()
    if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS:
        raise BadParameter(f"interpolation: must be one of {', '.join(INTERPOLATIONS)}, not {interpolation!r}")
    return as_of, interpolation


@dataclass(frozen=True)
class DaskTarget:
    """Where reports run when they run on a Dask cluster: its scheduler, and the data directory as its workers
    reach it (a path or an fsspec URL)."""

    address: str
    data_dir: str


class ReportJobs:
    """The report queue and its workers. `start()` re-queues unfinished reports; `stop()` leaves them resumable.

    With a `dask` target, each worker thread computes its reports on that cluster, from the data directory's
    source files, instead of in the pool of processes over the database.
    """

    def __init__(self, db_path: str | Path, workers: int = DEFAULT_WORKERS,
                 on_change: Callable[[str], None] | None = None, keep_reports: int = DEFAULT_KEEP_REPORTS,
                 on_finish: Callable[[str, float | None], None] | None = None,
                 dask: DaskTarget | None = None) -> None:
        self.db_path = str(db_path)
        self.dask = dask
        self._client = None
        self.keep_reports = keep_reports
        # Reports that failed where even their failure could not be stored: the API answers Failed for them.
        self.unstored_failures: dict[str, str] = {}
        self.workers = max(1, workers)
        self.data_ready = threading.Event()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool: multiprocessing.pool.Pool | None = None
        self._pool_lock = threading.Lock()
        # The pool's resource tracker needs a real stderr to start: start it now, before a console captures it.
        resource_tracker.ensure_running()
        self._on_change = on_change
        self._on_finish = on_finish

    def start(self) -> None:
        db = open_db(self.db_path)
        try:
            unfinished = reports.requeue_unfinished(db)
        finally:
            db.close()
        for report_id in unfinished:
            self._queue.put(report_id)
        if unfinished:
            log.info("re-queued %d unfinished reports", len(unfinished))
        if self.dask is not None:
            from storemon.cluster import connect

            self._client = connect(self.dask.address)
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"report-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers; a report being computed is put back in the queue for the next start."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        with self._pool_lock:
            if self._pool is not None:
                self._pool.terminate()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._pool is not None:
            self._pool.join()
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def trigger(self, db, as_of: object = None, interpolation: object = None) -> str:
        """Record and queue a report; returns its id. Raises BadParameter for an invalid parameter."""
        requested_as_of, interpolation = check_parameters(as_of, interpolation)
        if requested_as_of is not None and self.dask is None:
            try:
                data_state(db).check_as_of(parse_instant(requested_as_of))
            except BeforeRetainedData as exc:
                raise BadParameter(f"as_of: {exc}") from None
        report_id = str(uuid.uuid4())
        reports.insert(db, report_id, requested_as_of, interpolation)
        self._queue.put(report_id)
        self._notify(report_id)
        return report_id

    def _notify(self, report_id: str) -> None:
        tell(self._on_change, report_id, what="report change listener")

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
                except sqlite3.Error as exc:  # the database cannot record it (a full disk, say): fail it here
                    log.error("report %s failed: cannot use the database: %s", report_id, exc)
                    self.unstored_failures[report_id] = f"storage failure: {exc}"
                    self._finished(report_id, reports.FAILED, None)
                except Exception:
                    log.exception("report %s: worker error", report_id)
        finally:
            db.close()

    def _run(self, db, report_id: str) -> None:
        row = reports.summary(db, report_id)
        if row is None or row["status"] != reports.QUEUED:
            return
        requested_as_of, interpolation = row["requested_as_of"], row["interpolation"]
        if self._stopping.is_set():
            return
        reports.mark_running(db, report_id)
        started = time.monotonic()
        self._notify(report_id)
        if self._client is not None:
            self._run_on_cluster(db, report_id, requested_as_of, interpolation, started)
            return
        try:
            pending = self._processes().apply_async(compute_in_process,
                                                    (self.db_path, report_id, requested_as_of, interpolation))
        except ValueError:  # the pool was stopped meanwhile: leave the report for the next start
            reports.mark_queued(db, report_id)
            return
        shown_progress = 0.0
        while not pending.ready():
            if self._stopping.is_set():
                reports.mark_queued(db, report_id)
                log.info("report %s: stopped, left queued for the next start", report_id)
                return
            pending.wait(PROGRESS_POLL_S)
            progress = reports.progress(db, report_id)
            if progress != shown_progress:
                shown_progress = progress
                self._notify(report_id)
        try:
            outcome = pending.get()
        except Exception as exc:
            self._fail(db, report_id, f"{type(exc).__name__}: {exc}", started)
            return
        self._store(db, report_id, outcome, started)

    def _processes(self) -> multiprocessing.pool.Pool:
        """The pool of report processes, started by the first report, so that a service starts without waiting
        for processes to import the engine (raises ValueError once the workers are stopping)."""
        with self._pool_lock:
            if self._stopping.is_set():
                raise ValueError("the report workers are stopping")
            if self._pool is None:
                self._pool = multiprocessing.get_context("spawn").Pool(self.workers, _quiet_child, (log_file(),))
            return self._pool

    def _run_on_cluster(self, db, report_id: str, requested_as_of: str | None, interpolation: str,
                        started: float) -> None:
        """Compute one report on the Dask cluster, its progress the fraction of the cluster's tasks done."""
        from storemon.cluster import ClusterError, cluster_report

        progress_db = open_db(self.db_path, busy_timeout=PROGRESS_BUSY_S)

        def progress(fraction: float) -> None:
            try:
                reports.set_progress(progress_db, report_id, fraction)
            except sqlite3.OperationalError:  # a refresh holds the write lock: progress can wait
                return
            self._notify(report_id)

        try:
            run = cluster_report(self._client, self.dask.data_dir,
                                 parse_instant(requested_as_of) if requested_as_of else None, interpolation,
                                 progress=progress, cancel=self._stopping)
        except ReportCancelled:
            reports.mark_queued(db, report_id)
            log.info("report %s: stopped, left queued for the next start", report_id)
            return
        except ClusterError as exc:
            self._fail(db, report_id, str(exc), started)
            return
        except Exception as exc:  # the data directory cannot be listed, say: a failed report, not a dead worker
            self._fail(db, report_id, f"{type(exc).__name__}: {exc}", started)
            return
        finally:
            progress_db.close()
        for error in run.errors:
            log.warning("report %s: %s (not used)", report_id, error)
        outcome = {"csv": run.report.to_csv(), "as_of": format_instant(run.report.as_of_us), "data_version": None,
                   "rows": len(run.report.store_ids)}
        self._store(db, report_id, outcome, started)

    def _fail(self, db, report_id: str, error: str, started: float) -> None:
        log.error("report %s failed: %s", report_id, error)
        reports.fail(db, report_id, error)
        self._finished(report_id, reports.FAILED, time.monotonic() - started)

    def _store(self, db, report_id: str, outcome: dict, started: float) -> None:
        """Record a computed report (or its failure to be stored) and tell the listeners."""
        try:
            reports.complete(db, report_id, outcome["as_of"], outcome["data_version"], outcome["rows"],
                             outcome["csv"])
        except sqlite3.Error as exc:  # a full disk, say: the small row of a failure may still fit
            log.error("report %s: cannot store it: %s", report_id, exc)
            self.unstored_failures[report_id] = f"cannot store the report: {exc}"
            reports.fail(db, report_id, f"cannot store the report: {exc}")
            self._finished(report_id, reports.FAILED, time.monotonic() - started)
            return
        reports.forget_old(db, self.keep_reports)
        self._finished(report_id, reports.COMPLETE, time.monotonic() - started)

    def _finished(self, report_id: str, status: str, seconds: float | None) -> None:
        tell(self._on_finish, status, seconds, what="report finish listener")
        self._notify(report_id)


def log_file() -> str | None:
    """The file the `storemon` log goes to, if any."""
    handler = next((h for h in logging.getLogger("storemon").handlers if isinstance(h, logging.FileHandler)), None)
    return handler.baseFilename if handler else None


def _quiet_child(log_path: str | None) -> None:
    """In a pool process: yield the CPU to the service (REPORT_NICENESS), ignore Ctrl-C (the service stops its
    pool), and send its output and log to the service's log file, never to the terminal."""
    os.nice(REPORT_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    target = os.open(log_path or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)
    if log_path:
        log_to_file(log_path)


def compute_in_process(db_path: str, report_id: str, requested_as_of: str | None, interpolation: str) -> dict:
    """Compute one report in a pool process (so that the engine never holds the service's GIL).

    Writes the report's progress into its row as it goes; returns what the worker stores.
    """
    db = open_db(db_path)
    # Progress goes through its own connection: written on the report's, it would turn the report's read
    # transaction into a write transaction holding the write lock until the report ends.
    progress_db = open_db(db_path, busy_timeout=PROGRESS_BUSY_S)
    try:
        written = [0.0]

        def progress(fraction: float) -> None:
            if fraction - written[0] >= 0.1:
                written[0] = fraction
                try:
                    reports.set_progress(progress_db, report_id, fraction)
                except sqlite3.OperationalError:  # a refresh holds the write lock: progress can wait
                    log.info("report %s: progress not recorded (database busy)", report_id)

        as_of = parse_instant(requested_as_of) if requested_as_of else None
        report, data_version = report_from_db(db, as_of, interpolation, progress=progress)
        return {"csv": report.to_csv(), "as_of": format_instant(report.as_of_us),
                "data_version": data_version, "rows": len(report.store_ids)}
    finally:
        progress_db.close()
        db.close()
