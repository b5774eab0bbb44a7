"""Faults and hostile input, each caused for real: every one ends in a clear answer; nothing hangs or goes stale."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, ingest_dir, report_csv, write_csv, write_data
from test_server import call, free_port, serve, wait_ready, wait_report
from webtest import TestApp

from storemon.db import open_db
from storemon.runs import mark_interrupted
from storemon.server import HEADER_DEADLINE_S
from storemon.service import Service, ServiceConfig

STOREMON = [sys.executable, "-m", "storemon"]
POLLS = [("S", "2023-01-23 10:00:00", "active"), ("S", "2023-01-23 11:00:00", "inactive"),
         ("T", "2023-01-23 10:30:00", "active")]


def storemon(*args, timeout=300):
    return subprocess.run([*STOREMON, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def one_line_error(done) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def test_a_same_size_edit_in_place_is_seen_and_read_again(data_dir, db_path, tmp_path):
    # 300 KB of polls; one status in the middle, outside the first and last 64 KiB, is edited keeping the size.
    rows = [(f"S{i % 50:02d}", f"2023-01-2{2 + i // 4000} {i // 200 % 20:02d}:{i % 60:02d}:00", "  active")
            for i in range(8000)]
    write_data(data_dir, polls=rows, zones=[(f"S{i:02d}", "UTC") for i in range(50)])
    ingest_dir(data_dir, db_path)
    path = data_dir / "store_status.csv"
    content = path.read_bytes()
    middle = content.index(b",  active", len(content) // 2)
    edited = content[:middle] + b",inactive" + content[middle + 9:]
    assert len(edited) == len(content)
    stat = path.stat()
    path.write_bytes(edited)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    result = ingest_dir(data_dir, db_path)
    assert next(f for f in result.files if f.name == "store_status.csv").action == "read"
    fresh = tmp_path / "fresh.db"
    ingest_dir(data_dir, fresh)
    edited_report = report_csv(db_path, "2023-01-24T00:00:00Z")
    assert edited_report == report_csv(fresh, "2023-01-24T00:00:00Z")
    assert "downtime" in edited_report and any(line.split(",")[4:] != ["0.00", "0.00", "0.00"]
                                                for line in edited_report.splitlines()[1:])


def test_report_csv_quotes_ids_with_commas_and_quotes(data_dir, db_path):
    data_dir.mkdir()
    (data_dir / "store_status.csv").write_text(
        'store_id,timestamp_utc,status\n"a,b",2023-01-23 10:00:00,active\n"say ""hi""",2023-01-23 10:00:00,active\n'
    )
    write_csv(data_dir / "menu_hours.csv", ["store_id", "dayOfWeek", "start_time_local", "end_time_local"], [])
    write_csv(data_dir / "timezones.csv", ["store_id", "timezone_str"], [])
    assert ingest_dir(data_dir, db_path).ok
    text = storemon("report", "--db", db_path).stdout
    rows = list(csv.reader(io.StringIO(text)))
    assert [row[0] for row in rows[1:]] == ["a,b", 'say "hi"'] and all(len(row) == 7 for row in rows)


def test_control_characters_overlong_ids_and_bad_utf8_are_bad_rows(data_dir, db_path):
    data_dir.mkdir()
    (data_dir / "store_status.csv").write_bytes(
        b"store_id,timestamp_utc,status\n"
        b"ok,2023-01-23 10:00:00,active\n"
        b"nul\x00id,2023-01-23 10:00:00,active\n"
        + b"x" * 300 + b",2023-01-23 10:00:00,active\n"
        b"caf\xe9,2023-01-23 10:00:00,active\n"
    )
    write_csv(data_dir / "menu_hours.csv", ["store_id", "dayOfWeek", "start_time_local", "end_time_local"], [])
    write_csv(data_dir / "timezones.csv", ["store_id", "timezone_str"], [])
    result = ingest_dir(data_dir, db_path)
    polls = result.files[0]
    assert (polls.rows_loaded, polls.rows_skipped) == (1, 3)
    reasons = dict(polls.bad_lines)
    assert "control character" in reasons[3] and "longer than 255" in reasons[4] and "UTF-8" in reasons[5]


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    ("store_id,timestamp_utc,status\nS,2023-01-23 10:00:00,active\n".encode("utf-16"), "UTF-16"),
    (b"store_id,status\nS,active\n", "no column 'timestamp_utc'"),
    (b"id,when\n", "no column 'store_id', no column 'timestamp_utc', no column 'status'"),
])
def test_unusable_poll_files_are_named_for_what_they_are(data_dir, db_path, content, message):
    write_data(data_dir)
    (data_dir / "store_status.csv").write_bytes(content)
    result = ingest_dir(data_dir, db_path)
    assert message in result.files[0].error


def test_a_poll_more_than_a_day_in_the_future_is_a_bad_row(data_dir, db_path):
    write_data(data_dir, polls=[*POLLS, ("S", "9999-12-31 23:59:59", "active")])
    result = ingest_dir(data_dir, db_path)
    assert result.files[0].rows_skipped == 1 and "after the ingest" in result.files[0].bad_lines[0][1]
    assert report_csv(db_path).count("\n") == 3  # the default report still works


def test_an_as_of_outside_the_representable_years_is_refused(tmp_path):
    write_data(tmp_path / "data", polls=POLLS)
    storemon("ingest", "--data-dir", tmp_path / "data", "--db", tmp_path / "s.db")
    assert "outside 1900..2999" in one_line_error(
        storemon("report", "--db", tmp_path / "s.db", "--as-of", "9999-12-31T23:59:59Z"))


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_source_that_is_not_a_regular_file_fails_at_once(tmp_path, kind):
    data = write_data(tmp_path / "data", polls=POLLS)
    target = data / "menu_hours.csv"
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        target.symlink_to("/dev/zero")
    else:
        target.mkdir()
    error = one_line_error(storemon("ingest", "--data-dir", data, "--db", tmp_path / "s.db", timeout=300))
    assert "menu_hours.csv: not a regular file" in error
    assert str(data) not in error


def test_a_refresh_waits_for_another_writer_instead_of_failing(data_dir, db_path):
    write_data(data_dir, polls=POLLS)
    ingest_dir(data_dir, db_path)
    with (data_dir / "store_status.csv").open("a") as handle:
        handle.write("S,2023-01-23 12:00:00,active\n")
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE meta SET value = value WHERE key = 'data_version'")
    release = threading.Timer(1.0, lambda: holder.execute("COMMIT"))
    reader = sqlite3.connect(db_path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM poll_days").fetchone()  # a report's snapshot, held throughout
    release.start()
    try:
        result = ingest_dir(data_dir, db_path)
    finally:
        release.join()
        reader.execute("COMMIT")
        holder.close()
        reader.close()
    assert result.ok and result.changed


def test_a_failed_refresh_leaves_no_run_running_and_is_retried_soon(tmp_path):
    data = write_data(tmp_path / "data", polls=POLLS)
    service = Service(ServiceConfig(data, tmp_path / "s.db", port=0, refresh_interval=3600, busy_timeout=0.2))
    service.start()
    try:
        assert service.refresher.first_done.wait(HANG_GUARD_S)
        blocker = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        with (data / "store_status.csv").open("a") as handle:
            handle.write("S,2023-01-23 12:00:00,active\n")
        result = service.refresh_now(wait_seconds=30)
        assert result is not None and not result.ok and "database" in result.errors[0]
        blocker.execute("ROLLBACK")
        blocker.close()
        deadline = time.monotonic() + 60  # retried in seconds, not at the next interval (an hour)
        while time.monotonic() < deadline and not (service.refresher.last_result and service.refresher.last_result.ok):
            time.sleep(0.1)
        assert service.refresher.last_result.ok and service.refresher.last_result.changed
        statuses = [r.status for r in service.recent_refreshes(10)]
        assert "running" not in statuses
        assert statuses[:2] == ["ok", "failed"]
    finally:
        service.stop()


def test_a_second_service_does_not_relabel_a_live_run(db_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        db = open_db(db_path)
        host = socket.gethostname()
        db.execute("INSERT INTO ingest_runs (started, status, owner) VALUES ('t', 'running', ?)",
                   [f"{host}:{sleeper.pid}"])
        dead = subprocess.Popen(["true"])
        dead.wait()
        db.execute("INSERT INTO ingest_runs (started, status, owner) VALUES ('t', 'running', ?)",
                   [f"{host}:{dead.pid}"])
        assert mark_interrupted(db) == 1
        assert [r[0] for r in db.execute("SELECT status FROM ingest_runs ORDER BY id")] == ["running", "interrupted"]
        db.close()
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.fixture
def api(tmp_path):
    data = write_data(tmp_path / "data", polls=POLLS)
    service = Service(ServiceConfig(data, tmp_path / "api.db", port=0, workers=1, triggers_per_minute=3,
                                    keep_reports=2))
    service.start()
    assert service.refresher.first_done.wait(HANG_GUARD_S)
    yield service
    service.stop()


def test_junk_parameters_are_400_not_500(api):
    app = TestApp(api.app)
    for body in (b'{"limit": 1e400}', b'{"limit": Infinity}'):
        answer = app.post("/reports", body, headers={"Content-Type": "application/json"}, expect_errors=True)
        assert answer.status_int in (400, 405) and answer.json["status"] == "error"
    assert app.get("/reports", {"limit": "1e400"}, status=400).json["error"].startswith("limit")
    answer = app.post("/get_report", b'{"report_id": "\\ud800"}', headers={"Content-Type": "application/json"},
                      status=400)
    assert "report_id" in answer.json["error"]


def test_head_never_triggers_a_report(api):
    app = TestApp(api.app)
    app.head("/trigger_report", status=405)
    assert api.recent_reports(10) == []


def test_triggers_are_rate_limited_per_client_with_a_json_429(api):
    app = TestApp(api.app)
    for _ in range(3):
        assert app.get("/trigger_report").json["status"] == "success"
    refused = app.get("/trigger_report", status=429)
    assert refused.json["status"] == "error" and "at most 3 a minute" in refused.json["error"]
    assert int(refused.headers["Retry-After"]) >= 1


def test_only_the_newest_finished_reports_are_kept(api):
    app = TestApp(api.app)
    ids = [app.get("/trigger_report").json["report_id"] for _ in range(3)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(r["status"] in ("Queued", "Running") for r in api.recent_reports(10)):
        time.sleep(0.1)
    kept = [r["id"] for r in api.recent_reports(10)]
    assert len(kept) == 2 and ids[0] not in kept
    assert app.post_json("/get_report", {"report_id": ids[0]}, status=404).json["status"] == "No such report Id!"


def raw_request(port: int, payload: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_the_server_answers_json_for_its_own_errors_chunked_bodies_and_huge_headers(api):
    port = api.server.address[1]
    answer = raw_request(port, b"NONSENSE\r\n\r\n")
    assert b"application/json" in answer and b'"status": "error"' in answer
    answer = raw_request(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    assert answer.split(b"\r\n")[0].split()[1] in (b"400", b"413", b"431") and b"application/json" in answer
    body = json.dumps({"interpolation": "nearest"}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    answer = raw_request(port, b"POST /trigger_report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)
    assert b" 200 " in answer.split(b"\r\n")[0] and b'"success"' in answer


def test_idle_and_slow_clients_do_not_stop_the_api(api):
    """100 idle connections and 40 dribbling ones: more than the 64 threads, so a server that gave each connection a
    thread would answer only when the first ones are dropped, HEADER_DEADLINE_S after they opened."""
    port = api.server.address[1]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    stop = threading.Event()

    def dribble():
        while not stop.is_set():
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"G")
            stop.wait(1.0)

    dribbler = threading.Thread(target=dribble)
    dribbler.start()
    try:
        time.sleep(1.5)
        started = time.monotonic()
        status, body = call(f"http://127.0.0.1:{port}/health", timeout=30)
        assert status == 200 and body["database"] == "ok"
        assert time.monotonic() - started < HEADER_DEADLINE_S - 5
    finally:
        stop.set()
        dribbler.join()
        for sock in idle + slow:
            sock.close()


def test_a_client_dribbling_its_headers_is_dropped_at_the_deadline(api):
    sock = socket.create_connection(("127.0.0.1", api.server.address[1]))
    sock.settimeout(1.0)
    started = time.monotonic()
    closed_after = None
    with sock:
        while time.monotonic() - started < 60:
            try:
                sock.send(b"G")
                if sock.recv(65536) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "a client sending a byte a second held its connection for a minute"
    assert closed_after >= HEADER_DEADLINE_S - 1


def test_ctrl_c_stops_serve_promptly_without_tracebacks(tmp_path):
    data = write_data(tmp_path / "data", polls=POLLS)
    port = free_port()
    log = tmp_path / "serve.log"
    process = serve(data, tmp_path / "s.db", port, "--log-file", str(log))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        report_id = call(f"{base}/trigger_report")[1]["report_id"]
        wait_report(base, report_id)
        call(f"{base}/trigger_report")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "Traceback" not in log.read_text() and "KeyboardInterrupt" not in log.read_text()


def test_a_database_path_that_cannot_be_opened_is_one_line(tmp_path):
    (tmp_path / "folder.db").mkdir()
    write_data(tmp_path / "data", polls=POLLS)
    error = one_line_error(storemon("ingest", "--data-dir", tmp_path / "data", "--db", tmp_path / "folder.db"))
    assert "cannot open database" in error


def test_header_only_hours_and_zones_are_flagged(tmp_path):
    data = write_data(tmp_path / "data", polls=POLLS)
    service = Service(ServiceConfig(data, tmp_path / "s.db", port=0))
    service.start()
    try:
        assert service.refresher.first_done.wait(HANG_GUARD_S)
        notes = [note for f in service.refresher.last_result.files for note in f.notes]
        assert any("every store is now open 24x7" in n for n in notes)
        warnings = service.health()["warnings"]
        assert any("menu_hours.csv has no rows" in w for w in warnings)
        assert any("timezones.csv has no rows" in w for w in warnings)
    finally:
        service.stop()


def test_ctrl_c_during_ingest_is_one_line_and_the_run_is_marked_interrupted(tmp_path):
    data = write_data(tmp_path / "data", polls=POLLS)
    lines = "".join(f"S{i % 997},2023-01-{10 + i % 15} {i % 24:02d}:{i % 60:02d}:00 UTC,active\n"
                    for i in range(1_500_000))
    (data / "store_status.csv").write_text("store_id,timestamp_utc,status\n" + lines)
    db_path = tmp_path / "s.db"
    open_db(db_path).close()
    process = subprocess.Popen([*STOREMON, "ingest", "--data-dir", str(data), "--db", str(db_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        db = open_db(db_path)
        running = db.execute("SELECT COUNT(*) FROM ingest_runs WHERE status = 'running'").fetchone()[0]
        db.close()
        if running:  # reading 1.5 million lines is still ahead of it
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and stderr == "storemon: interrupted\n"
    db = open_db(db_path)
    assert db.execute("SELECT status FROM ingest_runs").fetchall() == [("interrupted",)]
    assert db.execute("SELECT COUNT(*) FROM poll_days").fetchone()[0] == 0
    db.close()


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of `size` mounted at `path` (the tests run as root), unmounted afterwards."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_a_full_disk_fails_the_report_with_a_reason(tmp_path):
    with small_disk(tmp_path / "disk", "4m") as disk:
        data = write_data(tmp_path / "data", polls=POLLS)
        service = Service(ServiceConfig(data, disk / "s.db", port=0, workers=1))
        service.start()
        try:
            assert service.refresher.first_done.wait(HANG_GUARD_S)
            service.jobs.data_ready.clear()  # hold the workers while the disk fills up
            report_id = service.trigger_report()
            with (disk / "filler").open("wb") as filler, contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            service.jobs.data_ready.set()
            app = TestApp(service.app)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                answer = app.post_json("/get_report", {"report_id": report_id}, expect_errors=True)
                if answer.status_int != 202:
                    break
                time.sleep(0.1)
            assert answer.status_int == 500 and answer.json["status"] == "Failed"
            assert "full" in answer.json["error"] or "disk" in answer.json["error"]
        finally:
            service.stop()


def test_a_read_only_database_is_one_line_for_every_command_and_keeps_its_data(tmp_path):
    with small_disk(tmp_path / "ro", "16m") as disk:
        data = write_data(tmp_path / "data", polls=POLLS)
        ingest_dir(data, disk / "s.db")
        before = report_csv(disk / "s.db")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with (data / "store_status.csv").open("a") as handle:
            handle.write("S,2023-01-23 12:00:00,active\n")
        for command in (["ingest", "--data-dir", data], ["serve", "--data-dir", data, "--port", "0"],
                        ["report"]):
            done = storemon(*command, "--db", disk / "s.db")
            if command[0] == "report" and done.returncode == 0:
                assert done.stdout == before  # SQLite could read it: the same report
                continue
            error = one_line_error(done)
            assert "read-only" in error or "readonly" in error or "unable to open" in error, error
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        assert report_csv(disk / "s.db") == before
