"""The stores table: every store, added once and then updated cell by cell; offline-during-hours stands out."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from storemon.fleet import FleetRow

COLUMNS = (
    ("store_id", "store id"), ("status", "status"), ("up_day", "up day h"), ("up_week", "up wk h"),
    ("open", "hours"), ("age", "last poll"), ("local", "local"), ("zone", "zone"),
)
BATCH = 500  # rows added or updated per turn of the event loop
WIDTHS = {"store_id": 36, "status": 8, "up_day": 8, "up_week": 8, "open": 6, "age": 9, "local": 9, "zone": 24}
SORT_KEYS = {
    "store_id": lambda r: r.store_id,
    "zone": lambda r: (r.zone, r.store_id),
    "local": lambda r: (r.local_time, r.store_id),
    "open": lambda r: (not r.open_now, r.store_id),
    "status": lambda r: (not r.offline_in_hours, r.last_active, r.store_id),
    "age": lambda r: (-r.last_poll_age_s, r.store_id),
    "up_day": lambda r: (float(r.uptime_day) if r.uptime_day else -1.0, r.store_id),
    "up_week": lambda r: (float(r.uptime_week) if r.uptime_week else -1.0, r.store_id),
}


def format_age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def cell_values(row: FleetRow) -> tuple[str, ...]:
    """The text of each cell of one store's row."""
    return (
        row.store_id, "active" if row.last_active else "INACTIVE", row.uptime_day, row.uptime_week,
        "open" if row.open_now else "closed", format_age(row.last_poll_age_s), row.local_time,
        row.zone.removeprefix("America/"),
    )


def style_of(row: FleetRow) -> str:
    """A store offline during its business hours is bold red."""
    return "bold red" if row.offline_in_hours else ""


def cells(row: FleetRow) -> tuple[Text, ...]:
    style = style_of(row)
    return tuple(Text(value, style=style) for value in cell_values(row))


class StoresTable(DataTable):
    """Every store; `show(rows)` adds new stores and updates changed cells, never rebuilding the table."""

    DEFAULT_CSS = """
    StoresTable {
        height: 1fr;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_by_id: dict[str, FleetRow] = {}
        self._pending: list[FleetRow] = []
        self._pending_from = 0
        self._pending_added = False
        self.filter_text = ""
        self.sort_column = "store_id"
        self.sort_reverse = False

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label + (" ▲" if key == self.sort_column else ""), key=key, width=WIDTHS[key])

    def show(self, rows: list[FleetRow]) -> None:
        """Bring the table up to date with `rows`, a batch of rows per turn of the event loop.

        Batches keep the console answering keys while 14,000 stores are added or updated.
        """
        self._pending = rows
        self._pending_from = 0
        self._pending_added = False
        self._apply_batch()

    @property
    def updating(self) -> bool:
        """Whether rows given to `show` are still being applied."""
        return self._pending_from < len(self._pending)

    def _apply_batch(self) -> None:
        rows = self._pending[self._pending_from : self._pending_from + BATCH]
        self._pending_from += BATCH
        for row in rows:
            old = self.rows_by_id.get(row.store_id)
            self.rows_by_id[row.store_id] = row
            if not self._visible(row.store_id):
                continue
            if old is None or row.store_id not in self.rows:
                self.add_row(*cells(row), key=row.store_id)
                self._pending_added = True
            elif old != row:
                style, values = style_of(row), cell_values(row)
                restyle = style != style_of(old)
                for (column, _), value, old_value in zip(COLUMNS, values, cell_values(old)):
                    if restyle or value != old_value:
                        self.update_cell(row.store_id, column, Text(value, style=style))
        if self._pending_from < len(self._pending):
            self.call_after_refresh(self._apply_batch)
        elif self._pending_added:
            self._pending_added = False
            self.apply_sort()

    def _visible(self, store_id: str) -> bool:
        return self.filter_text.lower() in store_id.lower()

    def set_filter(self, text: str) -> None:
        """Show only the stores whose id contains `text` (case-insensitive)."""
        if text == self.filter_text:
            return
        self.filter_text = text
        self.clear()
        for store_id, row in self.rows_by_id.items():
            if self._visible(store_id):
                self.add_row(*cells(row), key=store_id)
        self.apply_sort()

    def sort_by(self, column: str) -> None:
        """Sort by `column`; the same column again reverses the order."""
        self.sort_reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column = column
        self.apply_sort()

    def apply_sort(self) -> None:
        """Sort the rows, mark the sorted column's header, and keep the cursor on the store it was on."""
        selected = self.selected_store()
        for column_key, label in COLUMNS:
            arrow = (" ▼" if self.sort_reverse else " ▲") if column_key == self.sort_column else ""
            self.columns[column_key].label = Text(label + arrow)
        key = SORT_KEYS[self.sort_column]
        self.sort("store_id", key=lambda cell: key(self.rows_by_id[cell.plain]), reverse=self.sort_reverse)
        self.select_store(selected)

    def select_store(self, store_id: str | None) -> bool:
        """Move the cursor to `store_id`'s row; False if it is not shown."""
        if store_id is None or store_id not in self.rows:
            return False
        self.move_cursor(row=self.get_row_index(store_id))
        return True

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def selected_store(self) -> str | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value
