"""Human-readable summaries of ingest results, for the command line and the console."""

from __future__ import annotations

from storemon.ingest import IngestResult


def ingest_summary(result: IngestResult) -> str:
    """A few lines: per file, what was done and rows read/loaded/skipped, then the first bad lines."""
    lines = []
    for f in result.files:
        if f.error:
            lines.append(f"{f.name}: FAILED: {f.error}")
            continue
        if f.action == "unchanged":
            lines.append(f"{f.name}: unchanged")
        else:
            lines.append(f"{f.name}: {f.action}: {f.rows_read} rows read, {f.rows_loaded} loaded, "
                         f"{f.rows_skipped} skipped")
        for line, reason in f.bad_lines:
            lines.append(f"  line {line}: {reason}")
        if f.rows_skipped > len(f.bad_lines):
            lines.append(f"  ... and {f.rows_skipped - len(f.bad_lines)} more skipped rows")
        lines.extend(f"  note: {note}" for note in f.notes)
    state = "rolled back, database unchanged" if result.rolled_back else (
        f"data version {result.data_version}" + ("" if result.changed else " (nothing changed)"))
    lines.append(f"ingest #{result.run_id}: {state}")
    return "\n".join(lines)
