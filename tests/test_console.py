"""The console under Pilot: it fills, runs, exports, filters, refreshes and follows reports triggered over HTTP."""

from __future__ import annotations

import asyncio
import html
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import POLL_HEADER, report_csv, write_csv, write_data
from test_alerts import HOURS as ALERT_HOURS
from test_alerts import POLLS as ALERT_POLLS
from test_alerts import ZONES as ALERT_ZONES
from textual.app import App
from textual.widgets import DataTable

from storemon.console.app import StoremonApp
from storemon.console.help_screen import HelpScreen
from storemon.console.incidents_screen import IncidentsScreen
from storemon.console.reports_table import ReportsTable
from storemon.console.status_bar import StatusBar
from storemon.console.store_detail import StoreDetailPane
from storemon.console.stores_table import StoresTable
from storemon.fleet import Fleet
from storemon.generate import generate
from storemon.runs import Refresh
from storemon.service import Service, ServiceConfig

SIZE = (180, 50)


@pytest.fixture
def data(tmp_path):
    directory = tmp_path / "data"
    generate(directory, stores=30, days=8, seed=9)
    return directory


def make_app(data, tmp_path, port=0):
    service = Service(ServiceConfig(data, tmp_path / "console.db", port=port, refresh_interval=3600))
    return StoremonApp(service, export_dir=tmp_path / "exports", log_path=tmp_path / "console.log")


def shown_rows(table: StoresTable | DataTable) -> list[list[str]]:
    """A table's rows as it shows them, top to bottom: each cell's text."""
    if isinstance(table, StoresTable):
        return [list(table.cells_at(i)) for i in range(table.row_count)]
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def shown_row(table: StoresTable, store_id: str) -> list[str]:
    return next(row for row in shown_rows(table) if row[0] == store_id)


def at_cursor(table: StoresTable | DataTable) -> str:
    """The first cell of the row under the cursor (a store's id, a report's short id)."""
    return shown_rows(table)[table.cursor_row][0]


def detail_heading(app) -> str:
    """The first line of the store detail pane: the id of the store it shows."""
    return str(app.query_one(StoreDetailPane).render()).splitlines()[0]


async def until(pilot, predicate, timeout=300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        if predicate():
            return
    raise AssertionError("condition not reached")


def test_fills_runs_a_report_and_exports_it(data, tmp_path):
    async def scenario():
        app = make_app(data, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            stores = app.query_one(StoresTable)
            await until(pilot, lambda: stores.row_count == 30)
            reports = app.query_one(ReportsTable)
            await pilot.press("r")
            await until(pilot, lambda: [row[1] for row in shown_rows(reports)] == ["Complete"])
            (short_id,) = [row[0] for row in shown_rows(reports)]
            await until(pilot, lambda: all(row[3] != "" for row in shown_rows(stores)))  # up wk h filled
            await pilot.press("e")
            exports = tmp_path / "exports"
            await until(pilot, lambda: any(exports.glob(f"report-{short_id}*.csv")))
            return next(exports.glob(f"report-{short_id}*.csv")).read_text(), app.service.config.db_path

    text, db_path = asyncio.run(scenario())
    assert text == report_csv(db_path)


def test_filter_sort_and_help(data, tmp_path):
    async def scenario():
        app = make_app(data, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            stores = app.query_one(StoresTable)
            await until(pilot, lambda: stores.row_count == 30)
            uuid_like = [row[0] for row in shown_rows(stores) if "-" in row[0]]
            await pilot.press("slash")
            await pilot.press(*uuid_like[0][:6])
            await until(pilot, lambda: stores.row_count == 1)
            assert at_cursor(stores) == uuid_like[0]
            await pilot.press("escape")
            await until(pilot, lambda: stores.row_count == 30)
            assert at_cursor(stores) == uuid_like[0]  # clearing the filter keeps the selected store
            await pilot.press("s")  # sort by the next column: status, stores down during their hours first
            assert "status ▲" in stores.header_labels()
            # stores down during their hours (open, inactive) first, then the other inactive ones, then by id
            keys = [(not (row[1] == "INACTIVE" and row[4] == "open"), row[1] == "active", row[0])
                    for row in shown_rows(stores)]
            assert keys == sorted(keys) and len({key[:2] for key in keys}) > 1
            assert at_cursor(stores) == uuid_like[0]
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)

    asyncio.run(scenario())


def test_refresh_key_loads_new_polls(data, tmp_path):
    async def scenario():
        app = make_app(data, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            stores = app.query_one(StoresTable)
            await until(pilot, lambda: stores.row_count == 30)
            with (data / "store_status.csv").open("a") as handle:
                handle.write("brand-new-store,inactive,2023-01-25 19:00:00 UTC\n")
            await pilot.press("u")
            await until(pilot, lambda: stores.row_count == 31)
            assert shown_row(stores, "brand-new-store")[1] == "INACTIVE"
            assert "2023-01-25 19:00:00 UTC" in str(app.query_one(StatusBar).render())

    asyncio.run(scenario())


def test_report_triggered_over_http_appears(data, tmp_path):
    async def scenario():
        app = make_app(data, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.query_one(StoresTable).row_count == 30)
            url = f"{app.service.api_address}/trigger_report"
            body = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(url, timeout=300).read()))
            reports = app.query_one(ReportsTable)
            await until(pilot, lambda: [body["report_id"][:8], "Complete"] in [row[:2] for row in shown_rows(reports)])
            address = app.service.api_address
        return address

    address = asyncio.run(scenario())
    with pytest.raises(OSError):  # quitting stopped the server
        urllib.request.urlopen(f"{address}/health", timeout=2)


def test_starts_when_the_port_is_taken(data, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        async def scenario():
            app = make_app(data, tmp_path, port=port)
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: app.query_one(StoresTable).row_count == 30)
                return str(app.query_one(StatusBar).render())

        header = asyncio.run(scenario())
    assert "not running" in header and "address already in use" in header


def test_q_quits_and_stops_the_service(data, tmp_path):
    async def scenario():
        app = make_app(data, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.query_one(StoresTable).row_count == 30)
            address = app.service.api_address
            await pilot.press("q")
            await pilot.pause()
            return app, address

    app, address = asyncio.run(scenario())
    assert app.return_code == 0 and not app.service.started
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{address}/health", timeout=2)


class BellCountingApp(StoremonApp):
    """The console, counting the times it rings the terminal bell."""

    bells = 0

    def bell(self) -> None:
        self.bells += 1
        super().bell()


def test_down_count_incidents_view_and_a_new_incident_rings(tmp_path):
    data = write_data(tmp_path / "data", ALERT_POLLS, ALERT_HOURS, ALERT_ZONES)

    async def scenario():
        service = Service(ServiceConfig(data, tmp_path / "i.db", port=0, refresh_interval=3600))
        app = BellCountingApp(service, export_dir=tmp_path / "exports", log_path=tmp_path / "console.log")
        async with app.run_test(size=SIZE) as pilot:
            stores = app.query_one(StoresTable)
            await until(pilot, lambda: stores.row_count == 5)
            await until(pilot, lambda: "2 down now" in str(app.query_one(StatusBar).render()))
            assert app.bells == 0  # the stores already down at the start are not news
            await pilot.press("i")
            await until(pilot, lambda: isinstance(app.screen, IncidentsScreen)
                        and any(table.row_count == 3 for table in app.screen.query(DataTable)))
            table = app.screen.query_one(DataTable)
            rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
            assert rows == [["S", "DOWN", "2023-01-23 15:00:00", "", "01:00"],
                            ["T", "DOWN", "2023-01-23 15:55:00", "", "5 min"],
                            ["U", "ended", "2023-01-23 14:10:00", "2023-01-23 14:50:00", "40 min"]]
            await pilot.press("down", "enter")
            await until(pilot, lambda: not isinstance(app.screen, IncidentsScreen))
            assert at_cursor(stores) == "T"
            write_csv(data / "store_status.csv", POLL_HEADER, ALERT_POLLS + [("W", "2023-01-23 16:30:00", "inactive")])
            await pilot.press("u")
            await until(pilot, lambda: app.bells == 1)
            assert any("W" in n.message and n.title == "New incident" for n in app._notifications)
            await until(pilot, lambda: "3 down now" in str(app.query_one(StatusBar).render()))

    asyncio.run(scenario())


def screen_text(app) -> str:
    """What the terminal shows, as text (from the SVG screenshot Textual renders)."""
    svg = app.export_screenshot()
    return html.unescape("".join(re.findall(r">([^<]*)</text>", svg))).replace("\xa0", " ")


def test_at_100x30_ids_and_figures_show_and_selections_follow_their_item(data, tmp_path):
    async def scenario():
        app = make_app(data, tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            stores = app.query_one(StoresTable)
            await until(pilot, lambda: stores.row_count == 30)
            uuid_like = sorted(row[0] for row in shown_rows(stores) if "-" in row[0])
            await pilot.press("r")
            reports = app.query_one(ReportsTable)
            await until(pilot, lambda: [row[1] for row in shown_rows(reports)] == ["Complete"])
            first = shown_rows(reports)[0][0]
            await until(pilot, lambda: "figures: report " + first[:8] in screen_text(app))
            await until(pilot, lambda: shown_row(stores, uuid_like[0])[3] != "")
            await pilot.pause(0.5)
            shown = screen_text(app)
            assert "up day h" in shown and "up wk h" in shown and "None" not in shown
            line = next(line for line in shown.splitlines() if uuid_like[0] in line)
            assert re.search(r"(active|INACTIVE) +\d+\.\d\d +\d+\.\d\d", line), line
            assert not app.query_one("#right").display  # narrow: the side pane waits for `d`
            await pilot.press("d")
            await until(pilot, lambda: app.query_one("#right").display)
            reports.focus()
            assert at_cursor(reports) == first
            newer = app.service.trigger_report(as_of="2023-01-24T00:00:00Z")[:8]
            await until(pilot, lambda: [newer, "Complete"] in [row[:2] for row in shown_rows(reports)])
            assert shown_rows(reports)[0][0] == newer and at_cursor(reports) == first
            await pilot.press("e")
            exports = tmp_path / "exports"
            await until(pilot, lambda: any(exports.glob(f"report-{first}*.csv")))
            assert not any(exports.glob(f"report-{newer}*.csv"))

            stores.focus()
            await pilot.press("d", "home")
            before = at_cursor(stores)
            await pilot.press("s")  # sort by status: the cursor stays on its store, the detail with it
            assert "status ▲" in screen_text(app)
            assert at_cursor(stores) == before
            await until(pilot, lambda: detail_heading(app) == before)
            await pilot.press("s", "s")
            await pilot.press("down")
            await until(pilot, lambda: detail_heading(app) == at_cursor(stores))

    asyncio.run(scenario())


def test_storemon_with_serve_options_and_no_command_opens_the_console(data, tmp_path):
    done = subprocess.run([sys.executable, "-m", "storemon", "--port", "0", "--data-dir", str(data), "--db",
                           str(tmp_path / "c.db"), "--export-dir", str(tmp_path), "--notify", "nosuchservice://x"],
                          capture_output=True, text=True, timeout=300)
    # parsed as the console's command line (--export-dir is the console's alone), then its option check ran
    assert done.returncode == 1 and "apprise does not understand" in done.stderr
    assert "invalid choice" not in done.stderr


class OneWidgetApp(App):
    """An app showing one widget alone."""

    def __init__(self, widget) -> None:
        super().__init__()
        self._one_widget = widget

    def compose(self):
        yield self._one_widget


def test_header_during_the_first_ingest_shows_its_progress_and_no_none():
    async def scenario():
        app = OneWidgetApp(StatusBar())
        async with app.run_test(size=(120, 5)) as pilot:
            bar = app.query_one(StatusBar)
            bar.show(as_of=None, refresh=Refresh(None, "2023-01-25T18:00:00.000Z", None, "running"),
                     next_refresh=None, api="http://127.0.0.1:8081", progress=("store_status.csv", 50, 200))
            await pilot.pause()
            return str(bar.render())

    text = asyncio.run(scenario())
    assert "refresh running since 2023-01-25 18:00:00 UTC: store_status.csv 25%" in text
    assert "None" not in text and "(no data yet)" in text and "no report yet" in text


def test_header_while_the_stores_are_read_says_loading_not_no_data():
    async def scenario():
        app = OneWidgetApp(StatusBar())
        async with app.run_test(size=(120, 5)) as pilot:
            bar = app.query_one(StatusBar)
            bar.show(as_of=None, refresh=Refresh(None, "2023-01-25T18:00:00.000Z", "2023-01-25T18:00:05.000Z", "ok"),
                     next_refresh=None, api="http://127.0.0.1:8081", loading=True)
            await pilot.pause()
            return str(bar.render())

    text = asyncio.run(scenario())
    assert "data as of (loading...)" in text and "uptime figures: (loading...)" in text
    assert "no data yet" not in text and "no report yet" not in text and "None" not in text


def test_a_large_stores_table_draws_the_lines_under_the_cursor():
    n, as_of = 50_000, 1_700_000_000_000_000
    i = np.arange(n)
    fleet = Fleet(as_of, 1, np.array([f"store-{k:05d}" for k in range(n)], dtype=object),
                  np.full(n, "America/Chicago", dtype=object), np.full(n, "Mon 10:00", dtype=object), i % 3 == 0,
                  i % 5 != 0, as_of - 60_000_000 * i, (i % 24).astype(float), np.full(n, np.nan), None)

    async def scenario():
        app = OneWidgetApp(StoresTable())
        async with app.run_test(size=(120, 20)) as pilot:
            table = app.query_one(StoresTable)
            table.focus()
            table.show(fleet)
            await pilot.pause()
            assert "store-00000" in screen_text(app) and "store-49999" not in screen_text(app)
            await pilot.press("end")
            await pilot.pause()
            assert at_cursor(table) == "store-49999"
            assert table.cells_at(table.cursor_row)[2:4] == ("7.00", "")  # 49999 % 24 h, no week figure
            shown = screen_text(app)
            assert "store-49999" in shown and "store-00000" not in shown
            await pilot.press("pageup", "up")
            await pilot.pause()
            above = at_cursor(table)
            assert "store-49980" < above < "store-49999" and above in screen_text(app)
            await pilot.click(StoresTable, offset=(40, 0))  # the status header: sort by status
            await pilot.pause()
            assert at_cursor(table) == above and above in screen_text(app)  # the cursor kept its store
            assert table.header_labels()[1] == "status ▲"
            first = shown_rows(table)[0]
            assert first[1] == "INACTIVE" and first[4] == "open"  # down during its hours: first
            table.set_filter("store-0001")
            await pilot.pause()
            assert sorted(row[0] for row in shown_rows(table)) == [f"store-{i:05d}" for i in range(10, 20)]

    asyncio.run(scenario())
