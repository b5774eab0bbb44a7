"""The report on a real Dask cluster (a LocalCluster of two worker processes) equals the embedded report."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import distributed
import pytest
from conftest import POLL_HEADER, ingest_dir, report_csv, write_csv, write_data
from test_server import call, free_port, serve, wait_ready, wait_report

from storemon import polls
from storemon.cli import main
from storemon.cluster import ClusterError, cluster_report
from storemon.db import open_db
from storemon.parse import parse_instant

SAMPLE = Path(__file__).resolve().parent.parent / "data"
SMALL_BLOCKS = 64 * 1024  # several pieces per poll file, so that duplicates and edges cross pieces


pytestmark = pytest.mark.xdist_group("cluster")  # one pytest worker runs them all, on one cluster


def two_worker_cluster() -> distributed.LocalCluster:
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                    silence_logs=logging.ERROR)


@pytest.fixture(scope="module")
def client():
    cluster = two_worker_cluster()
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


def dask_csv(client, data_dir, as_of=None, interpolation="previous", block_bytes=SMALL_BLOCKS) -> str:
    return cluster_report(client, str(data_dir), parse_instant(as_of) if as_of else None, interpolation,
                          block_bytes=block_bytes).report.to_csv()


FORMATS = ["{:%Y-%m-%d %H:%M:%S.%f} UTC", "{:%Y-%m-%dT%H:%M:%SZ}", "{:%Y-%m-%d %H:%M:%S}", "{:%Y-%m-%dT%H:%M}"]


@pytest.fixture(scope="module")
def dst_week(tmp_path_factory) -> Path:
    """Forty stores over the US spring-forward week of 2023, in four timestamp formats and several zones, with bad
    rows, duplicates inside a file and across two files, a store silent since before the week, a store whose only
    polls come after the report's as_of, overnight and 24:00 hours, a duplicated and an unknown zone."""
    directory = tmp_path_factory.mktemp("dst")
    start = datetime(2023, 3, 7, tzinfo=UTC)
    zones = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "Asia/Kolkata"]
    polls, later, hours, zone_rows = [], [], [], []
    for store in range(40):
        store_id = f"s{store:02d}"
        t = start + timedelta(minutes=7 * store)
        step = 0
        while t < start + timedelta(days=9):
            status = "active" if (step * (store + 3)) % 11 not in (0, 1, 2) else "inactive"
            polls.append((store_id, FORMATS[step % 4].format(t), status))
            if step % 9 == 0:  # a duplicate instant in the same file: the later line wins
                flipped = "inactive" if status == "active" else "active"
                polls.append((store_id, FORMATS[(step + 1) % 4].format(t), flipped))
            if step % 13 == 0:  # the same instant in a later file wins over both
                later.append((store_id, FORMATS[(step + 2) % 4].format(t), "active"))
            step += 1
            t += timedelta(minutes=41 + 17 * ((step + store) % 5))
        for day in range(7):
            if store % 4 == 0:
                hours.append((store_id, day, "22:00", "06:00"))
            elif store % 4 == 1:
                hours.append((store_id, day, "09:00:00", "24:00"))
            elif store % 4 == 2 and day < 5:
                hours.append((store_id, day, "01:30", "03:30"))
        zone_rows.append((store_id, zones[store % len(zones)]))
    polls += [("silent", "2023-02-01 10:00:00 UTC", "inactive"), ("future", "2023-03-20 10:00:00 UTC", "active")]
    polls += [("s01", "2023-03-10 25:00:00", "active"), ("s02", "2023-03-10 10:00:00", "open"), ("", "2023-03-10", "x")]
    zone_rows += [("s03", "Pacific/Honolulu"), ("s05", "Mars/Olympus")]
    hours += [("s06", 9, "10:00", "11:00"), ("s07", 2, "10:00", "31:00")]
    write_data(directory, polls, hours, zone_rows)
    write_csv(directory / "store_status_2.csv", POLL_HEADER, later)
    with (directory / "store_status.csv").open("a") as handle:
        handle.write("s08,2023-03-11 10:00:00,active,extra\n")
    return directory


def test_sample_data_both_workers_and_interpolations(client, tmp_path):
    db = tmp_path / "sample.db"
    assert ingest_dir(SAMPLE, db).ok
    with distributed.get_task_stream(client) as tasks:
        assert dask_csv(client, SAMPLE, block_bytes=1024 * 1024) == report_csv(db)
    assert len({task["worker"] for task in tasks.data}) == 2
    as_of = "2023-01-24T10:00:00Z"
    assert dask_csv(client, SAMPLE, as_of, "nearest", 1024 * 1024) == report_csv(db, as_of, "nearest")


def test_dst_week_with_bad_rows_formats_and_duplicates(client, dst_week, tmp_path):
    db = tmp_path / "dst.db"
    result = ingest_dir(dst_week, db)
    assert result.ok and sum(f.rows_skipped for f in result.files) >= 5
    run = cluster_report(client, str(dst_week), block_bytes=SMALL_BLOCKS)
    assert run.report.to_csv() == report_csv(db)
    assert sum(f.rows_skipped for f in run.files) == sum(f.rows_skipped for f in result.files)
    for as_of, interpolation in (("2023-03-13T15:00:00Z", "previous"), ("2023-03-12T09:30:00Z", "nearest")):
        expected = report_csv(db, as_of, interpolation)
        assert "future" not in expected and "silent" in expected
        assert dask_csv(client, dst_week, as_of, interpolation) == expected


def test_exported_parquet_gives_the_same_report(client, dst_week, tmp_path):
    db_path = tmp_path / "dst.db"
    assert ingest_dir(dst_week, db_path).ok
    db = open_db(db_path)
    try:
        stored_polls = polls.counts(db)[1]
    finally:
        db.close()
    done = storemon("export", "--db", str(db_path), "--parquet", str(tmp_path / "parquet"))
    assert done.returncode == 0, done.stderr
    assert f"wrote {stored_polls} polls" in done.stdout and "and 40 zones" in done.stdout
    assert dask_csv(client, tmp_path / "parquet") == report_csv(db_path)
    as_of = "2023-03-13T15:00:00Z"
    assert dask_csv(client, tmp_path / "parquet", as_of, "nearest") == report_csv(db_path, as_of, "nearest")


def test_a_worker_killed_mid_report_is_survived(dst_week, tmp_path):
    """On a cluster of its own: the killed worker's restart is not waited for."""
    db = tmp_path / "dst.db"
    assert ingest_dir(dst_week, db).ok
    cluster = two_worker_cluster()
    try:
        with distributed.Client(cluster) as client:
            _kill_a_worker_mid_report(client, dst_week, db)
    finally:
        cluster.close(timeout=120)


def _kill_a_worker_mid_report(client, dst_week, db):
    pids = list(client.run(os.getpid).values())
    killed = threading.Event()

    def kill_one(fraction: float) -> None:
        if fraction > 0 and not killed.is_set():
            killed.set()
            os.kill(pids[0], signal.SIGKILL)

    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(_report_or_error(client, dst_week, kill_one)))
    worker.start()
    worker.join(600)
    assert not worker.is_alive(), "the report hung after a worker was killed"
    assert killed.is_set()
    assert outcome[0] == report_csv(db) or isinstance(outcome[0], ClusterError)


def _report_or_error(client, data_dir, progress):
    try:
        return cluster_report(client, str(data_dir), progress=progress, block_bytes=32 * 1024).report.to_csv()
    except ClusterError as exc:
        return exc


def storemon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "storemon", *args], capture_output=True, text=True, timeout=600)


def test_cli_report_on_the_cluster(client, dst_week, tmp_path):
    db = tmp_path / "dst.db"
    assert ingest_dir(dst_week, db).ok
    address = client.scheduler.address
    done = storemon("report", "--dask", address, "--data-dir", str(dst_week), "--as-of", "2023-03-13T15:00:00Z",
                    "--interpolation", "nearest", "-o", str(tmp_path / "out.csv"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.csv").read_text() == report_csv(db, "2023-03-13T15:00:00Z", "nearest")
    assert "bad rows skipped" in done.stderr and "Traceback" not in done.stderr


def test_cli_faults_are_one_line(tmp_path, monkeypatch, capsys):
    def error_of(*args: str) -> str:
        assert main(list(args)) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        return err

    port = free_port()
    assert error_of("report", "--dask", f"tcp://127.0.0.1:{port}", "--data-dir", str(SAMPLE)).startswith(
        "storemon: error: cannot reach the Dask scheduler")
    assert "--dask needs --data-dir" in error_of("report", "--dask", f"tcp://127.0.0.1:{port}")
    assert "--data-dir is read with --dask" in error_of("report", "--data-dir", str(SAMPLE))
    assert "database not found" in error_of("export", "--db", str(tmp_path / "none.db"), "--parquet", str(tmp_path))
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if storemon[dask] were not installed
    assert error_of("report", "--dask", "tcp://127.0.0.1:1", "--data-dir", str(SAMPLE)) == (
        "storemon: error: the Dask engine needs the dask extra: pip install 'storemon[dask]'\n")


def test_serve_runs_report_jobs_on_the_cluster(client, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = serve(SAMPLE, tmp_path / "s.db", port, "--dask", client.scheduler.address)
    try:
        wait_ready(base, process)
        with distributed.get_task_stream(client) as tasks:
            report_id = call(f"{base}/trigger_report", {"as_of": "2023-01-24T10:00:00Z"}, method="POST")[1][
                "report_id"]
            status, body = wait_report(base, report_id)
        assert status == 200 and body["status"] == "Complete"
        assert body["data"] == report_csv(tmp_path / "s.db", "2023-01-24T10:00:00Z")
        assert tasks.data, "the report did not run on the cluster"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0 and "Traceback" not in stderr
