"""The engine as a library (progress, cancel) and report jobs across a stop and a start."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import write_data

from storemon.db import open_db
from storemon.engine import ReportCancelled, compute_report
from storemon.generate import generate
from storemon.ingest import ingest
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


def test_a_report_running_at_stop_is_left_queued_and_completes_at_the_next_start(tmp_path):
    data = tmp_path / "data"
    generate(data, stores=4000, days=8, seed=12)
    config = ServiceConfig(data, tmp_path / "stop.db", port=0, workers=1)
    service = Service(config)
    service.start()
    assert service.refresher.first_done.wait(120)
    report_id = service.trigger_report()
    deadline = time.monotonic() + 60
    while service.report_status(report_id)["status"] != "Running" and time.monotonic() < deadline:
        time.sleep(0.01)
    service.stop()
    assert service.report_status(report_id)["status"] == "Queued"

    again = Service(config)
    again.start()
    try:
        deadline = time.monotonic() + 120
        while again.report_status(report_id)["status"] != "Complete" and time.monotonic() < deadline:
            time.sleep(0.05)
        status = again.report_status(report_id)
        assert status["status"] == "Complete" and status["row_count"] == 4000
    finally:
        again.stop()
