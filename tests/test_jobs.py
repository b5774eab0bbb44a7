"""The engine as a library (progress, cancel) and report jobs across a stop and a start."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, write_data

from storemon.db import open_db
from storemon.engine import ReportCancelled, compute_report
from storemon.generate import generate
from storemon.ingest import ingest
from storemon.jobs import REPORT_NICENESS, compute_in_process
from storemon.polls import store_key_range
from storemon.service import Service, ServiceConfig
from storemon.snapshot import data_state, load_snapshot


def loaded_snapshot(directory, db_path):
    db = open_db(db_path)
    ingest(db, directory)
    state = data_state(db)
    snapshot = load_snapshot(db, state.max_poll_ts, *store_key_range(db), state)
    db.close()
    return snapshot


def test_progress_rises_to_one_and_cancel_stops(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00", "active"), ("T", "2023-01-23 11:00:00", "inactive")])
    snapshot = loaded_snapshot(data_dir, db_path)
    seen: list[float] = []
    compute_report(snapshot, progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    cancel = threading.Event()

    def cancel_midway(fraction):
        if fraction >= 0.3:
            cancel.set()

    with pytest.raises(ReportCancelled):
        compute_report(snapshot, progress=cancel_midway, cancel=cancel)


def test_bad_interpolation_is_refused(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00", "active")])
    with pytest.raises(ValueError, match="interpolation"):
        compute_report(loaded_snapshot(data_dir, db_path), interpolation="linear")


def report_process_niceness() -> list[int]:
    """The niceness of each process this one spawned with multiprocessing (the report pool's), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat, cmdline = (entry / "stat").read_text(), (entry / "cmdline").read_bytes()
        except (OSError, NotADirectoryError):
            continue
        fields = stat.rsplit(")", 1)[1].split()  # from the state, the stat file's third field, on
        if int(fields[1]) == os.getpid() and b"spawn_main" in cmdline:
            found.append(int(fields[16]))
    return found


def test_a_report_running_at_stop_is_left_queued_and_completes_at_the_next_start(tmp_path):
    data = tmp_path / "data"
    generate(data, stores=1500, days=8, seed=12)
    config = ServiceConfig(data, tmp_path / "stop.db", port=0, workers=1)
    service = Service(config)
    service.start()
    assert service.refresher.first_done.wait(HANG_GUARD_S)
    report_id = service.trigger_report()
    deadline = time.monotonic() + HANG_GUARD_S
    while service.report_status(report_id)["status"] != "Running" and time.monotonic() < deadline:
        time.sleep(0.01)
    # Running from before its process starts (seconds, however fast the machine) until its CSV is stored
    assert service.report_status(report_id)["status"] == "Running"
    service.stop()
    assert service.report_status(report_id)["status"] == "Queued"

    again = Service(config)
    again.start()
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while again.report_status(report_id)["status"] != "Complete" and time.monotonic() < deadline:
            time.sleep(0.05)
        status = again.report_status(report_id)
        assert status["status"] == "Complete" and status["row_count"] == 1500
        # the process that computed it (the one worker) runs at a lower priority than the service, which answers
        # the console and the API
        assert report_process_niceness() == [min(os.nice(0) + REPORT_NICENESS, 19)]
    finally:
        again.stop()


def test_a_running_report_never_holds_the_write_lock(tmp_path):
    data = tmp_path / "data"
    generate(data, stores=1500, days=8, seed=13)
    db_path = tmp_path / "lock.db"
    db = open_db(db_path)
    ingest(db, data)
    db.execute("INSERT INTO reports (id, status, progress, interpolation, created) "
               "VALUES ('r', 'Running', 0, 'previous', '2023-01-01T00:00:00Z')")
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.update(compute_in_process(str(db_path), "r", None, "previous")))
    writer = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    worker.start()
    attempts, refused = 0, 0
    while worker.is_alive():
        attempts += 1
        try:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("ROLLBACK")
        except sqlite3.OperationalError:  # "database is locked": someone holds the write lock right now
            refused += 1
        time.sleep(0.002)
    worker.join()
    assert outcome["rows"] == 1500
    assert attempts > 10 and refused <= 5, f"the write lock was refused {refused} times in {attempts}"
    assert db.execute("SELECT progress FROM reports WHERE id = 'r'").fetchone()[0] > 0
