"""The detail pane: the selected store's hours in local time, its status timelines, its figures."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

from storemon.fleet import StoreDetail

FIGURE_NAMES = ("uptime last hour (min)", "uptime last day (h)", "uptime last week (h)",
                "downtime last hour (min)", "downtime last day (h)", "downtime last week (h)")


def timeline_text(cells: list[tuple[float, float]]) -> Text:
    """One character per cell: green up, red down, yellow mixed, dim dot closed."""
    text = Text()
    for open_fraction, up_fraction in cells:
        if open_fraction <= 0:
            text.append("·", style="dim")
        elif up_fraction >= 0.999:
            text.append("█", style="green")
        elif up_fraction <= 0.001:
            text.append("█", style="red")
        else:
            text.append("▒", style="yellow")
    return text


class StoreDetailPane(Static):
    """Shows one store."""

    DEFAULT_CSS = """
    StoreDetailPane {
        height: 1fr;
        border: round $primary;
        padding: 0 1;
        overflow-y: auto;
    }
    """

    def show(self, detail: StoreDetail | None) -> None:
        """Show `detail` (None: no store selected)."""
        text = Text("Select a store.") if detail is None else self.describe(detail)
        # The next store's detail mostly takes as many lines: then the pane is repainted, and the screen not laid out.
        self.update(text, layout=self.lines_taken(text) != self.lines_taken(self.content))

    def lines_taken(self, content: object) -> int:
        """How many lines `content` (text, or a string) takes at the pane's width."""
        plain = content.plain if isinstance(content, Text) else str(content)
        width = max(self.content_size.width, 1)
        return sum(max(1, -(-cell_len(line) // width)) for line in plain.split("\n"))

    @staticmethod
    def describe(detail: StoreDetail) -> Text:
        """The pane's text for one store."""
        text = Text()
        text.append(detail.store_id + "\n", style="bold")
        text.append(f"zone {detail.zone}\n\n")
        text.append("Business hours (local)\n", style="bold")
        for line in detail.hours_lines:
            text.append(f"  {line}\n")
        text.append("\nLast 24 hours (30 min a cell)\n", style="bold")
        text.append_text(timeline_text(detail.day_timeline))
        text.append("\nLast 7 days (3 h a cell)\n", style="bold")
        text.append_text(timeline_text(detail.week_timeline))
        text.append("\n█ up  ", style="green")
        text.append("█ down  ", style="red")
        text.append("▒ mixed  ", style="yellow")
        text.append("· closed\n", style="dim")
        text.append("\nLatest report", style="bold")
        if detail.report is not None:
            text.append(f" {detail.report.id[:8]}, as of {detail.report.as_of[:16].replace('T', ' ')} UTC")
        text.append("\n")
        if detail.figures is None:
            text.append("  (no complete report includes this store yet: press r)\n")
        else:
            for name, value in zip(FIGURE_NAMES, detail.figures):
                text.append(f"  {name:26} {value:>8}\n")
        return text
