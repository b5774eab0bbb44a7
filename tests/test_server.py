"""The API on a real port: the documented curl exchange, concurrency, kill -9 and SIGTERM of `storemon serve`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import HANG_GUARD_S, report_csv

from storemon.db import open_db
from storemon.generate import generate
from storemon.service import Service, ServiceConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url, body=None, method="GET", headers=None, timeout=30):
    """(status, parsed JSON or text) of one HTTP request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers=headers or ({"Content-Type": "application/json"} if body else {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload, ctype = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, json.loads(payload) if "json" in ctype else payload.decode()


def wait_ready(base, process=None, timeout=HANG_GUARD_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read()}")
        try:
            status, body = call(f"{base}/health", timeout=2)
            if status == 200 and body.get("last_refresh"):
                return body
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("server not ready")


def wait_report(base, report_id, timeout=HANG_GUARD_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = call(f"{base}/get_report", {"report_id": report_id})
        if status != 202:
            return status, body
        time.sleep(0.05)
    raise AssertionError(f"report {report_id} did not finish")


def serve(data, db, port, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "storemon", "serve", "--data-dir", str(data), "--db", str(db), "--port", str(port),
         "--log-file", str(db) + ".log", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sample")
    generate(directory, stores=60, days=8, seed=5)
    return directory


@pytest.fixture(scope="module")
def larger(tmp_path_factory):
    directory = tmp_path_factory.mktemp("larger")
    generate(directory, stores=3000, days=8, seed=6)
    return directory


def test_documented_curl_exchange_and_sigterm(sample, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = serve(sample, tmp_path / "s.db", port)
    try:
        wait_ready(base, process)
        status, body = call(f"{base}/trigger_report", method="POST")
        assert status == 200 and body["status"] == "success"
        status, body = wait_report(base, body["report_id"])
        assert status == 200 and body["status"] == "Complete"
        assert body["data"] == report_csv(tmp_path / "s.db")
        report_id = call(f"{base}/trigger_report")[1]["report_id"]
        wait_report(base, report_id)
        status, text = call(f"{base}/get_report?format=csv&report_id={report_id}")
        assert status == 200 and text == report_csv(tmp_path / "s.db")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0
    assert "Traceback" not in stderr


def test_port_in_use_is_one_line(sample, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = serve(sample, tmp_path / "p.db", port)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    expected = f"storemon: error: cannot listen on 127.0.0.1:{port}: address already in use"
    assert stderr.strip().splitlines()[-1] == expected
    assert "Traceback" not in stderr


def test_forty_clients_poll_while_reports_run(larger, tmp_path):
    service = Service(ServiceConfig(larger, tmp_path / "c.db", port=0, workers=2))
    service.start()
    try:
        assert service.refresher.first_done.wait(HANG_GUARD_S)
        base = service.api_address
        params = [{}, {"interpolation": "nearest"}, {"as_of": "2023-01-24T00:00:00Z"},
                  {"as_of": "2023-01-22T06:30:00Z", "interpolation": "nearest"}]
        ids = [call(f"{base}/trigger_report", p)[1]["report_id"] for p in params]
        statuses: list[int] = []
        stop = threading.Event()

        def poll(index):
            while not stop.is_set():
                status, _ = call(f"{base}/get_report", {"report_id": ids[index % len(ids)]})
                statuses.append(status)

        with ThreadPoolExecutor(40) as pool:
            for index in range(40):
                pool.submit(poll, index)
            results = [wait_report(base, report_id) for report_id in ids]
            stop.set()
        assert statuses and all(s < 500 for s in statuses)
        for p, (status, body) in zip(params, results):
            assert status == 200
            assert body["data"] == report_csv(tmp_path / "c.db", p.get("as_of"), p.get("interpolation", "previous"))
    finally:
        service.stop()


def test_kill_9_mid_queue_then_restart_completes_every_report(larger, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = tmp_path / "k.db"
    process = serve(larger, db, port, "--workers", "1")
    try:
        wait_ready(base, process)
        ids = [call(f"{base}/trigger_report", {"interpolation": ("previous", "nearest")[i % 2]})[1]["report_id"]
               for i in range(6)]
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=120)
    unfinished = open_db(db).execute("SELECT COUNT(*) FROM reports WHERE status != 'Complete'").fetchone()[0]
    assert unfinished > 0, "the kill came too late to test anything"
    process = serve(larger, db, port, "--workers", "1")
    try:
        wait_ready(base, process)
        for index, report_id in enumerate(ids):
            status, body = wait_report(base, report_id)
            assert status == 200
            assert body["data"] == report_csv(db, None, ("previous", "nearest")[index % 2])
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
    assert process.returncode == 0
