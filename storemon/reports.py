"""The `reports` table: each report from its trigger to its CSV, and every query on it.

A report's status moves Queued -> Running -> Complete or Failed; a Running report of a stopped service goes back
to Queued. Rows are dicts keyed by SUMMARY_NAMES (the CSV is read on its own, being large).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

import sqlite_utils

from storemon.db import now_iso
from storemon.engine import csv_field

QUEUED, RUNNING, COMPLETE, FAILED = "Queued", "Running", "Complete", "Failed"
SUMMARY_NAMES = ("id", "status", "progress", "requested_as_of", "interpolation", "as_of", "data_version", "created",
                 "started", "finished", "row_count", "error")
_SUMMARY = ", ".join(SUMMARY_NAMES)
_LATEST_COMPLETE = f"SELECT id, as_of, csv FROM reports WHERE status = '{COMPLETE}' ORDER BY finished DESC, rowid DESC"


@dataclass(frozen=True)
class ReportRef:
    """Which report figures come from: its id and as_of (ISO-8601)."""

    id: str
    as_of: str


def insert(db: sqlite_utils.Database, report_id: str, requested_as_of: str | None, interpolation: str) -> None:
    """Record a triggered report, Queued."""
    db.execute("INSERT INTO reports (id, status, progress, requested_as_of, interpolation, created) "
               "VALUES (?, ?, 0, ?, ?, ?)", [report_id, QUEUED, requested_as_of, interpolation, now_iso()])


def summary(db: sqlite_utils.Database, report_id: str) -> dict | None:
    """One report's row (without its CSV), or None."""
    row = db.execute(f"SELECT {_SUMMARY} FROM reports WHERE id = ?", [report_id]).fetchone()
    return None if row is None else dict(zip(SUMMARY_NAMES, row))


def recent(db: sqlite_utils.Database, limit: int) -> list[dict]:
    """The latest `limit` reports, newest first."""
    rows = db.execute(f"SELECT {_SUMMARY} FROM reports ORDER BY created DESC, rowid DESC LIMIT ?", [limit])
    return [dict(zip(SUMMARY_NAMES, row)) for row in rows.fetchall()]


def report_csv(db: sqlite_utils.Database, report_id: str) -> str | None:
    row = db.execute("SELECT csv FROM reports WHERE id = ?", [report_id]).fetchone()
    return None if row is None else row[0]


def pending_counts(db: sqlite_utils.Database) -> dict[str, int]:
    """How many reports are Queued and Running."""
    found = dict(db.execute("SELECT status, COUNT(*) FROM reports WHERE status IN (?, ?) GROUP BY status",
                            [QUEUED, RUNNING]).fetchall())
    return {QUEUED: found.get(QUEUED, 0), RUNNING: found.get(RUNNING, 0)}


def requeue_unfinished(db: sqlite_utils.Database) -> list[str]:
    """Put Running reports (of a service that stopped) back in the queue; returns every unfinished report's id,
    oldest first."""
    unfinished = [row[0] for row in db.execute(
        "SELECT id FROM reports WHERE status IN (?, ?) ORDER BY created, rowid", [QUEUED, RUNNING])]
    db.execute("UPDATE reports SET status = ?, progress = 0, started = NULL WHERE status = ?", [QUEUED, RUNNING])
    return unfinished


def mark_running(db: sqlite_utils.Database, report_id: str) -> None:
    db.execute("UPDATE reports SET status = ?, started = ?, progress = 0 WHERE id = ?",
               [RUNNING, now_iso(), report_id])


def mark_queued(db: sqlite_utils.Database, report_id: str) -> None:
    """Back to the queue (the service is stopping): it runs again at the next start."""
    db.execute("UPDATE reports SET status = ?, progress = 0, started = NULL WHERE id = ?", [QUEUED, report_id])


def set_progress(db: sqlite_utils.Database, report_id: str, fraction: float) -> None:
    db.execute("UPDATE reports SET progress = ? WHERE id = ?", [round(fraction, 3), report_id])


def progress(db: sqlite_utils.Database, report_id: str) -> float:
    return db.execute("SELECT progress FROM reports WHERE id = ?", [report_id]).fetchone()[0]


def complete(db: sqlite_utils.Database, report_id: str, as_of: str, data_version: int, rows: int,
             csv_text: str) -> None:
    db.execute("UPDATE reports SET status = ?, progress = 1, as_of = ?, data_version = ?, finished = ?, "
               "row_count = ?, csv = ? WHERE id = ?",
               [COMPLETE, as_of, data_version, now_iso(), rows, csv_text, report_id])


def fail(db: sqlite_utils.Database, report_id: str, error: str) -> None:
    db.execute("UPDATE reports SET status = ?, finished = ?, error = ? WHERE id = ?",
               [FAILED, now_iso(), error, report_id])


def forget_old(db: sqlite_utils.Database, keep: int) -> None:
    """Keep the `keep` most recently finished reports (0: all); queued and running ones always stay."""
    if keep > 0:
        db.execute("DELETE FROM reports WHERE id IN (SELECT id FROM reports WHERE status IN (?, ?) "
                   "ORDER BY finished DESC, rowid DESC LIMIT -1 OFFSET ?)", [COMPLETE, FAILED, keep])


def latest_complete(db: sqlite_utils.Database) -> tuple[ReportRef | None, str | None]:
    """The latest complete report and its CSV."""
    row = db.execute(f"{_LATEST_COMPLETE} LIMIT 1").fetchone()
    return (None, None) if row is None else (ReportRef(row[0], row[1]), row[2])


def latest_complete_row(db: sqlite_utils.Database, store_id: str) -> tuple[ReportRef | None, list[str] | None]:
    """The latest complete report and one store's six figures in it (found inside the stored CSV, not parsed
    whole; None if the report has no row for the store)."""
    row = db.execute(
        f"""
        WITH latest AS ({_LATEST_COMPLETE} LIMIT 1),
             found AS (SELECT id, as_of, csv, instr(csv, char(10) || :field || ',') AS at FROM latest)
        SELECT id, as_of, CASE WHEN at > 0 THEN substr(csv, at + 1, instr(substr(csv, at + 1), char(10)) - 1) END
        FROM found
        """,
        {"field": csv_field(store_id)},
    ).fetchone()
    if row is None:
        return None, None
    figures = next(csv.reader([row[2]]))[1:] if row[2] else None
    return ReportRef(row[0], row[1]), figures
