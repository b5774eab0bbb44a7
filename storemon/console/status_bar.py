"""The header: the data's as_of, the stores down now, the API address; the last refresh and the next one; which
report the uptime figures come from."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from storemon.reports import ReportRef
from storemon.runs import RUNNING, Refresh


def short_time(instant: str | None) -> str:
    """An ISO-8601 instant as `2023-01-25 17:49:29`."""
    return (instant or "?")[:19].replace("T", " ")


class StatusBar(Static):
    """What the data is and where the service stands, in one or two lines."""

    DEFAULT_CSS = """
    StatusBar {
        height: 3;
        background: $panel;
        color: $text;
        padding: 0 1;
    }
    """

    def show(self, *, as_of: str | None, refresh: Refresh | None, next_refresh: str | None, api: str,
             down: int | None = None, report: ReportRef | None = None,
             progress: tuple[str, int, int] | None = None, loading: bool = False) -> None:
        """`loading`: the stores are still being read, so neither `as_of` nor `report` is known yet."""
        text = Text()
        text.append("storemon", style="bold")
        text.append("  data as of ")
        text.append("(loading...)" if loading else short_time(as_of) + " UTC" if as_of else "(no data yet)",
                    style="bold")
        if down is not None:
            text.append("   ")
            text.append(f"{down} down now", style="bold white on red" if down else "bold green")
        text.append("   API ")
        text.append(api, style="bold" if api.startswith("http") else "bold red")
        text.append("\n")
        if refresh is None:
            text.append("refresh: running the first one...")
        elif refresh.status == RUNNING:
            text.append(f"refresh running since {short_time(refresh.started)} UTC")
            if progress is not None:
                step, done, total = progress
                text.append(f": {step} {100 * done // max(total, 1)}%", style="bold")
        else:
            text.append("last refresh ")
            text.append(refresh.status, style="bold green" if refresh.ok else "bold red")
            text.append(f" at {short_time(refresh.finished)} UTC")
            if refresh.data_version is not None:
                text.append(f", data version {refresh.data_version}")
            if refresh.error:
                text.append(f" ({refresh.error[:80]})", style="red")
        if next_refresh:
            text.append(f"   next {next_refresh[11:19]}")
        text.append("\nuptime figures: ")
        if loading:
            text.append("(loading...)")
        elif report is None:
            text.append("no report yet (r runs one)")
        else:
            text.append(f"report {report.id[:8]} as of {short_time(report.as_of)} UTC")
            if as_of and report.as_of != as_of:
                text.append(" (older than the data)", style="bold yellow")
        if text != self.content:  # the console asks every second: an unchanged header costs no repaint
            self.update(text, layout=False)  # its height is fixed: no layout of the screen
