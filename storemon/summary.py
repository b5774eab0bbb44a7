"""Human-readable summaries of ingest results, for the command line and the console."""

from __future__ import annotations

import json

from storemon.ingest import IngestResult

ACTION_NOTE = {"appended": " (the lines added since the last ingest)"}


def ingest_summary(result: IngestResult) -> str:
    """A few lines: per file, what was done and rows read/loaded/skipped, then the first bad lines."""
    lines = []
    for f in result.files:
        if f.error:
            lines.append(f"{f.name}: FAILED: {f.error.removeprefix(f.name + ': ')}")
            continue
        if f.action == "unchanged":
            lines.append(f"{f.name}: unchanged")
        else:
            loaded = "none stored (rolled back)" if result.rolled_back else f"{f.rows_loaded:,} loaded"
            lines.append(f"{f.name}: {f.rows_read:,} rows read{ACTION_NOTE.get(f.action, '')}, {loaded}, "
                         f"{f.rows_skipped:,} skipped")
        for line, reason in f.bad_lines:
            lines.append(f"  line {line}: {reason}")
        if f.rows_skipped > len(f.bad_lines):
            lines.append(f"  ... and {f.rows_skipped - len(f.bad_lines)} more skipped rows")
        lines.extend(f"  note: {note}" for note in f.notes)
    state = "rolled back, database unchanged" if result.rolled_back else (
        f"data version {result.data_version}" + ("" if result.changed else " (nothing changed)"))
    lines.append(f"ingest #{result.run_id}: {state}")
    return "\n".join(lines)


def history(db, limit: int = 10) -> str:
    """The last `limit` ingest runs (CLI ingests and service refreshes), newest first, one block each."""
    rows = db.execute(
        "SELECT id, started, finished, status, data_version, files, error FROM ingest_runs ORDER BY id DESC LIMIT ?",
        [limit],
    ).fetchall()
    if not rows:
        return "no ingest yet"
    blocks = []
    for run_id, started, finished, status, version, files, error in rows:
        lines = [f"#{run_id} {started} -> {finished or '(unfinished)'}: {status}, data version {version}"]
        for f in json.loads(files or "[]"):
            if f.get("error"):
                lines.append(f"  {f['name']}: FAILED: {f['error'].removeprefix(f['name'] + ': ')}")
            elif f.get("action") != "unchanged":
                lines.append(f"  {f['name']}: {f['rows_read']:,} rows read{ACTION_NOTE.get(f['action'], '')}, "
                             f"{f['rows_loaded']:,} loaded, {f['rows_skipped']:,} skipped")
                lines.extend(f"    line {line}: {reason}" for line, reason in f.get("bad_lines", [])[:3])
        if error and not any(f.get("error") for f in json.loads(files or "[]")):
            lines.append(f"  error: {error}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
