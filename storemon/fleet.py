"""The fleet at a glance, for the console: each store's state at the data's latest instant, and one store's detail.

"Now" is the data's as_of (the newest poll): the data is a replay, and it is the instant the reports use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlite_utils

from storemon import hours, polls, reports
from storemon.db import read_transaction
from storemon.engine import WINDOWS_US, StatusIntegral
from storemon.reports import ReportRef
from storemon.snapshot import data_state
from storemon.zones import DEFAULT_ZONE, lookup_zone, zone_or_default

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class FleetRow:
    """One store as the stores table shows it."""

    store_id: str
    zone: str
    local_time: str
    open_now: bool
    last_active: bool
    last_poll_age_s: float
    uptime_day: str
    uptime_week: str

    @property
    def offline_in_hours(self) -> bool:
        """Open now, and its last poll said inactive: what the operator must see first."""
        return self.open_now and not self.last_active


@dataclass(frozen=True)
class Fleet:
    """Every store at the data's latest instant, and the report its uptime figures come from."""

    as_of_us: int | None
    rows: list[FleetRow]
    report: ReportRef | None


def load_fleet(db: sqlite_utils.Database) -> Fleet:
    """Every store with polls: zone, local time, open now, last status and its age, uptime from the last report."""
    with read_transaction(db):
        last, zones, hours_rows = _latest_polls_and_hours(db)
        store_ids = dict(db.execute("SELECT id, store_id FROM stores").fetchall())
        report, figures = reports.latest_complete(db)
    if len(last) == 0:
        return Fleet(None, [], report)
    keys, last_ts, last_active = last.store, last.ts, last.active
    as_of = int(last_ts.max())
    open_now = open_at(keys, hours_rows, zones, as_of)
    local_times: dict[str, str] = {}
    rows = []
    for key, ts, active, is_open in zip(keys.tolist(), last_ts.tolist(), last_active.tolist(), open_now.tolist()):
        name = zones.get(key)
        shown_zone = name if name and lookup_zone(name) else f"{DEFAULT_ZONE}*"
        if shown_zone not in local_times:
            local_times[shown_zone] = local_time(as_of, zone_or_default(name))
        store_id = store_ids[key]
        report_row = figures.get(store_id)
        rows.append(FleetRow(
            store_id, shown_zone, local_times[shown_zone], bool(is_open), bool(active), (as_of - ts) / 1e6,
            report_row[1] if report_row else "", report_row[2] if report_row else "",
        ))
    rows.sort(key=lambda r: r.store_id)
    return Fleet(as_of, rows, report)


def _latest_polls_and_hours(db: sqlite_utils.Database) -> tuple[polls.Polls, dict[int, str], np.ndarray]:
    """Every store's latest poll, its zone, and the business hours as (store, day, start_us, end_us) rows (call
    inside a read transaction)."""
    zones = dict(db.execute("SELECT store, timezone_str FROM zones").fetchall())
    hours_rows = np.array(db.execute("SELECT store, day, start_us, end_us FROM business_hours").fetchall(),
                          dtype=np.int64).reshape(-1, 4)
    return polls.latest(db), zones, hours_rows


def open_at(keys: np.ndarray, hours_rows: np.ndarray, zones: dict[int, str], instant_us: int) -> np.ndarray:
    """Whether each store of `keys` is open at `instant_us` (SPEC section 3); `hours_rows` is (store, day,
    start_us, end_us)."""
    open_store, begin, end = hours.open_intervals(
        keys, hours_rows[:, 0], hours_rows[:, 1], hours_rows[:, 2], hours_rows[:, 3], zones, instant_us,
        instant_us + 1,
    )
    return np.isin(keys, open_store[(begin <= instant_us) & (instant_us < end)])


@dataclass(frozen=True)
class FleetNow:
    """How many stores there are, are open, and are down (open, latest poll inactive) at the data's latest
    instant, which is `latest_us`."""

    stores: int
    open: int
    down: int
    latest_us: int | None


def fleet_now(db: sqlite_utils.Database) -> FleetNow:
    """The fleet's counts at the data's latest instant (what the metrics and the console header show)."""
    with read_transaction(db):
        last, zones, hours_rows = _latest_polls_and_hours(db)
    if len(last) == 0:
        return FleetNow(0, 0, 0, None)
    as_of = int(last.ts.max())
    open_now = open_at(last.store, hours_rows, zones, as_of)
    return FleetNow(len(last), int(open_now.sum()), int((open_now & ~last.active).sum()), as_of)


def local_time(micros: int, zone) -> str:
    return datetime.fromtimestamp(micros / 1e6, zone).strftime("%a %H:%M")


@dataclass(frozen=True)
class StoreDetail:
    """One store: its hours in local time, its status over the last day and week as timelines, its figures."""

    store_id: str
    zone: str
    hours_lines: list[str]
    day_timeline: list[tuple[float, float]]
    week_timeline: list[tuple[float, float]]
    figures: list[str] | None
    report: ReportRef | None


def format_time_of_day(micros: int) -> str:
    seconds = micros // 1_000_000
    text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}"
    return text + (f":{seconds % 60:02d}" if seconds % 60 else "")


def hours_lines(rows: list[tuple[int, int, int]]) -> list[str]:
    """Business hours as the file states them, a line per day."""
    if not rows:
        return ["open 24 hours, 7 days (no business hours listed)"]
    lines = []
    for day, name in enumerate(DAY_NAMES):
        spans = sorted((start, end) for d, start, end in rows if d == day)
        text = ", ".join(f"{format_time_of_day(s)}-{format_time_of_day(e)}" for s, e in spans) or "closed"
        lines.append(f"{name}  {text}")
    return lines


def store_detail(db: sqlite_utils.Database, store_id: str, cells_day: int = 48, cells_week: int = 56
                 ) -> StoreDetail | None:
    """The detail of one store at the data's as_of, or None if it has no polls."""
    with read_transaction(db):
        key_row = db.execute("SELECT id FROM stores WHERE store_id = ?", [store_id]).fetchone()
        if key_row is None:
            return None
        key = key_row[0]
        as_of = data_state(db).max_poll_ts
        series = None if as_of is None else polls.store_polls(
            db, key, int(polls.day_of(as_of - WINDOWS_US[-1])), int(polls.day_of(as_of)))
        zone_row = db.execute("SELECT timezone_str FROM zones WHERE store = ?", [key]).fetchone()
        rows = db.execute("SELECT day, start_us, end_us FROM business_hours WHERE store = ?", [key]).fetchall()
        report, figures = reports.latest_complete_row(db, store_id)
    if series is None or not len(series):
        return None
    zone_name = zone_row[0] if zone_row else None
    ts, active = series.ts, series.active
    seen = ts <= as_of
    status = StatusIntegral(np.zeros(int(seen.sum()), dtype=np.int64), ts[seen], active[seen], as_of, "previous")
    hours_arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    week = WINDOWS_US[-1]
    _, begin, end = hours.open_intervals(
        np.array([key]), np.full(len(hours_arr), key), hours_arr[:, 0], hours_arr[:, 1], hours_arr[:, 2],
        {key: zone_name} if zone_name else {}, as_of - week, as_of,
    )
    begin2, end2 = 2 * (begin - as_of), 2 * (end - as_of)

    def timeline(span: int, cells: int) -> list[tuple[float, float]]:
        edges = np.linspace(-2 * span, 0, cells + 1).astype(np.int64)
        lo, hi = edges[:-1, None], edges[1:, None]
        a, b = np.maximum(begin2[None, :], lo), np.minimum(end2[None, :], hi)
        inside = b > a
        a, b = np.where(inside, a, 0), np.where(inside, b, 0)
        dense = np.zeros(a.shape, dtype=np.int64)
        up = np.where(inside, status.integral(dense.ravel(), b.ravel()).reshape(a.shape)
                      - status.integral(dense.ravel(), a.ravel()).reshape(a.shape), 0)
        open_time = (b - a).sum(axis=1)
        cell = (hi - lo).ravel()
        return [(float(o) / c, float(u) / o if o else 0.0) for o, u, c in zip(open_time, up.sum(axis=1), cell)]

    shown_zone = zone_name if zone_name and lookup_zone(zone_name) else f"{DEFAULT_ZONE} (default)"
    return StoreDetail(
        store_id, shown_zone, hours_lines([tuple(r) for r in rows]),
        timeline(WINDOWS_US[1], cells_day), timeline(week, cells_week), figures, report,
    )
