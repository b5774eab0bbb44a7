"""The header: the data's as_of, the stores down now, the API address; the last refresh and the next one."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class StatusBar(Static):
    """What the data is and where the service stands, in one or two lines."""

    DEFAULT_CSS = """
    StatusBar {
        height: 2;
        background: $panel;
        color: $text;
        padding: 0 1;
    }
    """

    def show(self, *, as_of: str | None, refresh: dict | None, next_refresh: str | None, api: str,
             down: int | None = None) -> None:
        text = Text()
        text.append("storemon", style="bold")
        text.append("  data as of ")
        text.append(as_of[:19].replace("T", " ") + " UTC" if as_of else "(no data yet)", style="bold")
        if down is not None:
            text.append("   ")
            text.append(f"{down} down now", style="bold white on red" if down else "bold green")
        text.append("   API ")
        text.append(api, style="bold" if api.startswith("http") else "bold red")
        text.append("\n")
        if refresh is None:
            text.append("refresh: running the first one...")
        else:
            ok = refresh.get("status") == "ok"
            text.append("last refresh ")
            text.append(f"{refresh.get('status', '?')}", style="bold green" if ok else "bold red")
            finished = (refresh.get("finished") or "")[:19].replace("T", " ")
            text.append(f" at {finished} UTC, data version {refresh.get('data_version')}")
            if refresh.get("error"):
                text.append(f" ({refresh['error'][:80]})", style="red")
        if next_refresh:
            text.append(f"   next {next_refresh[11:19]}")
        self.update(text)
