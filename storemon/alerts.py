"""Incident notifications (SPEC section 7): which messages are due, their text, and their delivery with apprise.

A "down" message is due for an ongoing incident that has lasted at least `alert_after` in data time (the data's
latest instant is "now"); an "up" message is due once that incident has ended, or no longer exists (business hours
changed). Incidents that were already over when storemon first saw them are history and never notified. Each
message is recorded in the `alerts` table per notification target once delivered, so that it reaches each target
once, across restarts; a target that fails is retried on the next pass, never holding up the others.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import apprise
import sqlite_utils

from storemon.background import BackgroundThread, tell
from storemon.db import get_meta, now_iso, open_db, write_transaction
from storemon.zones import DEFAULT_ZONE, lookup_zone, zone_or_default

log = logging.getLogger(__name__)

DEFAULT_ALERT_AFTER_MINUTES = 15
RETRY_S = 30.0
US_PER_MINUTE = 60_000_000


class BadNotifyUrl(ValueError):
    """A --notify URL that apprise does not understand."""


@dataclass(frozen=True)
class Alert:
    """One message due: `kind` is 'down' or 'up'; times are microseconds; `end` is None for down."""

    kind: str
    store: int
    store_id: str
    zone: str | None
    start: int
    end: int | None
    latest: int

    @property
    def zone_name(self) -> str:
        return self.zone if self.zone and lookup_zone(self.zone) else DEFAULT_ZONE

    def local(self, micros: int) -> str:
        return datetime.fromtimestamp(micros / 1e6, zone_or_default(self.zone)).strftime("%a %Y-%m-%d %H:%M")

    @staticmethod
    def utc(micros: int) -> str:
        return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def title(self) -> str:
        return f"storemon: store {self.store_id} is {'down' if self.kind == 'down' else 'back up'}"

    def body(self) -> str:
        since = f"since {self.local(self.start)} {self.zone_name} ({self.utc(self.start)})"
        if self.kind == "down":
            minutes = (self.latest - self.start) // US_PER_MINUTE
            return (f"Store {self.store_id} is down during its business hours {since}: {minutes} min so far. "
                    f"Its local time is {self.local(self.latest)} {self.zone_name}.")
        if self.end is None:
            return (f"Store {self.store_id} is no longer counted as down ({since}): its business hours changed. "
                    f"Its local time is {self.local(self.latest)} {self.zone_name}.")
        minutes = (self.end - self.start) // US_PER_MINUTE
        return (f"Store {self.store_id} is back up at {self.local(self.end)} {self.zone_name} "
                f"({self.utc(self.end)}), after {minutes} min down {since}.")


def target_key(url: str) -> str:
    """How the `alerts` table names a notification target: a digest, so that no secret in a URL is stored."""
    return hashlib.blake2b(url.encode(), digest_size=8).hexdigest()


def check_url(url: str) -> str:
    """`url` if apprise understands it; raises BadNotifyUrl (its message names the URL's scheme) otherwise."""
    if not apprise.Apprise().add(url):
        scheme = url.split("://", 1)[0] if "://" in url else url[:20]
        raise BadNotifyUrl(f"--notify: apprise does not understand this URL ({scheme}://...): see "
                           "https://github.com/caronc/apprise/wiki for the supported services")
    return url


def due(db: sqlite_utils.Database, target: str, alert_after_us: int) -> list[Alert]:
    """The messages due for `target`: "up" for incidents it was told of that are over, then "down" for ongoing
    incidents it was not told of yet, oldest first."""
    latest = get_meta(db, "max_poll_ts")
    if latest is None:
        return []
    latest = int(latest)
    up = db.execute(
        """SELECT a.store, s.store_id, z.timezone_str, a.start, i."end" FROM alerts a JOIN stores s ON s.id = a.store
           LEFT JOIN zones z ON z.store = a.store
           LEFT JOIN incidents i ON i.store = a.store AND i.start = a.start
           WHERE a.target = ? AND (i.store IS NULL OR i."end" IS NOT NULL)
           ORDER BY a.start, s.store_id""",
        [target],
    ).fetchall()
    down = db.execute(
        """SELECT i.store, s.store_id, z.timezone_str, i.start FROM incidents i JOIN stores s ON s.id = i.store
           LEFT JOIN zones z ON z.store = i.store
           WHERE i."end" IS NULL AND i.start <= ?
             AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.store = i.store AND a.start = i.start AND a.target = ?)
           ORDER BY i.start, s.store_id""",
        [latest - alert_after_us, target],
    ).fetchall()
    return ([Alert("up", s, sid, z, start, end, latest) for s, sid, z, start, end in up]
            + [Alert("down", s, sid, z, start, None, latest) for s, sid, z, start in down])


def record(db: sqlite_utils.Database, alert: Alert, target: str) -> None:
    """Remember that `alert` reached `target`: a "down" is kept until its "up" has reached the target too."""
    with write_transaction(db):
        if alert.kind == "down":
            db.execute("INSERT OR IGNORE INTO alerts (store, start, target, sent) VALUES (?, ?, ?, ?)",
                       [alert.store, alert.start, target, now_iso()])
        else:
            db.execute("DELETE FROM alerts WHERE store = ? AND start = ? AND target = ?",
                       [alert.store, alert.start, target])


class Notifier(BackgroundThread):
    """Sends due messages to each --notify URL on its own thread, woken by each refresh (and every RETRY_S while
    a target fails), so that a slow or failing target never holds up a refresh."""

    thread_name = "notifier"

    def __init__(self, db_path: str, urls: list[str], alert_after_minutes: float = DEFAULT_ALERT_AFTER_MINUTES,
                 on_sent=None) -> None:
        super().__init__()
        self.db_path = db_path
        self.targets = {target_key(url): url for url in urls}
        self.alert_after_us = int(alert_after_minutes * US_PER_MINUTE)
        self.on_sent = on_sent
        self.sent = 0
        self.failed = 0

    def start(self) -> None:
        if self.targets:
            super().start()

    def wake(self) -> None:
        """Look for due messages now (after a refresh)."""
        self._wake.set()

    def run(self) -> None:
        db = open_db(self.db_path)
        failing = False
        try:
            while not self._stop.is_set():
                self._wake.wait(RETRY_S if failing else None)
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    failing = self.send_due(db)
                except Exception:
                    log.exception("notifications: cannot read or record what is due")
                    failing = True
        finally:
            db.close()

    def send_due(self, db: sqlite_utils.Database) -> bool:
        """Send every due message to every target; returns whether some target failed (it is retried later)."""
        failing = False
        for key, url in self.targets.items():
            for alert in due(db, key, self.alert_after_us):
                if self._stop.is_set():
                    return False
                sender = apprise.Apprise()
                sender.add(url)
                if not sender.notify(body=alert.body(), title=alert.title(),
                                     notify_type=apprise.NotifyType.FAILURE if alert.kind == "down"
                                     else apprise.NotifyType.SUCCESS):
                    log.warning("notification to target %s failed (store %s %s); retrying in %.0f s",
                                key, alert.store_id, alert.kind, RETRY_S)
                    self.failed += 1
                    failing = True
                    break  # this target is failing: try it again later, in order
                record(db, alert, key)
                self.sent += 1
                log.info("notified target %s: store %s %s", key, alert.store_id, alert.kind)
                tell(self.on_sent, alert, what="notification listener")
        return failing
