"""Snapshot of the console's main screen on a fixed data set, a fixed report and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime

from storemon.compute import report_from_db
from storemon.console.app import StoremonApp
from storemon.console.stores_table import StoresTable
from storemon.db import open_db
from storemon.generate import generate
from storemon.ingest import ingest
from storemon.parse import format_instant
from storemon.service import Service, ServiceConfig


def fixed_app(tmp_path) -> StoremonApp:
    data = tmp_path / "data"
    generate(data, stores=16, days=8, seed=2)
    db_path = tmp_path / "snap.db"
    db = open_db(db_path)
    ingest(db, data)
    db.execute("UPDATE ingest_runs SET started = '2023-01-25T18:00:00.000Z', finished = '2023-01-25T18:00:01.000Z'")
    report = report_from_db(db)[0]
    db.execute(
        "INSERT INTO reports (id, status, progress, interpolation, as_of, data_version, created, started, finished,"
        " row_count, csv) VALUES (?, 'Complete', 1, 'previous', ?, 1, ?, ?, ?, ?, ?)",
        ["00000000-0000-4000-8000-000000000001", format_instant(report.as_of_us), "2023-01-25T18:00:02.000Z",
         "2023-01-25T18:00:02.000Z", "2023-01-25T18:00:02.500Z", len(report.store_ids), report.to_csv()],
    )
    db.close()
    service = Service(ServiceConfig(data, db_path, port=8081))
    return StoremonApp(service, start_service=False, clock=lambda: datetime(2023, 1, 25, 18, 0, 5, tzinfo=UTC))


def filled(app: StoremonApp):
    async def run_before(pilot):
        for _ in range(500):
            await pilot.pause(0.02)
            if app.query_one(StoresTable).row_count == 16 and "zone" in str(app.query_one("#detail").render()):
                break
        await app.workers.wait_for_complete()
        await pilot.pause()

    return run_before


def test_main_screen(snap_compare, tmp_path):
    app = fixed_app(tmp_path)
    assert snap_compare(app, terminal_size=(200, 50), run_before=filled(app))


def test_main_screen_at_100x30(snap_compare, tmp_path):
    app = fixed_app(tmp_path)
    assert snap_compare(app, terminal_size=(100, 30), run_before=filled(app))
