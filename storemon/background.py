"""Plumbing of the service's background parts: a thread that sleeps until woken or stopped, and listeners that
are told of changes without ever breaking the thread that tells them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def tell(listener: Callable[..., Any] | None, *args: Any, what: str = "listener") -> None:
    """Call `listener(*args)` if there is one; an exception it raises is logged, never raised."""
    if listener is None:
        return
    try:
        listener(*args)
    except Exception:
        log.exception("%s failed", what)


class BackgroundThread:
    """A named daemon thread running `run()`, with `_wake` and `_stop` events: `stop()` sets both and joins it."""

    thread_name = "background"

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        raise NotImplementedError
