"""The incidents view (key `i`): ongoing incidents first, longest first, then the most recent ended ones.

Enter on an incident closes the view and selects its store (the store's detail shows in the main screen).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

COLUMNS = (("store_id", "store"), ("state", "state"), ("start", "start (UTC)"), ("end", "end (UTC)"),
           ("duration", "duration"))
RECENT = 200


def format_minutes(minutes: float) -> str:
    """A duration as `3 d 04:05`, `04:05` (hours:minutes) or `12 min`."""
    whole = int(minutes)
    if whole < 60:
        return f"{whole} min"
    days, rest = divmod(whole, 24 * 60)
    text = f"{rest // 60:02d}:{rest % 60:02d}"
    return f"{days} d {text}" if days else text


def ordered(ongoing: list[dict], recent: list[dict]) -> list[dict]:
    """Ongoing incidents (longest first), then the ended ones of `recent` (newest first)."""
    first = sorted(ongoing, key=lambda i: (-i["minutes"], i["store_id"]))
    return first + [i for i in recent if i["end"] is not None]


class IncidentsScreen(Screen):
    """Incidents, as `/incidents` lists them; dismissed with the chosen store id, or None."""

    DEFAULT_CSS = """
    IncidentsScreen #incidents-title { height: 1; padding: 0 1; background: $panel; }
    IncidentsScreen DataTable { height: 1fr; }
    """
    BINDINGS = [Binding("escape,q,i", "close", "Back")]

    def __init__(self, incidents: list[dict]) -> None:
        super().__init__()
        self.incidents = incidents

    def compose(self) -> ComposeResult:
        down = sum(1 for i in self.incidents if i["end"] is None)
        yield Static(f"[b]Incidents[/b]: {down} ongoing, then the latest ended ones.  Enter shows the store; "
                     "Escape goes back.", id="incidents-title")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="incidents")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        for index, incident in enumerate(self.incidents):
            ongoing = incident["end"] is None
            style = "bold red" if ongoing else ""
            table.add_row(
                Text(incident["store_id"], style=style), Text("DOWN" if ongoing else "ended", style=style),
                incident["start"][:19].replace("T", " "), (incident["end"] or "")[:19].replace("T", " "),
                format_minutes(incident["minutes"]), key=str(index),
            )
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.dismiss(self.incidents[int(event.row_key.value)]["store_id"])

    def action_close(self) -> None:
        self.dismiss(None)
