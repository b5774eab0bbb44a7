"""The fleet at a glance, for the console: each store's state at the data's latest instant, and one store's detail.

"Now" is the data's as_of (the newest poll): the data is a replay, and it is the instant the reports use. The fleet
is held as columns (one array per field, one entry per store), built with array operations: at 140,000 stores a
per-store Python object would cost more than the whole query.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlite_utils

from storemon import hours, polls, reports, state
from storemon.db import read_transaction
from storemon.engine import HEADER, WINDOWS_US, StatusIntegral
from storemon.reports import ReportRef
from storemon.snapshot import data_state
from storemon.zones import DEFAULT_ZONE, lookup_zone, zone_or_default

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
UNKNOWN_ZONE = f"{DEFAULT_ZONE}*"  # the zone shown for a store whose zone is missing or unknown
DAY_FIGURE, WEEK_FIGURE = 2, 3  # the report CSV's columns uptime_last_day and uptime_last_week


@dataclass(frozen=True)
class Fleet:
    """Every store with polls at the data's latest instant, as columns sorted by store id, and the report its
    uptime figures come from.

    store_id, zone and local_time hold strings (zone is `UNKNOWN_ZONE` when the store has none that is known);
    uptime_day and uptime_week hold the report's figures (hours), NaN for a store it has no row for;
    last_poll_us is each store's latest poll (UTC microseconds). data_version is the data's, when it was read.
    """

    as_of_us: int | None
    data_version: int
    store_id: np.ndarray
    zone: np.ndarray
    local_time: np.ndarray
    open_now: np.ndarray
    last_active: np.ndarray
    last_poll_us: np.ndarray
    uptime_day: np.ndarray
    uptime_week: np.ndarray
    report: ReportRef | None

    @staticmethod
    def empty(data_version: int = 0, report: ReportRef | None = None) -> Fleet:
        strings, flags, figures = np.array([], dtype=object), np.zeros(0, dtype=bool), np.zeros(0)
        return Fleet(None, data_version, strings, strings, strings, flags, flags, np.zeros(0, dtype=np.int64),
                     figures, figures, report)

    def __len__(self) -> int:
        return len(self.store_id)

    @property
    def offline_in_hours(self) -> np.ndarray:
        """Open now, and the last poll said inactive: what the operator must see first."""
        return self.open_now & ~self.last_active

    @property
    def last_poll_age_s(self) -> np.ndarray:
        return (self.as_of_us - self.last_poll_us) / 1e6 if self.as_of_us is not None else np.zeros(len(self))

    def down(self) -> set[str]:
        """The ids of the stores offline during their business hours."""
        return set(self.store_id[self.offline_in_hours].tolist())


def load_fleet(db: sqlite_utils.Database, previous: Fleet | None = None) -> Fleet:
    """Every store with polls: zone, local time, open now, last status and its age, uptime from the last report.

    The state is the one the last ingest stored (storemon/state.py). When the data has not changed since
    `previous` was loaded, only the report's figures are read again (what a finished report changes): a report
    costs the fleet one CSV parse, not a reload of every store.
    """
    with read_transaction(db):
        version = data_state(db).data_version
        report, report_csv = reports.latest_complete(db)
        if previous is not None and previous.data_version == version:
            if previous.report == report:
                return previous
            day, week = report_figures(previous.store_id, report_csv)
            return replace(previous, report=report, uptime_day=day, uptime_week=week)
        frame = state.read(db)
    if frame.empty:
        return Fleet.empty(version, report)
    as_of = int(frame["last_poll_us"].max())
    shown = {name: name if lookup_zone(name) else UNKNOWN_ZONE for name in frame["zone"].unique().tolist()}
    zone = frame["zone"].map(shown)
    clocks = {name: local_time(as_of, zone_or_default(name)) for name in set(shown.values())}
    store_id = frame["store_id"].to_numpy(dtype=object)
    day, week = report_figures(store_id, report_csv)
    return Fleet(as_of, version, store_id, zone.to_numpy(dtype=object), zone.map(clocks).to_numpy(dtype=object),
                 frame["open_now"].to_numpy(dtype=bool), frame["last_active"].to_numpy(dtype=bool),
                 frame["last_poll_us"].to_numpy(dtype=np.int64), day, week, report)


def report_figures(store_id: np.ndarray, report_csv: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The uptime over the last day and the last week of each of `store_id` in a report's CSV (one row per store),
    as floats; NaN for a store the report has no row for.

    pyarrow parses the CSV and matches the ids outside the GIL: the console's screen keeps answering keys while a
    140,000-store report is read (with pandas' parser, 52 ms pauses; with this one, 7 ms).
    """
    blank = np.full(len(store_id), np.nan)
    if not report_csv:
        return blank, blank
    names = HEADER.split(",")
    columns = [names[0], names[DAY_FIGURE], names[WEEK_FIGURE]]
    table = pacsv.read_csv(
        pa.py_buffer(report_csv.encode()),
        convert_options=pacsv.ConvertOptions(include_columns=columns, column_types={
            columns[0]: pa.string(), columns[1]: pa.float64(), columns[2]: pa.float64()}),
    )
    if not table.num_rows:
        return blank, blank
    found = pc.index_in(pa.array(store_id, type=pa.string()), value_set=table[columns[0]])
    missing = found.is_null().to_numpy(zero_copy_only=False)
    at = found.fill_null(0).to_numpy()
    day, week = table[columns[1]].to_numpy(), table[columns[2]].to_numpy()
    return np.where(missing, np.nan, day[at]), np.where(missing, np.nan, week[at])


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
