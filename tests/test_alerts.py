"""Notifications (apprise, to a real local JSON webhook) and the Prometheus metrics of a running service."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import HANG_GUARD_S, POLL_HEADER, write_csv, write_data

from storemon.alerts import BadNotifyUrl, check_url
from storemon.service import Service, ServiceConfig

# Monday 2023-01-23. S (New York, open 09:00-17:00 local = 14:00-22:00 UTC) goes inactive at 15:00 UTC, 60 min
# before the latest poll; T goes inactive 5 min before it (under --alert-after); U was down and back before
# (history: never notified); V is inactive but closed (no incident).
POLLS = [
    ("S", "2023-01-23 14:30:00", "active"), ("S", "2023-01-23 15:00:00", "inactive"),
    ("T", "2023-01-23 14:30:00", "active"), ("T", "2023-01-23 15:55:00", "inactive"),
    ("U", "2023-01-23 14:10:00", "inactive"), ("U", "2023-01-23 14:50:00", "active"),
    ("V", "2023-01-23 15:00:00", "inactive"),
    ("W", "2023-01-23 16:00:00", "active"),
]
HOURS = [(store, 0, "09:00:00", "17:00:00") for store in "STUW"] + [("V", 0, "18:00:00", "20:00:00")]
ZONES = [(store, "America/New_York") for store in "STUVW"]


class Webhook:
    """A real HTTP server on a free port that keeps the JSON bodies POSTed to it; answers `status`."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if hook.status == 200:
                    hook.bodies.append(json.loads(body))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 120.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.bodies) >= count, f"{len(self.bodies)} messages received, {count} expected"
        return self.bodies


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()


def start_service(data, db, urls, alert_after=15.0) -> Service:
    service = Service(ServiceConfig(data, db, port=0, workers=1, notify_urls=tuple(urls),
                                    alert_after_minutes=alert_after))
    service.start()
    assert service.refresher.first_done.wait(HANG_GUARD_S)
    return service


def test_down_then_up_reaches_the_webhook_once_across_a_restart(tmp_path, webhook):
    data = write_data(tmp_path / "data", POLLS, HOURS, ZONES)
    service = start_service(data, tmp_path / "a.db", [webhook.url])
    try:
        down = webhook.wait_for(1)[0]
        assert down["title"] == "storemon: store S is down"
        assert "since Mon 2023-01-23 10:00 America/New_York (2023-01-23T15:00:00Z)" in down["message"]
        assert "60 min so far" in down["message"] and "local time is Mon 2023-01-23 11:00" in down["message"]
        assert down["type"] == "failure"
        write_csv(data / "store_status.csv", POLL_HEADER, POLLS + [("S", "2023-01-23 16:20:00", "active"),
                                                                   ("T", "2023-01-23 16:21:00", "active")])
        service.refresh_now(120)
        up = webhook.wait_for(2)[1]
        assert up["title"] == "storemon: store S is back up" and up["type"] == "success"
        assert "back up at Mon 2023-01-23 11:20 America/New_York (2023-01-23T16:20:00Z), after 80 min" in up["message"]
    finally:
        service.stop()
    again = start_service(data, tmp_path / "a.db", [webhook.url])
    try:
        again.refresh_now(120)
        time.sleep(2)
    finally:
        again.stop()
    assert [b["title"] for b in webhook.bodies] == ["storemon: store S is down", "storemon: store S is back up"]


def test_a_failing_webhook_is_retried_and_never_holds_up_the_refresh(tmp_path, webhook):
    webhook.status = 500
    data = write_data(tmp_path / "data", POLLS, HOURS, ZONES)
    service = start_service(data, tmp_path / "b.db", [webhook.url], alert_after=5)
    try:
        deadline = time.monotonic() + 60
        while service.notifier.failed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.notifier.failed >= 1 and webhook.bodies == []
        assert service.refresh_now(120).ok
        webhook.status = 200
        service.refresh_now(120)  # the next refresh retries what is still due
        titles = [b["title"] for b in webhook.wait_for(2)]
        assert titles == ["storemon: store S is down", "storemon: store T is down"]
    finally:
        service.stop()


def test_a_notify_url_apprise_does_not_know_is_refused():
    with pytest.raises(BadNotifyUrl, match="nosuchservice://"):
        check_url("nosuchservice://example")


def test_metrics_count_stores_down_now_and_the_service_work(tmp_path):
    data = write_data(tmp_path / "data", POLLS, HOURS, ZONES)
    service = start_service(data, tmp_path / "m.db", [])
    try:
        base = service.api_address
        urllib.request.urlopen(f"{base}/health", timeout=60).read()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/no/such/path", timeout=60)
        with urllib.request.urlopen(f"{base}/metrics", timeout=60) as response:
            text = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/plain")
    finally:
        service.stop()
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line and not line.startswith("#")}
    # At 16:00 UTC (11:00 in New York) S, T, U and W are open; S and T's latest polls are inactive; V is closed.
    assert values["storemon_stores"] == 5
    assert values["storemon_stores_open"] == 4
    assert values["storemon_stores_down"] == 2
    assert values["storemon_data_latest_timestamp_seconds"] == 1674489600.0
    assert values['storemon_refreshes_total{result="ok"}'] == 1
    assert values["storemon_refresh_duration_seconds_count"] == 1
    assert values['storemon_api_requests_total{route="/health",status="200"}'] == 1
    assert values['storemon_api_requests_total{route="other",status="404"}'] == 1


def test_serve_refuses_an_unknown_notify_url_in_one_line(tmp_path):
    data = write_data(tmp_path / "data", POLLS, HOURS, ZONES)
    done = subprocess.run([sys.executable, "-m", "storemon", "serve", "--data-dir", str(data), "--db",
                           str(tmp_path / "s.db"), "--notify", "nosuchservice://x", "--port", "0"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "--notify: apprise does not understand this URL (nosuchservice://...)" in done.stderr
