"""The HTTP API: a Bottle application that translates requests into calls on the service, and back into JSON.

Endpoints: `/trigger_report`, `/get_report` (GET or POST), `/reports`, `/incidents`, `/health`, `/metrics`,
`/refreshes`, `POST /refresh`.
Every answer is JSON (or the report CSV on request). Every error, the API's own (`RequestError`, a bad parameter
of the service's) and Bottle's (no such route, a method not allowed, an exception), becomes its answer in one
place, `error_answer`: a JSON body with a status code, never a traceback (those go to the log).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Protocol
from urllib.parse import parse_qsl

import bottle

from storemon.engine import csv_field
from storemon.jobs import BadParameter
from storemon.parse import parse_instant
from storemon.reports import COMPLETE, FAILED, RUNNING
from storemon.runs import Refresh

MAX_BODY = 1024 * 1024
DEFAULT_TRIGGERS_PER_MINUTE = 60


class Backend(Protocol):
    """What the API needs of the service."""

    def trigger_report(self, as_of: object, interpolation: object) -> str: ...
    def report_status(self, report_id: str) -> dict | None: ...
    def report_csv(self, report_id: str) -> str | None: ...
    def recent_reports(self, limit: int) -> list[dict]: ...
    def incidents(self, store_id: str | None, since_us: int | None, ongoing: bool, limit: int) -> list[dict]: ...
    def health(self) -> dict: ...
    def recent_refreshes(self, limit: int) -> list[Refresh]: ...
    def refresh_now(self, wait_seconds: float) -> Refresh | None: ...
    def metrics_text(self) -> tuple[bytes, str]: ...


class RequestError(bottle.HTTPError):
    """A bad request: `RequestError(status, message, **headers)` (a header such as Retry-After as a keyword)."""


def json_response(body: dict | list, status: int = 200) -> str:
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    return json.dumps(body)


def request_params() -> dict[str, Any]:
    """Parameters from the query string, then a form body, then a JSON body (later ones win)."""
    length = bottle.request.content_length
    if length > MAX_BODY:
        raise RequestError(413, f"request body too large (over {MAX_BODY} bytes)")
    params: dict[str, Any] = dict(parse_qsl(bottle.request.query_string, keep_blank_values=True))
    if "chunked" in bottle.request.get_header("Transfer-Encoding", "").lower():
        body = bottle.request.environ["wsgi.input"].read(MAX_BODY + 1)  # the server has already de-chunked it
    else:
        body = bottle.request.body.read(MAX_BODY + 1) if length != 0 else b""
    if len(body) > MAX_BODY:
        raise RequestError(413, f"request body too large (over {MAX_BODY} bytes)")
    if not body.strip():
        return params
    content_type = bottle.request.content_type.lower()
    if "json" in content_type or body.lstrip()[:1] in (b"{", b"["):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"malformed JSON body: {exc}") from None
        if not isinstance(data, dict):
            raise RequestError(400, "the JSON body must be an object")
        params.update(data)
    elif "x-www-form-urlencoded" in content_type:
        params.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    return params


def build_app(backend: Backend, triggers_per_minute: int = DEFAULT_TRIGGERS_PER_MINUTE) -> bottle.Bottle:
    """The API as a Bottle application object bound to `backend`."""
    app = bottle.Bottle(catchall=True)
    app.install(bad_parameters_are_400)
    app.default_error_handler = error_answer
    limiter = TriggerLimiter(triggers_per_minute)

    @app.route("/trigger_report", method=["GET", "POST"])
    def trigger_report():
        if bottle.request.method == "HEAD":
            raise RequestError(405, "HEAD is not allowed on /trigger_report (it would trigger a report)")
        retry_after = limiter.take(bottle.request.remote_addr or "")
        if retry_after:
            raise RequestError(429, f"too many reports triggered: at most {limiter.per_minute} a minute per client; "
                                    f"try again in {retry_after:.0f} s", **{"Retry-After": str(int(retry_after) + 1)})
        params = request_params()
        report_id = backend.trigger_report(params.get("as_of"), params.get("interpolation"))
        return json_response({"status": "success", "report_id": report_id})

    @app.route("/get_report", method=["GET", "POST"])
    def get_report():
        params = request_params()
        report_id = params.get("report_id")
        if report_id is None or report_id == "":
            raise RequestError(400, "missing report_id")
        if not isinstance(report_id, str):
            raise RequestError(400, "report_id must be a string")
        if not report_id.isprintable() or len(report_id) > 200:
            raise RequestError(400, "report_id must be printable text of at most 200 characters")
        status = backend.report_status(report_id)
        if status is None:
            return json_response({"status": "No such report Id!"}, 404)
        if status["status"] == FAILED:
            return json_response({"status": FAILED, "error": status["error"] or "the report failed"}, 500)
        if status["status"] != COMPLETE:
            return json_response({"status": RUNNING, "progress": round(status["progress"], 3)}, 202)
        csv_text = backend.report_csv(report_id) or ""
        wants_csv = params.get("format") == "csv" or "text/csv" in bottle.request.get_header("Accept", "")
        if wants_csv:
            bottle.response.content_type = "text/csv; charset=utf-8"
            bottle.response.set_header("Content-Disposition", f"attachment; filename=report-{report_id}.csv")
            return csv_text
        return json_response({"status": COMPLETE, "data": csv_text})

    @app.get("/reports")
    def reports():
        params = request_params()
        limit = _limit(params)
        return json_response({"reports": backend.recent_reports(limit)})

    @app.get("/incidents")
    def incidents():
        params = request_params()
        since = params.get("since")
        if since not in (None, ""):
            try:
                since = parse_instant(str(since))
            except ValueError as exc:
                raise RequestError(400, f"since: {exc}") from None
        else:
            since = None
        ongoing = str(params.get("ongoing", "")).lower()
        if ongoing not in ("", "true", "false", "1", "0"):
            raise RequestError(400, "ongoing: must be true or false")
        store_id = params.get("store_id") or None
        if store_id is not None and (not isinstance(store_id, str) or not store_id.isprintable()):
            raise RequestError(400, "store_id: must be printable text")
        found = backend.incidents(store_id, since, ongoing in ("true", "1"), _limit(params, default=100, most=10000))
        if params.get("format") == "csv" or "text/csv" in bottle.request.get_header("Accept", ""):
            bottle.response.content_type = "text/csv; charset=utf-8"
            lines = ["store_id,start,end,minutes"]
            lines += [f"{csv_field(i['store_id'])},{i['start']},{i['end'] or ''},{i['minutes']:.2f}" for i in found]
            return "\n".join(lines) + "\n"
        return json_response({"incidents": found})

    @app.get("/health")
    def health():
        body = backend.health()
        return json_response(body, 200 if body.get("database") == "ok" else 503)

    @app.get("/metrics")
    def metrics():
        text, content_type = backend.metrics_text()
        bottle.response.content_type = content_type
        return text

    @app.get("/refreshes")
    def refreshes():
        runs = backend.recent_refreshes(_limit(request_params()))
        return json_response({"refreshes": [run.to_dict() for run in runs]})

    @app.post("/refresh")
    def refresh():
        params = request_params()
        try:
            wait = float(params.get("wait", 60))
        except (TypeError, ValueError):
            raise RequestError(400, "wait: must be a number of seconds") from None
        result = backend.refresh_now(max(0.0, min(wait, 600.0)))
        if result is None:
            return json_response({"status": "accepted", "message": "refresh started; see /refreshes"}, 202)
        return json_response({"status": "done", "refresh": result.to_dict()})

    return app


def bad_parameters_are_400(callback):
    """Bottle plugin: a parameter the service refuses (BadParameter) is a 400 with its message."""
    def wrapped(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except BadParameter as exc:
            raise RequestError(400, str(exc)) from None

    return wrapped


def error_answer(error: bottle.HTTPError) -> str:
    """Every error's answer: `{"status": "error", "error": message}` with its status code."""
    if isinstance(error, RequestError):
        message = str(error.body)
    elif error.status_code == 404:
        message = f"no such endpoint: {bottle.request.path}"
    elif error.status_code == 405:
        message = f"method {bottle.request.method} not allowed on {bottle.request.path}"
    elif error.status_code >= 500:
        message = "internal error (see the log)"
    else:
        message = str(error.body or error.status_line)
    bottle.response.content_type = "application/json"
    return json.dumps({"status": "error", "error": message})


def _limit(params: dict, default: int = 50, most: int = 1000) -> int:
    try:
        return max(1, min(int(params.get("limit", default)), most))
    except (TypeError, ValueError, OverflowError):
        raise RequestError(400, "limit: must be an integer") from None


class TriggerLimiter:
    """At most `per_minute` triggers a minute per client (a token bucket per address); 0 means no limit."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Take one trigger for `client`: 0 if allowed, else the seconds until one is."""
        if self.per_minute <= 0:
            return 0.0
        rate = self.per_minute / 60.0
        with self._lock:
            now = time.monotonic()
            tokens, last = self._buckets.get(client, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return (1.0 - tokens) / rate
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > 10_000:
                self._buckets = {client: self._buckets[client]}
            return 0.0
