"""The report engine: uptime and downtime of every store during business hours, by SPEC sections 4 and 5.

A pure function of a `Snapshot` and its parameters. All stores are computed at once: the status of every store is
a step function of time; its running integral (active time since the store's first step) is one cumulative sum over
all polls sorted by store and time, and the uptime in any interval is the difference of that integral at the
interval's ends, found for every business interval at once with `searchsorted`. Times inside the engine are
integer half-microseconds relative to `as_of`, so that `nearest`'s midpoints between polls stay exact.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from storemon import hours
from storemon.snapshot import Snapshot

INTERPOLATIONS = ("previous", "nearest")
HEADER = (
    "store_id,uptime_last_hour,uptime_last_day,uptime_last_week,"
    "downtime_last_hour,downtime_last_day,downtime_last_week"
)
HOUR_US = hours.US_PER_HOUR
WINDOWS_US = (HOUR_US, 24 * HOUR_US, 7 * 24 * HOUR_US)
# Half-microseconds per hundredth of the unit each column is written in: minutes for the hour, hours otherwise.
HUNDREDTH_OF_UNIT = (2 * 60 * 1_000_000 // 100, 2 * HOUR_US // 100, 2 * HOUR_US // 100)


class ReportCancelled(Exception):
    """The report was cancelled before it finished."""


@dataclass(frozen=True)
class Report:
    """One row per store with at least one poll at or before `as_of`, sorted by store id.

    `hundredths` holds, per store, uptime (hour, day, week) then downtime (hour, day, week) in hundredths of a
    minute (hour columns) or of an hour (day and week columns), rounded half to even.
    """

    as_of_us: int | None
    interpolation: str
    store_ids: list[str]
    hundredths: np.ndarray

    def to_csv(self) -> str:
        """The report as SPEC section 5's CSV text (RFC 4180: an id with a comma or a quote is quoted)."""
        # Figures are whole hundredths from 0 up to a week's: each distinct text is made once and looked up.
        top = int(self.hundredths.max()) + 1 if self.hundredths.size else 0
        texts = [f"{v // 100}.{v % 100:02d}" for v in range(top)]
        lines = [HEADER]
        for store_id, row in zip(self.store_ids, self.hundredths.tolist()):
            lines.append(csv_field(store_id) + "," + ",".join([texts[v] for v in row]))
        return "\n".join(lines) + "\n"


def csv_field(text: str) -> str:
    """A CSV field as RFC 4180 writes it: quoted (quotes doubled) when it holds a comma, a quote or a line break."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def compute_report(
    snapshot: Snapshot,
    as_of_us: int | None = None,
    interpolation: str = "previous",
    progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
) -> Report:
    """Compute the report over `snapshot` at `as_of_us` (default: its latest poll).

    `progress` is called with fractions from 0 to 1; setting `cancel` stops the work with ReportCancelled.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}")

    def step(fraction: float) -> None:
        if cancel is not None and cancel.is_set():
            raise ReportCancelled
        if progress is not None:
            progress(fraction)

    step(0.0)
    as_of = snapshot.max_poll_ts if as_of_us is None else as_of_us
    if as_of is None:
        return Report(None, interpolation, [], np.zeros((0, 6), dtype=np.int64))
    seen = snapshot.poll_ts <= as_of
    store = snapshot.poll_store[seen]
    status = StatusIntegral(store, snapshot.poll_ts[seen], snapshot.poll_active[seen], as_of, interpolation)
    step(0.3)

    week = WINDOWS_US[-1]
    open_store, open_begin, open_end = hours.open_intervals(
        status.stores, snapshot.hours_store, snapshot.hours_day, snapshot.hours_start, snapshot.hours_end,
        snapshot.zones, as_of - week, as_of,
    )
    step(0.6)
    dense = np.searchsorted(status.stores, open_store)
    begin = np.clip(2 * (open_begin - as_of), -2 * week, 0)
    end = np.clip(2 * (open_end - as_of), -2 * week, 0)

    count = len(status.stores)
    hundredths = np.zeros((count, 6), dtype=np.int64)
    for column, (window, unit) in enumerate(zip(WINDOWS_US, HUNDREDTH_OF_UNIT)):
        clipped_begin = np.maximum(begin, -2 * window)
        inside = end > clipped_begin
        g, a, b = dense[inside], clipped_begin[inside], end[inside]
        up = status.integral(g, b) - status.integral(g, a)
        uptime = np.rint(np.bincount(g, weights=up, minlength=count)).astype(np.int64)
        open_time = np.rint(np.bincount(g, weights=b - a, minlength=count)).astype(np.int64)
        hundredths[:, column] = round_half_even(uptime, unit)
        hundredths[:, column + 3] = round_half_even(open_time - uptime, unit)
        step(0.6 + 0.1 * (column + 1))

    ids = np.array([snapshot.store_ids[int(k)] for k in status.stores.tolist()], dtype=object)
    order = np.argsort(ids, kind="stable")
    report = Report(as_of, interpolation, ids[order].tolist(), hundredths[order])
    step(1.0)
    return report


def round_half_even(value: np.ndarray, divisor: int) -> np.ndarray:
    """value / divisor rounded to the nearest integer, ties to even, exactly (value >= 0)."""
    quotient, remainder = np.divmod(value, divisor)
    up = (2 * remainder > divisor) | ((2 * remainder == divisor) & (quotient % 2 == 1))
    return quotient + up


class StatusIntegral:
    """Active time of every store, integrated from a step function built from its polls (SPEC section 4).

    Times are half-microseconds relative to `as_of`. With `previous` the status steps at each poll; with `nearest`
    it steps at the midpoint between consecutive polls (to the later poll's status at the midpoint itself). Before
    its first step a store has its first poll's status.
    """

    def __init__(self, store: np.ndarray, ts: np.ndarray, active: np.ndarray, as_of: int, interpolation: str):
        count = len(store)
        first = np.ones(count, dtype=bool)
        first[1:] = store[1:] != store[:-1]
        self.stores = store[first]
        self.first_index = np.flatnonzero(first)
        self.dense = np.cumsum(first) - 1
        half = 2 * (ts - as_of)
        steps = half.copy()
        if interpolation == "nearest" and count > 1:
            steps[1:] = np.where(first[1:], half[1:], (half[:-1] + half[1:]) // 2)
        # Only the last step before the week matters there: clamp earlier ones to just before the week.
        self.floor = -2 * WINDOWS_US[-1] - 1
        self.steps = np.maximum(steps, self.floor)
        self.active = active.astype(np.int64)
        # One sorted int64 key per (store, time): store-major, so a single searchsorted finds each store's step at
        # any instant. Every time offset lies in [0, span), so the store's part of the key never spills over.
        self.span = -self.floor + 1
        self.keys = self.dense * self.span + (self.steps - self.floor)
        gained = np.zeros(count, dtype=np.int64)
        if count > 1:
            gained[1:] = np.where(first[1:], 0, self.active[:-1] * (self.steps[1:] - self.steps[:-1]))
        running = np.cumsum(gained)
        self.cumulative = running - running[self.first_index][self.dense]

    def integral(self, dense_store: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Active time of each store `dense_store` from its first step up to `at` (negative before it)."""
        keys = dense_store * self.span + (at - self.floor)
        j = np.searchsorted(self.keys, keys, side="right") - 1
        j = np.maximum(j, self.first_index[dense_store])
        return self.cumulative[j] + self.active[j] * (at - self.steps[j])
