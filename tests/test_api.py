"""The HTTP API through WebTest: every status code of the contract, on a real database."""

from __future__ import annotations

import time
import uuid

import pytest
from conftest import HANG_GUARD_S, report_csv
from webtest import TestApp

from storemon.db import open_db
from storemon.generate import generate
from storemon.service import Service, ServiceConfig


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sample")
    generate(directory, stores=40, days=3, seed=11)
    return directory


@pytest.fixture
def service(sample, tmp_path):
    svc = Service(ServiceConfig(sample, tmp_path / "api.db", port=0, workers=2))
    svc.start()
    assert svc.refresher.first_done.wait(HANG_GUARD_S)
    yield svc
    svc.stop()


@pytest.fixture
def app(service):
    return TestApp(service.app)


def wait_complete(app, report_id, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = app.get("/get_report", params={"report_id": report_id}, expect_errors=True)
        if response.status_int != 202:
            return response
        time.sleep(0.05)
    raise AssertionError("report did not finish")


def test_trigger_then_get_complete_report(app, service):
    response = app.post_json("/trigger_report", {})
    assert response.status_int == 200
    assert response.json["status"] == "success"
    assert uuid.UUID(response.json["report_id"]).version == 4
    done = wait_complete(app, response.json["report_id"])
    assert done.status_int == 200 and done.json["status"] == "Complete"
    assert done.json["data"] == report_csv(service.config.db_path)


def test_get_report_id_in_a_json_body_or_a_form(app, service):
    report_id = app.get("/trigger_report").json["report_id"]
    wait_complete(app, report_id)
    bodies = [(f'{{"report_id": "{report_id}"}}', "application/json"),
              (f"report_id={report_id}", "application/x-www-form-urlencoded")]
    for method in ("GET", "POST"):
        for body, content_type in bodies:
            response = app.request("/get_report", method=method, body=body.encode(),
                                   headers={"Content-Type": content_type})
            assert response.status_int == 200 and response.json["status"] == "Complete", (method, content_type)


def test_parameters_as_of_and_interpolation(app, service):
    as_of = "2023-01-24 12:00:00 UTC"
    report_id = app.get("/trigger_report", params={"as_of": as_of, "interpolation": "Nearest"}).json["report_id"]
    done = wait_complete(app, report_id)
    assert done.json["data"] == report_csv(service.config.db_path, as_of, "nearest")
    listed = app.get("/reports").json["reports"]
    mine = next(r for r in listed if r["id"] == report_id)
    assert mine["as_of"] == "2023-01-24T12:00:00.000000Z" and mine["interpolation"] == "nearest"
    assert mine["row_count"] == 40 and mine["status"] == "Complete"


def test_csv_download_by_format_and_accept(app, service):
    report_id = app.get("/trigger_report").json["report_id"]
    wait_complete(app, report_id)
    for response in (app.get("/get_report", params={"report_id": report_id, "format": "csv"}),
                     app.get("/get_report", params={"report_id": report_id}, headers={"Accept": "text/csv"})):
        assert response.content_type == "text/csv"
        assert response.headers["Content-Disposition"] == f"attachment; filename=report-{report_id}.csv"
        assert response.text == report_csv(service.config.db_path)


def test_queued_report_is_running_with_progress(sample, tmp_path):
    svc = Service(ServiceConfig(sample, tmp_path / "q.db", port=0))  # not started: nothing runs the queue
    app = TestApp(svc.app)
    report_id = app.post("/trigger_report", {"interpolation": "previous"}).json["report_id"]
    response = app.get("/get_report", params={"report_id": report_id}, status=202)
    assert response.json == {"status": "Running", "progress": 0}


def test_report_triggered_before_start_up_ingest_runs_after_it(sample, tmp_path):
    svc = Service(ServiceConfig(sample, tmp_path / "early.db", port=0))
    app = TestApp(svc.app)
    report_id = app.get("/trigger_report").json["report_id"]  # before any ingest: the database is empty
    svc.start()
    try:
        done = wait_complete(app, report_id)
        assert done.json["data"] == report_csv(tmp_path / "early.db")
        assert done.json["data"].count("\n") == 41
    finally:
        svc.stop()


@pytest.mark.parametrize(
    ("params", "word"),
    [({"as_of": "yesterday"}, "as_of"), ({"interpolation": "linear"}, "interpolation"), ({"as_of": 5}, "as_of")],
)
def test_trigger_rejects_bad_parameters(app, params, word):
    response = app.post_json("/trigger_report", params, status=400)
    assert response.json["status"] == "error" and response.json["error"].startswith(word)


def test_unknown_report_id_is_404(app):
    for report_id in (str(uuid.uuid4()), "not-a-uuid"):
        response = app.get("/get_report", params={"report_id": report_id}, status=404)
        assert response.json == {"status": "No such report Id!"}


@pytest.mark.parametrize(
    ("body", "content_type", "word"),
    [(b"", "application/json", "missing report_id"), (b'{"report_id": ', "application/json", "malformed JSON"),
     (b'{"report_id": 42}', "application/json", "must be a string"), (b'["x"]', "application/json", "object"),
     (b'{"other": 1}', "application/json", "missing report_id")],
)
def test_get_report_bad_requests_are_400(app, body, content_type, word):
    response = app.request("/get_report", method="POST", body=body, headers={"Content-Type": content_type},
                           expect_errors=True)
    assert response.status_int == 400
    assert response.json["status"] == "error" and word in response.json["error"]


def test_failed_report_is_500(app, service):
    db = open_db(service.config.db_path)
    db.execute("UPDATE poll_days SET ts = x'0102' WHERE store = (SELECT MIN(store) FROM poll_days)")
    db.close()
    report_id = app.get("/trigger_report").json["report_id"]
    response = wait_complete(app, report_id)
    assert response.status_int == 500
    assert response.json["status"] == "Failed" and response.json["error"]


def test_unknown_route_wrong_method_and_large_body(app):
    assert app.get("/nothing", status=404).json["status"] == "error"
    response = app.delete("/get_report", status=405)
    assert response.json["status"] == "error" and "DELETE" in response.json["error"]
    big = b'{"report_id": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = app.request("/get_report", method="POST", body=big, headers={"Content-Type": "application/json"},
                           expect_errors=True)
    assert response.status_int == 413 and response.json["status"] == "error"


def test_health_and_reports(app, service):
    health = app.get("/health").json
    assert health["database"] == "ok" and health["stores"] == 40 and health["polls"] > 1000
    assert health["data_as_of"].startswith("2023-01-25")
    assert health["last_refresh"]["status"] == "ok"
    assert app.get("/reports").json == {"reports": []}
