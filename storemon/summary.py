"""Human-readable summaries of ingest runs, for the command line: the ingest just done, and the ingest log."""

from __future__ import annotations

import sqlite_utils

from storemon import runs
from storemon.runs import FileResult, Refresh

ACTION_NOTE = {"appended": " (the lines added since the last ingest)"}


def ingest_summary(run: Refresh) -> str:
    """A few lines: per file, what was done and rows read/loaded/skipped, then the first bad lines."""
    lines = []
    for f in run.files:
        lines.extend(_file_lines(f, run.rolled_back, bad_lines_shown=len(f.bad_lines)))
        if f.error:
            continue
        if f.rows_skipped > len(f.bad_lines):
            lines.append(f"  ... and {f.rows_skipped - len(f.bad_lines)} more skipped rows")
        lines.extend(f"  note: {note}" for note in f.notes)
    state = "rolled back, database unchanged" if run.rolled_back else (
        f"data version {run.data_version}" + ("" if run.changed else " (nothing changed)"))
    lines.append(f"ingest #{run.id}: {state}")
    return "\n".join(lines)


def history(db: sqlite_utils.Database, limit: int = 10) -> str:
    """The last `limit` ingest runs (CLI ingests and service refreshes), newest first, one block each: the files
    that were read or failed, with their first bad lines."""
    blocks = []
    for run in runs.recent(db, limit):
        lines = [f"#{run.id} {run.started} -> {run.finished or '(unfinished)'}: {run.status}, "
                 f"data version {run.data_version}"]
        for f in run.files:
            if f.action != "unchanged":
                lines.extend("  " + line for line in _file_lines(f, run.rolled_back, bad_lines_shown=3))
        if run.error and not any(f.error for f in run.files):
            lines.append(f"  error: {run.error}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks) or "no ingest yet"


def _file_lines(f: FileResult, rolled_back: bool, bad_lines_shown: int) -> list[str]:
    """What one run did with one file, then its first `bad_lines_shown` bad lines."""
    if f.error:
        return [f"{f.name}: FAILED: {f.error.removeprefix(f.name + ': ')}"]
    if f.action == "unchanged":
        return [f"{f.name}: unchanged"]
    loaded = "none stored (rolled back)" if rolled_back else f"{f.rows_loaded:,} loaded"
    lines = [f"{f.name}: {f.rows_read:,} rows read{ACTION_NOTE.get(f.action, '')}, {loaded}, "
             f"{f.rows_skipped:,} skipped"]
    lines.extend(f"  line {line}: {reason}" for line, reason in f.bad_lines[:bad_lines_shown])
    return lines
