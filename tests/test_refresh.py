"""The hourly refresh against a running service with a short interval: changes followed, faults survived."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S
from test_server import call, free_port, serve, wait_ready, wait_report

from storemon.compute import report_from_db
from storemon.db import open_db
from storemon.generate import generate
from storemon.ingest import ingest
from storemon.service import Service, ServiceConfig


def from_scratch(data_dir, tmp_path) -> str:
    """The report `storemon ingest` + `storemon report` give on a copy of these files, from an empty database."""
    copy = tmp_path / f"scratch-{time.monotonic_ns()}"
    shutil.copytree(data_dir, copy)
    db = open_db(copy / "db.sqlite")
    try:
        assert ingest(db, copy, strict=True).ok
        return report_from_db(db)[0].to_csv()
    finally:
        db.close()


def wait_until(predicate, timeout=HANG_GUARD_S, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def api_report(base) -> str:
    status, body = call(f"{base}/trigger_report")
    status, body = wait_report(base, body["report_id"])
    assert status == 200
    return body["data"]


def refreshes_after(base, run_id, matching=lambda run: True):
    """Wait until a refresh that started after refresh `run_id` (the latest, maybe still running) has finished;
    return the first of the refreshes since `run_id` that `matching` accepts."""
    def done():
        runs = call(f"{base}/refreshes")[1]["refreshes"]
        if not any(r["id"] >= run_id + 2 and r["finished"] for r in runs):
            return None
        return next((r for r in reversed(runs) if r["id"] > run_id and r["finished"] and matching(r)), None)
    return wait_until(done, what=f"a refresh after #{run_id}")


def changed(run):
    return any(f["action"] != "unchanged" for f in run["files"]) or run["error"]


@pytest.fixture
def data(tmp_path):
    directory = tmp_path / "data"
    generate(directory, stores=50, days=8, seed=21)
    return directory


@pytest.fixture
def service(data, tmp_path):
    svc = Service(ServiceConfig(data, tmp_path / "live.db", port=0, refresh_interval=0.3, busy_timeout=0.5))
    svc.start()
    assert svc.refresher.first_done.wait(HANG_GUARD_S)
    yield svc
    svc.stop()


def file_action(run, name) -> str:
    return next(f["action"] for f in run["files"] if f["name"] == name)


def last_run_id(base) -> int:
    return call(f"{base}/refreshes")[1]["refreshes"][0]["id"]


def test_follows_appended_polls_drop_files_and_new_hours(service, data, tmp_path):
    base = service.api_address
    assert api_report(base) == from_scratch(data, tmp_path)

    run = last_run_id(base)
    with (data / "store_status.csv").open("a") as handle:
        ids = [line.split(",")[0] for line in (data / "timezones.csv").read_text().splitlines()[1:6]]
        for store_id in ids:
            handle.write(f"{store_id},inactive,2023-01-25 19:00:00 UTC\n")
    latest = refreshes_after(base, run, changed)
    assert latest["files"][0]["action"] == "appended" and latest["files"][0]["rows_loaded"] == 5
    assert call(f"{base}/health")[1]["data_as_of"] == "2023-01-25T19:00:00.000000Z"
    assert api_report(base) == from_scratch(data, tmp_path)

    run = last_run_id(base)
    (data / "store_status_0100.csv").write_text(
        "store_id,timestamp_utc,status\n" + "".join(f"{i},2023-01-25 19:30:00Z,active\n" for i in ids)
    )
    refreshes_after(base, run)
    assert api_report(base) == from_scratch(data, tmp_path)

    run = last_run_id(base)
    (data / "menu_hours.csv").write_text(
        "store_id,dayOfWeek,start_time_local,end_time_local\n" + "".join(f"{i},2,08:00,20:00\n" for i in ids)
    )
    refreshes_after(base, run)
    report = api_report(base)
    assert report == from_scratch(data, tmp_path)
    assert call(f"{base}/reports")[1]["reports"][0]["data_version"] == call(f"{base}/health")[1]["data_version"]


def test_broken_hours_file_keeps_old_hours_and_health_names_it(service, data, tmp_path):
    base = service.api_address
    before = api_report(base)
    good_hours = (data / "menu_hours.csv").read_text()
    run = last_run_id(base)
    (data / "menu_hours.csv").write_text("store_id,dayOfWeek,start_time_local\nx,1,09:00\n")
    refreshes_after(base, run)
    health = call(f"{base}/health")[1]
    assert health["status"] == "degraded"
    assert any("menu_hours.csv" in f and "end_time_local" in f for f in health["failing"])
    assert api_report(base) == before  # old hours kept

    run = last_run_id(base)
    (data / "menu_hours.csv").write_text(good_hours)
    refreshes_after(base, run)
    assert call(f"{base}/health")[1]["status"] == "ok"


def test_half_written_last_line_is_left_for_the_next_run(service, data, tmp_path):
    base = service.api_address
    polls_before = call(f"{base}/health")[1]["polls"]
    store_id = (data / "timezones.csv").read_text().splitlines()[1].split(",")[0]
    run = last_run_id(base)
    with (data / "store_status.csv").open("a") as handle:
        handle.write(f"{store_id},inactive,2023-01-25 2")
    latest = refreshes_after(base, run, changed)
    assert "left for the next read" in latest["files"][0]["notes"][0]
    assert call(f"{base}/health")[1]["polls"] == polls_before
    run = last_run_id(base)
    with (data / "store_status.csv").open("a") as handle:
        handle.write("0:00:00 UTC\n")
    refreshes_after(base, run)
    assert call(f"{base}/health")[1]["polls"] == polls_before + 1
    assert api_report(base) == from_scratch(data, tmp_path)


def test_missing_files_and_locked_database_do_not_stop_the_scheduler(service, data, tmp_path):
    base = service.api_address
    before = api_report(base)
    moved = tmp_path / "moved.csv"
    shutil.move(data / "timezones.csv", moved)
    run = last_run_id(base)
    assert "timezones.csv: file is missing" in refreshes_after(base, run, changed)["error"]
    shutil.move(moved, data / "timezones.csv")
    restored = refreshes_after(base, run, lambda r: r["status"] == "ok")  # the file is back as it was: unchanged

    blocker = sqlite3.connect(service.config.db_path, timeout=5)
    blocker.execute("BEGIN EXCLUSIVE")
    os.utime(data / "menu_hours.csv")  # something to do for the next refresh
    try:
        wait_until(lambda: service.refresher.last_result and not service.refresher.last_result.ok
                   and "database" in service.refresher.last_result.errors[0], what="a locked-database failure")
    finally:
        blocker.rollback()
        blocker.close()
    hours_read = refreshes_after(base, restored["id"], lambda r: r["status"] == "ok" and changed(r))
    assert file_action(hours_read, "menu_hours.csv") == "read"
    assert any(r["status"] == "failed" and "locked" in (r["error"] or "")
               for r in call(f"{base}/refreshes")[1]["refreshes"])
    assert api_report(base) == before


def test_refresh_now_over_http(service, data):
    base = service.api_address
    with (data / "store_status.csv").open("a") as handle:
        handle.write("new-store,active,2023-01-25 20:00:00 UTC\n")
    status, body = call(f"{base}/refresh", {"wait": 30}, method="POST")
    assert status == 200 and body["refresh"]["ok"]
    assert call(f"{base}/health")[1]["data_as_of"] == "2023-01-25T20:00:00.000000Z"


def test_kill_9_during_a_large_refresh_then_restart(tmp_path):
    data = tmp_path / "big"
    generate(data, stores=3000, days=8, seed=3)
    db_path = tmp_path / "k.db"
    port = free_port()
    process = serve(data, db_path, port)
    wal = Path(f"{db_path}-wal")
    try:
        def refresh_running():
            try:
                conn = sqlite3.connect(db_path, timeout=1)
                try:
                    return conn.execute("SELECT 1 FROM ingest_runs WHERE status = 'running'").fetchone()
                finally:
                    conn.close()
            except sqlite3.Error:
                return None
        wait_until(refresh_running, what="the start-up refresh")
        recorded = wal.stat().st_size  # the running row is in; polls are read next, then written in one transaction
        wait_until(lambda: wal.stat().st_size > recorded + 1_000_000, timeout=900, what="the refresh writing polls")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=120)
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    process = serve(data, db_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process, timeout=120)
        wait_until(lambda: call(f"{base}/health")[1]["last_refresh"]["status"] == "ok", timeout=900,
                   what="a good refresh")
        assert api_report(base) == from_scratch(data, tmp_path)
        statuses = [r["status"] for r in call(f"{base}/refreshes")[1]["refreshes"]]
        assert "interrupted" in statuses
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
    assert process.returncode == 0


def test_serve_rejects_bad_refresh_interval(data, tmp_path):
    result = subprocess.run([sys.executable, "-m", "storemon", "serve", "--data-dir", str(data), "--db",
                             str(tmp_path / "x.db"), "--refresh-interval", "0"], capture_output=True, text=True)
    assert result.returncode == 1 and "refresh-interval" in result.stderr and "Traceback" not in result.stderr
