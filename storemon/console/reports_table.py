"""The reports pane: every report, from the console or the API, with its status and progress."""

from __future__ import annotations

from datetime import UTC, datetime

from textual.widgets import DataTable

from storemon.reports import COMPLETE, RUNNING

COLUMNS = (("id", "report"), ("status", "status"), ("progress", "progress"), ("elapsed", "elapsed"),
           ("as_of", "as of (UTC)"), ("interpolation", "int."))
WIDTHS = {"id": 8, "status": 8, "progress": 11, "elapsed": 7, "as_of": 16, "interpolation": 4}
BAR_WIDTH = 6


def progress_bar(fraction: float) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * BAR_WIDTH)
    return "█" * filled + "░" * (BAR_WIDTH - filled) + f" {fraction * 100:3.0f}%"


def short_instant(text: str | None) -> str:
    """`2023-01-25T17:49:29.123Z` as `2023-01-25 17:49`; no instant yet is `latest`."""
    return text[:16].replace("T", " ") if text else "latest"


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def elapsed(report: dict, now: datetime) -> str:
    started = parse_time(report.get("started"))
    if started is None:
        return ""
    finished = parse_time(report.get("finished")) or now
    return f"{(finished - started).total_seconds():.1f} s"


class ReportsTable(DataTable):
    """Recent reports, newest first; `show(reports)` updates rows in place."""

    DEFAULT_CSS = """
    ReportsTable {
        height: 12;
        border: round $secondary;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.reports: dict[str, dict] = {}
        self.created_by_short_id: dict[str, str] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key, width=WIDTHS[key])

    def show(self, reports: list[dict], now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        new = [r for r in reports if r["id"] not in self.reports]
        for report in reports:
            old = self.reports.get(report["id"])
            if old is not None and (old != report or report["status"] == RUNNING):
                old_values = self._values(old, now)
                for (column, _), value, old_value in zip(COLUMNS, self._values(report, now), old_values):
                    if value != old_value or column == "elapsed":
                        self.update_cell(report["id"], column, value)
            self.reports[report["id"]] = report
        if new:
            selected = self.selected_report()
            for report in new:
                self.add_row(*self._values(report, now), key=report["id"])
                self.created_by_short_id[report["id"][:8]] = report["created"]
            self.sort("id", key=lambda short_id: self.created_by_short_id.get(short_id, ""), reverse=True)
            if selected is not None:  # the cursor stays on its report, not on its row number
                self.move_cursor(row=self.get_row_index(selected))

    @staticmethod
    def _values(report: dict, now: datetime) -> tuple[str, ...]:
        progress = 1.0 if report["status"] == COMPLETE else float(report.get("progress") or 0)
        return (report["id"][:8], report["status"], progress_bar(progress), elapsed(report, now),
                short_instant(report.get("as_of") or report.get("requested_as_of")),
                (report.get("interpolation") or "")[:4])

    def selected_report(self) -> str | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value
