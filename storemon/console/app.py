"""The console App: the storemon service in-process, its stores, the selected store and the reports.

Long work (loading the fleet, a store's detail, exports) runs in thread workers that post messages back; the
service's threads report changes with `post_message`. Nothing here touches a widget from another thread.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input
from textual.worker import Worker, WorkerState

from storemon.console.help_screen import HelpScreen
from storemon.console.incidents_screen import RECENT, IncidentsScreen, ordered
from storemon.console.messages import DetailLoaded, FleetLoaded, IncidentsLoaded, ServiceChanged
from storemon.console.reports_table import ReportsTable
from storemon.console.status_bar import StatusBar
from storemon.console.store_detail import StoreDetailPane
from storemon.console.stores_table import COLUMNS, StoresTable
from storemon.fleet import Fleet, load_fleet, store_detail
from storemon.parse import format_instant
from storemon.reports import COMPLETE, QUEUED, RUNNING
from storemon.service import Service

log = logging.getLogger(__name__)

REPORTS_PANE_PERIOD_S = 0.25
DETAIL_DELAY_S = 0.12
NARROW_WIDTH = 150  # below this, the detail and reports pane is hidden until `d` shows it


class StoremonApp(App):
    """The operator's console."""

    TITLE = "storemon"
    CSS = """
    #main { height: 1fr; }
    #left { width: 1fr; }
    #right { width: 66; }
    .narrow #right { display: none; }
    .narrow.side #right { display: block; width: 50%; }
    #filter { display: none; height: 3; }
    #filter.visible { display: block; }
    """
    BINDINGS = [
        Binding("r", "run_report", "Run report"),
        Binding("e", "export", "Export"),
        Binding("u", "refresh", "Refresh"),
        Binding("i", "incidents", "Incidents"),
        Binding("slash", "filter", "Filter"),
        Binding("d", "toggle_side", "Detail"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self, service: Service, *, export_dir: Path = Path("reports"), log_path: Path | None = None,
                 start_service: bool = True, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__()
        self.service = service
        self.export_dir = Path(export_dir)
        self.log_path = log_path
        self.start_service = start_service
        self.clock = clock or (lambda: datetime.now(UTC))
        self._fleet_wanted = False
        self._reports_wanted = False
        self._detail_for: str | None = None
        self._unmounted = False
        self._detail_timer: Timer | None = None
        self.down: set[str] | None = None
        self.fleet: Fleet | None = None  # the last one loaded: the next load reuses what has not changed

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Input(placeholder="filter stores by id (Enter keeps it, Escape clears)", id="filter")
                yield StoresTable(id="stores")
            with Vertical(id="right"):
                yield StoreDetailPane("Loading...", id="detail")
                yield ReportsTable(id="reports")
        yield Footer()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < NARROW_WIDTH, "narrow")

    def on_mount(self) -> None:
        self.set_class(self.size.width < NARROW_WIDTH, "narrow")
        self.service.listen(lambda change: self.post_message(ServiceChanged(change)))
        if self.start_service:
            self.service.start(require_api=False)
            if self.service.api_error:
                self.notify(f"API not started: {self.service.api_error}", severity="warning", timeout=10)
        self.query_one(StoresTable).focus()
        # What exists by now (modules, the screen, the service) lives as long as the console: moved out of the
        # collector's reach, a full collection no longer walks it (it held the screen for seconds at 136,000 stores).
        gc.freeze()
        self.load_fleet()
        self.update_reports()
        self.update_status()
        self.set_interval(1.0, self.tick)
        self.set_interval(REPORTS_PANE_PERIOD_S, self.refresh_reports_pane)

    def on_unmount(self) -> None:
        self._unmounted = True
        if self.start_service:
            self.service.stop()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Run report", "Compute a report on the latest data (r)", self.action_run_report)
        yield SystemCommand("Export report", "Write the selected report to a CSV file (e)", self.action_export)
        yield SystemCommand("Refresh data", "Re-ingest the data directory now (u)", self.action_refresh)
        yield SystemCommand("Incidents", "Stores down now during business hours, then recent outages (i)",
                            self.action_incidents)
        yield SystemCommand("Sort stores", "Sort the stores by the next column (s; S reverses)", self.action_sort)
        yield SystemCommand("Reverse sort", "Reverse the stores' order (S)", self.action_reverse_sort)
        yield SystemCommand("Detail pane", "Show or hide the detail and reports pane on a narrow screen (d)",
                            self.action_toggle_side)
        yield SystemCommand("Filter stores", "Show only the stores whose id contains some text (/)",
                            self.action_filter)
        yield SystemCommand("Help", "Keys, and where the log and exports are (?)", self.action_help)

    # Workers: they read the database on their own thread and post the result back.

    @work(thread=True, exclusive=True, group="fleet", exit_on_error=False)
    def load_fleet(self) -> None:
        self.post_message(FleetLoaded(load_fleet(self.service.db(), self.fleet)))

    @work(thread=True, exclusive=True, group="incidents", exit_on_error=False)
    def load_incidents(self) -> None:
        ongoing = self.service.incidents(None, None, True, 10_000)
        recent = self.service.incidents(None, None, False, RECENT)
        self.post_message(IncidentsLoaded(ordered(ongoing, recent)))

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def load_detail(self, store_id: str) -> None:
        self.post_message(DetailLoaded(store_detail(self.service.db(), store_id)))

    @work(thread=True, group="export", exit_on_error=False)
    def export_report(self, report_id: str) -> None:
        csv_text = self.service.report_csv(report_id)
        if csv_text is None:
            self.call_from_thread(self.notify, f"report {report_id} has no CSV", severity="error")
            return
        path = (self.export_dir / f"report-{report_id}.csv").resolve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(csv_text, encoding="utf-8")
        except OSError as exc:
            self.call_from_thread(self.notify, f"export failed: {exc.strerror or exc}", severity="error")
            return
        log.info("exported report %s to %s", report_id, path)
        self.call_from_thread(self.notify, f"exported report {report_id[:8]} to {path}", timeout=8)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed (the database unreachable, say) is a notice and a log line, never an exit."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            log.error("console worker %s failed: %s: %s", event.worker.name, type(error).__name__, error,
                      exc_info=error)
            self.notify(f"{event.worker.group} failed: {error} (see the log)", severity="error", timeout=10)

    # Messages.

    def want_fleet(self) -> None:
        """Reload the stores soon: changes arriving together (reports finishing, a refresh) cost one reload."""
        self._fleet_wanted = True

    def on_fleet_loaded(self, message: FleetLoaded) -> None:
        self.fleet = message.fleet
        tables = self.query(StoresTable)
        if not tables:  # the app is closing and its widgets are gone
            return
        table = tables.first()
        first_fill = table.row_count == 0
        table.show(message.fleet)
        if message.fleet.as_of_us is not None:
            self.announce_new_incidents(message.fleet.down())
        self.update_status()
        if first_fill and table.row_count:
            self.load_detail(table.selected_store())

    def announce_new_incidents(self, down: set[str]) -> None:
        """Ring the bell and say which stores went down since the last look at the data (not at the first)."""
        new = sorted(down - self.down) if self.down is not None else []
        self.down = down
        if new:
            self.bell()
            names = ", ".join(new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
            self.notify(f"down during business hours: {names} (press i)", title="New incident",
                        severity="error", timeout=15)

    def on_incidents_loaded(self, message: IncidentsLoaded) -> None:
        self.push_screen(IncidentsScreen(message.incidents), self.show_store)

    def show_store(self, store_id: str | None) -> None:
        """Select `store_id` in the stores table (clearing a filter that hides it) and show its detail."""
        if store_id is None:
            return
        table = self.query_one(StoresTable)
        if not table.select_store(store_id):
            self.action_clear_filter()
            table.select_store(store_id)
        table.focus()
        self.load_detail(store_id)

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        for pane in self.query(StoreDetailPane):
            pane.show(message.detail)

    def on_service_changed(self, message: ServiceChanged) -> None:
        if self._screen_gone():
            return
        change = message.change
        if change.kind == "report":
            self._reports_wanted = True
            return
        self.update_status()
        if self.query_one(StoresTable).row_count == 0:
            self.load_fleet()
        elif change.refresh and change.refresh.changed:
            self.want_fleet()

    def on_stores_table_highlighted(self, event: StoresTable.Highlighted) -> None:
        self._detail_for = event.store_id
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(DETAIL_DELAY_S, self._load_selected_detail)

    def _load_selected_detail(self) -> None:
        """Load the selected store's detail once the cursor rests (not for every row it passes)."""
        self._detail_timer = None
        if self._detail_for is not None:
            self.load_detail(self._detail_for)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one(StoresTable).set_filter(event.value.strip())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(StoresTable).focus()

    # Periodic updates.

    def _screen_gone(self) -> bool:
        """Whether the main screen's widgets are going (the console is closing): timers then do nothing. Textual
        removes them one by one, so each widget the timers use is looked for, not one standing for all."""
        return self._unmounted or not all(self.query(widget) for widget in (StatusBar, StoresTable, ReportsTable))

    def tick(self) -> None:
        if self._screen_gone():
            return
        if self._fleet_wanted and not any(w.group == "fleet" and w.is_running for w in self.workers):
            self._fleet_wanted = False
            self.load_fleet()
        self.update_status()
        if any(r["status"] in (QUEUED, RUNNING) for r in self.query_one(ReportsTable).reports.values()):
            self._reports_wanted = True

    def refresh_reports_pane(self) -> None:
        """Apply report changes (many may arrive together) a few times a second at most."""
        if self._reports_wanted and not self._screen_gone():
            self._reports_wanted = False
            self.update_reports()

    def update_status(self) -> None:
        if self._screen_gone():
            return
        refresh = self.service.last_refresh()
        api = self.service.api_address or f"not running ({self.service.api_error or 'not started'})"
        fleet = self.fleet
        loaded = fleet is not None
        self.query_one(StatusBar).show(as_of=format_instant(fleet.as_of_us) if loaded else None, refresh=refresh,
                                       next_refresh=self.service.refresher.next_run, api=api,
                                       down=None if self.down is None else len(self.down),
                                       report=fleet.report if loaded else None,
                                       progress=self.service.refresher.progress, loading=not loaded)

    def update_reports(self) -> None:
        table = self.query_one(ReportsTable)
        before = {i for i, r in table.reports.items() if r["status"] == COMPLETE}
        table.show(self.service.recent_reports(200), self.clock())
        if any(r["status"] == COMPLETE and i not in before for i, r in table.reports.items()):
            self.want_fleet()

    # Actions.

    def action_run_report(self) -> None:
        report_id = self.service.trigger_report()
        self.notify(f"report {report_id[:8]} queued")
        self.update_reports()

    def action_export(self) -> None:
        reports = self.query_one(ReportsTable)
        selected = reports.selected_report() if reports.has_focus else None
        if selected is None or reports.reports.get(selected, {}).get("status") != COMPLETE:
            # the latest complete report as the database has it (the pane may not have caught up yet)
            selected = next((r["id"] for r in self.service.recent_reports(50) if r["status"] == COMPLETE), None)
        if selected is None:
            self.notify("no complete report to export yet: press r", severity="warning")
            return
        self.export_report(selected)

    def action_refresh(self) -> None:
        self.service.refresh_now(0)
        self.notify("refreshing the data...")

    def action_incidents(self) -> None:
        self.load_incidents()

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.add_class("visible")
        field.focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.value = ""
        field.remove_class("visible")
        table = self.query_one(StoresTable)
        table.set_filter("")  # now, not when the Input's change message arrives
        table.focus()

    def action_toggle_side(self) -> None:
        self.toggle_class("side")

    def action_sort(self) -> None:
        table = self.query_one(StoresTable)
        keys = [key for key, _ in COLUMNS]
        table.sort_by(keys[(keys.index(table.sort_column) + 1) % len(keys)])
        self.notify(f"stores sorted by {dict(COLUMNS)[table.sort_column]}", timeout=2)

    def action_reverse_sort(self) -> None:
        table = self.query_one(StoresTable)
        table.sort_by(table.sort_column)

    def action_help(self) -> None:
        self.push_screen(HelpScreen({
            "log file": str(self.log_path or "(not logging to a file)"),
            "database": str(Path(self.service.config.db_path).resolve()),
            "data": str(Path(self.service.config.data_dir).resolve()),
            "exports": str(self.export_dir.resolve()),
            "API": self.service.api_address or f"not running ({self.service.api_error})",
        }))
