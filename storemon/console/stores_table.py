"""The stores table: every store, one line each, drawn a screen at a time; offline-during-hours stands out.

The table is a `ScrollView` on Textual's line API: it holds the fleet's columns and an array of positions (the
sort's order, less what the filter hides), and draws only the lines on the screen, so 140,000 stores cost what one
screen costs. A sort or a filter is an array operation; the cursor belongs to a store, not to a line number.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from storemon.fleet import Fleet

COLUMNS = (
    ("store_id", "store id"), ("status", "status"), ("up_day", "up day h"), ("up_week", "up wk h"),
    ("open", "hours"), ("age", "last poll"), ("local", "local"), ("zone", "zone"),
)
WIDTHS = {"store_id": 36, "status": 8, "up_day": 8, "up_week": 8, "open": 6, "age": 9, "local": 9, "zone": 24}
PADDING = 1  # spaces each side of a cell
OFFLINE_STYLE = Style(bold=True, color="red")


def _ranks(strings: np.ndarray) -> np.ndarray:
    """Each string's rank among the distinct strings, in string order."""
    return pd.factorize(strings, sort=True)[0]


def _figure(figures: np.ndarray) -> np.ndarray:
    """A report's figures as sort keys: a store without one sorts before every figure."""
    return np.nan_to_num(figures, nan=-1.0)


def format_figure(hours: float) -> str:
    """A report's figure as the report prints it (two decimals), "" for a store without one."""
    return "" if np.isnan(hours) else f"{hours:.2f}"


# What each column sorts by, smaller first; ties keep the store id order.
SORT_KEYS = {
    "zone": lambda f: _ranks(f.zone),
    "local": lambda f: _ranks(f.local_time),
    "open": lambda f: (~f.open_now).astype(np.int64),
    "status": lambda f: 2 * (~f.offline_in_hours).astype(np.int64) + f.last_active,  # down in hours, then inactive
    "age": lambda f: f.last_poll_us,  # the oldest poll first
    "up_day": lambda f: _figure(f.uptime_day),
    "up_week": lambda f: _figure(f.uptime_week),
}


def sort_order(fleet: Fleet, column: str, reverse: bool) -> np.ndarray:
    """The fleet's positions in `column`'s order (reversed: its reverse, ties still in store id order)."""
    if column == "store_id":
        positions = np.arange(len(fleet))
        return positions[::-1] if reverse else positions
    key = SORT_KEYS[column](fleet)
    return np.argsort(-key if reverse else key, kind="stable")


def format_age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def cell_values(fleet: Fleet, age_s: np.ndarray, at: int) -> tuple[str, ...]:
    """The text of each cell of the line of the store at position `at` of the fleet (`age_s`: the fleet's
    last_poll_age_s)."""
    return (
        fleet.store_id[at], "active" if fleet.last_active[at] else "INACTIVE", format_figure(fleet.uptime_day[at]),
        format_figure(fleet.uptime_week[at]), "open" if fleet.open_now[at] else "closed", format_age(float(age_s[at])),
        fleet.local_time[at], fleet.zone[at].removeprefix("America/"),
    )


class StoresTable(ScrollView, can_focus=True):
    """Every store; `show(fleet)` replaces them, keeping the filter, the sort and the store under the cursor."""

    DEFAULT_CSS = """
    StoresTable {
        height: 1fr;
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .stores-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        &:dark {
            & > .stores-table--even-row {
                background: $surface-darken-1 40%;
            }
        }
        & > .stores-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .stores-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .stores-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .stores-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"stores-table--header", "stores-table--even-row", "stores-table--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor(-1_000_000_000)", "First", show=False),
        Binding("end", "cursor(1_000_000_000)", "Last", show=False),
    ]

    cursor_row: reactive[int] = reactive(0, always_update=True, init=False)

    class Highlighted(Message):
        """The cursor is on another store."""

        def __init__(self, store_id: str) -> None:
            super().__init__()
            self.store_id = store_id

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filter_text = ""
        self.sort_column = "store_id"
        self.sort_reverse = False
        self._fleet = Fleet.empty()
        self._age_s = self._fleet.last_poll_age_s  # the fleet's, worked out once per fleet
        self._offline = self._fleet.offline_in_hours
        self._lower_ids: pd.Series | None = None  # the store ids in lower case, made at the first filter
        self._sorted = np.zeros(0, dtype=np.int64)  # fleet positions in the sort's order
        self._shown = self._sorted  # those the filter lets through: line -> fleet position
        self._line_of = self._sorted  # fleet position -> line, -1 when filtered out
        self._highlighted: str | None = None
        self._width = sum(WIDTHS.values()) + 2 * PADDING * len(WIDTHS)

    # What it shows.

    @property
    def row_count(self) -> int:
        return len(self._shown)

    def show(self, fleet: Fleet) -> None:
        """Show `fleet` in the current sort and filter."""
        selected = self.selected_store()
        self._fleet = fleet
        self._age_s, self._offline = fleet.last_poll_age_s, fleet.offline_in_hours
        self._lower_ids = None
        self._sorted = sort_order(fleet, self.sort_column, self.sort_reverse)
        self._apply(selected)

    def set_filter(self, text: str) -> None:
        """Show only the stores whose id contains `text` (case-insensitive)."""
        if text != self.filter_text:
            selected = self.selected_store()
            self.filter_text = text
            self._apply(selected)

    def sort_by(self, column: str) -> None:
        """Sort by `column`; the same column again reverses the order."""
        selected = self.selected_store()
        self.sort_reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column = column
        self._sorted = sort_order(self._fleet, column, self.sort_reverse)
        self._apply(selected)

    def _apply(self, selected: str | None) -> None:
        """Rebuild the shown lines from the sorted stores and the filter; the cursor stays on `selected`."""
        if self.filter_text:
            if self._lower_ids is None:
                self._lower_ids = pd.Series(self._fleet.store_id, dtype=object).str.lower()
            passes = self._lower_ids.str.contains(self.filter_text.lower(), regex=False).to_numpy(dtype=bool)
            self._shown = self._sorted[passes[self._sorted]]
        else:
            self._shown = self._sorted
        self._line_of = np.full(len(self._fleet), -1, dtype=np.int64)
        self._line_of[self._shown] = np.arange(len(self._shown))
        self.virtual_size = Size(self._width, len(self._shown) + 1)
        line = self._line(selected)
        self.cursor_row = min(line if line is not None else 0, max(len(self._shown) - 1, 0))
        self.refresh()

    def _line(self, store_id: str | None) -> int | None:
        """The line `store_id` is on, or None when it is not shown."""
        if store_id is None:
            return None
        at = int(np.searchsorted(self._fleet.store_id, store_id))
        if at == len(self._fleet) or self._fleet.store_id[at] != store_id or self._line_of[at] < 0:
            return None
        return int(self._line_of[at])

    def cells_at(self, line: int) -> tuple[str, ...]:
        """The text of each cell of the store on `line` (0 is the first store, below the header)."""
        return cell_values(self._fleet, self._age_s, int(self._shown[line]))

    def header_labels(self) -> list[str]:
        """Each column's header: its name, with ▲ or ▼ on the sorted column."""
        arrow = " ▼" if self.sort_reverse else " ▲"
        return [label + (arrow if key == self.sort_column else "") for key, label in COLUMNS]

    # The cursor.

    def selected_store(self) -> str | None:
        if not len(self._shown):
            return None
        return self._fleet.store_id[self._shown[min(self.cursor_row, len(self._shown) - 1)]]

    def select_store(self, store_id: str | None) -> bool:
        """Move the cursor to `store_id`'s line; False if it is not shown."""
        line = self._line(store_id)
        if line is None:
            return False
        self.cursor_row = line
        return True

    def validate_cursor_row(self, line: int) -> int:
        return max(0, min(line, len(self._shown) - 1))

    def watch_cursor_row(self, previous: int, line: int) -> None:
        visible = max(self.scrollable_content_region.height - 1, 1)
        if line < self.scroll_y:
            self.scroll_to(y=line, animate=False, immediate=True)
            self.refresh()
        elif line >= self.scroll_y + visible:
            self.scroll_to(y=line - visible + 1, animate=False, immediate=True)
            self.refresh()
        else:  # only the two lines the cursor left and reached are drawn again (the header is line 0)
            self.refresh_line(previous + 1)
            self.refresh_line(line + 1)
        store_id = self.selected_store()
        if store_id is not None and store_id != self._highlighted:
            self._highlighted = store_id
            self.post_message(self.Highlighted(store_id))

    def action_cursor(self, lines: int) -> None:
        self.cursor_row = self.cursor_row + lines

    def action_page(self, pages: int) -> None:
        self.cursor_row = self.cursor_row + pages * max(self.scrollable_content_region.height - 2, 1)

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            x = event.x + int(self.scroll_x)
            for key, _ in COLUMNS:
                x -= WIDTHS[key] + 2 * PADDING
                if x < 0:
                    self.sort_by(key)
                    break
            return
        self.cursor_row = int(self.scroll_y) + event.y - 1

    # Drawing.

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("stores-table--header")
            return self._strip(self.header_labels(), style, width)
        line = int(self.scroll_y) + y - 1
        if line >= len(self._shown):
            return Strip.blank(width, base)
        at = int(self._shown[line])
        style = base + self.get_component_rich_style("stores-table--even-row") if line % 2 else base
        if self._offline[at]:
            style += OFFLINE_STYLE
        if line == self.cursor_row:
            style += self.get_component_rich_style("stores-table--cursor")
        return self._strip(cell_values(self._fleet, self._age_s, at), style, width)

    def _strip(self, texts: list[str] | tuple[str, ...], style: Style, width: int) -> Strip:
        pad = " " * PADDING
        text = "".join(pad + value[: WIDTHS[key]].ljust(WIDTHS[key]) + pad for (key, _), value in zip(COLUMNS, texts))
        scroll_x = int(self.scroll_x)
        return Strip([Segment(text[scroll_x: scroll_x + width].ljust(width), style)])
