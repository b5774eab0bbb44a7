"""The help screen: the keys, and where the log, database, API and exports are."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("r", "run a report (latest data, previous interpolation)"),
    ("e", "export the selected report (default: the latest complete one) as CSV"),
    ("u", "refresh the data now"),
    ("i", "incidents: stores down now during business hours, then recent outages (Enter shows the store)"),
    ("/", "filter the stores by id (Escape clears)"),
    ("s / S", "sort the stores by the next column / reverse the order (or click a column header)"),
    ("tab", "move between the stores table and the reports pane"),
    ("ctrl+p", "command palette"),
    ("?", "this help"),
    ("q", "quit (the server, the refresh and the workers stop; a running report resumes at the next start)"),
)


class HelpScreen(ModalScreen):
    """Keys and paths; any key closes it."""

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > Vertical {
        width: 90;
        height: auto;
        border: thick $primary;
        background: $surface;
        padding: 1 2;
    }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, paths: dict[str, str]) -> None:
        super().__init__()
        self.paths = paths

    def compose(self) -> ComposeResult:
        keys = "\n".join(f"  [b]{key:8}[/b] {text}" for key, text in KEYS)
        paths = "\n".join(f"  {name:12} {value}" for name, value in self.paths.items())
        with Vertical():
            yield Static(f"[b]Keys[/b]\n{keys}\n\n[b]Where things are[/b]\n{paths}\n\nEscape closes this screen.")
