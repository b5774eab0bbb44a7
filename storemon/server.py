"""A real multi-threaded WSGI server (cheroot) for the API, on a background thread."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import threading
import time
import traceback

from cheroot import errors, server, wsgi

log = logging.getLogger(__name__)


class PortUnavailable(Exception):
    """The address could not be bound (port in use, no permission, bad host)."""


MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 2 * 1024 * 1024
SOCKET_TIMEOUT_S = 15
HEADER_DEADLINE_S = 15.0  # generous: a loaded machine can starve a request thread for seconds (nginx allows 60 s)


class _Deadlines:
    """Closes connections whose request line and headers have not all arrived within HEADER_DEADLINE_S, so that
    clients sending a byte now and then cannot hold the server's threads (one watchdog thread for all)."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[float, socket.socket]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, key: int, sock: socket.socket) -> None:
        with self._lock:
            self._pending[key] = (time.monotonic() + HEADER_DEADLINE_S, sock)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="api-header-deadlines", daemon=True)
                self._thread.start()

    def done(self, key: int) -> None:
        with self._lock:
            self._pending.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            with self._lock:
                expired = [key for key, (deadline, _) in self._pending.items() if deadline < now]
                sockets = [self._pending.pop(key)[1] for key in expired]
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


_deadlines = _Deadlines()


class _JsonErrorRequest(server.HTTPRequest):
    """cheroot's request, whose own error answers (bad request line, too large, ...) are JSON like the API's, and
    whose request line and headers must arrive within HEADER_DEADLINE_S."""

    def parse_request(self):
        _deadlines.watch(id(self), self.conn.socket)
        try:
            super().parse_request()
        finally:
            _deadlines.done(id(self))

    def simple_response(self, status, msg=""):
        status = str(status)
        text = msg.decode("ISO-8859-1") if isinstance(msg, bytes) else str(msg)
        body = json.dumps({"status": "error", "error": text.strip() or status}).encode()
        lines = [f"{self.server.protocol} {status}\r\n", f"Content-Length: {len(body)}\r\n",
                 "Content-Type: application/json\r\n"]
        if status[:3] in {"413", "414"}:
            self.close_connection = True
            lines.append("Connection: close\r\n")
        try:
            self.conn.wfile.write("".join(lines).encode("ISO-8859-1") + b"\r\n" + body)
        except OSError as exc:
            if exc.args and exc.args[0] not in errors.socket_errors_to_ignore:
                raise


class _JsonErrorConnection(server.HTTPConnection):
    RequestHandlerClass = _JsonErrorRequest


class _LoggedServer(wsgi.Server):
    """cheroot's server, with its error output sent to the log instead of stderr, JSON error answers, and limits:
    a request's header and body sizes, and a socket timeout so that a client that stalls is dropped."""

    ConnectionClass = _JsonErrorConnection

    def process_conn(self, conn) -> None:
        """A new connection waits in the selector until it sends something (idle ones expire after `timeout`),
        instead of holding a worker thread while it says nothing."""
        if not getattr(conn, "storemon_waited", False):
            conn.storemon_waited = True
            self._connections.put(conn)
            return
        super().process_conn(conn)

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        log.log(level if level >= logging.WARNING else logging.DEBUG, "%s", msg, exc_info=traceback)


class _ErrorsToLog(io.TextIOBase):
    """A `wsgi.errors` stream that writes to the log: Bottle prints tracebacks there."""

    def write(self, text: str) -> int:
        if text.strip():
            log.error("%s", text.rstrip())
        return len(text)


def errors_to_log(app):
    """Wrap a WSGI app so that what it writes to `wsgi.errors` goes to the log."""
    stream = _ErrorsToLog()

    def wrapped(environ, start_response):
        environ["wsgi.errors"] = stream
        return app(environ, start_response)

    return wrapped


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
DEFAULT_API_THREADS = 64


class ApiServer:
    """Serve a WSGI app on host:port with a pool of threads until `stop()`."""

    def __init__(self, app, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 threads: int = DEFAULT_API_THREADS) -> None:
        self._server = _LoggedServer((host, port), errors_to_log(app), numthreads=threads, server_name="storemon",
                                    request_queue_size=256, timeout=SOCKET_TIMEOUT_S)
        self._server.max_request_header_size = MAX_HEADER_BYTES
        self._server.max_request_body_size = MAX_BODY_BYTES
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.bind_addr[:2]
        return host, port

    def start(self) -> None:
        """Bind and start serving; raises PortUnavailable (one line) when the address cannot be bound."""
        try:
            self._server.prepare()
        except OSError as exc:
            host, port = self._server.bind_addr[:2]
            reason = "address already in use" if "in use" in str(exc) else str(exc).split(" -- ")[-1]
            raise PortUnavailable(f"cannot listen on {host}:{port}: {reason}") from None
        self._thread = threading.Thread(target=self._serve, name="api-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.serve()
        except Exception:
            log.error("API server stopped on an error\n%s", traceback.format_exc())

    def stop(self) -> None:
        if self._thread is not None:
            self._server.stop()
            self._thread.join(5)
            self._thread = None
