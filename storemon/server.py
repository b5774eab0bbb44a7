"""A real multi-threaded WSGI server (cheroot) for the API, on a background thread."""

from __future__ import annotations

import io
import logging
import threading
import traceback

from cheroot import wsgi

log = logging.getLogger(__name__)


class PortUnavailable(Exception):
    """The address could not be bound (port in use, no permission, bad host)."""


class _LoggedServer(wsgi.Server):
    """cheroot's server, with its error output sent to the log instead of stderr."""

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


class ApiServer:
    """Serve a WSGI app on host:port with a pool of threads until `stop()`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 8081, threads: int = 24) -> None:
        self._server = _LoggedServer((host, port), errors_to_log(app), numthreads=threads, server_name="storemon",
                                    request_queue_size=256)
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
