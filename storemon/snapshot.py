"""Consistent, in-memory snapshots of the data a report needs, read from the database in one transaction.

A report reads only what its windows need: the UTC day partitions from the week's start to `as_of`, plus each
store's last poll before them, and it reads them a batch of stores at a time, so that its memory follows the batch
and not the fleet. Every batch is read inside one read transaction, so a report sees one data version whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain

import numpy as np
import sqlite_utils

from storemon import polls
from storemon.db import get_meta
from storemon.hours import US_PER_DAY
from storemon.parse import format_instant

WEEK_US = 7 * US_PER_DAY
BATCH_STORES = 8192
FETCH_ROWS = 65_536  # business-hours rows fetched from SQLite at a time


class BeforeRetainedData(ValueError):
    """The report's week starts before the polls that retention kept: the numbers would be wrong."""

    def __init__(self, as_of_us: int, earliest_us: int) -> None:
        super().__init__(
            f"as_of {format_instant(as_of_us)} is before the retained data: the earliest as_of this database can "
            f"answer is {format_instant(earliest_us)} (older polls were pruned by --retain-days)"
        )
        self.earliest_us = earliest_us


@dataclass(frozen=True)
class Snapshot:
    """Everything the engine reads for some stores: polls sorted by store key and time, business hours, zones,
    store ids. Times are integer microseconds (UTC for polls, since local midnight for hours)."""

    store_ids: dict[int, str]
    poll_store: np.ndarray
    poll_ts: np.ndarray
    poll_active: np.ndarray
    hours_store: np.ndarray
    hours_day: np.ndarray
    hours_start: np.ndarray
    hours_end: np.ndarray
    zones: dict[int, str]
    data_version: int
    max_poll_ts: int | None


@dataclass(frozen=True)
class DataState:
    """What a report needs to know of the data before reading it."""

    data_version: int
    max_poll_ts: int | None
    retained_from: int | None

    def earliest_as_of(self) -> int | None:
        """The earliest as_of whose week is wholly retained (None: every as_of is)."""
        return None if self.retained_from is None else self.retained_from + WEEK_US

    def check_as_of(self, as_of_us: int) -> None:
        """Raise BeforeRetainedData when the week before `as_of_us` reaches before the retained polls."""
        earliest = self.earliest_as_of()
        if earliest is not None and as_of_us < earliest:
            raise BeforeRetainedData(as_of_us, earliest)


def data_state(db: sqlite_utils.Database) -> DataState:
    """The data version, the newest poll, and where retention has cut the history."""
    max_ts = get_meta(db, "max_poll_ts")
    retained = get_meta(db, "retained_from")
    return DataState(int(get_meta(db, "data_version", 0) or 0), None if max_ts is None else int(max_ts),
                     None if retained is None else int(retained))


def hours_and_zones(db: sqlite_utils.Database, key_lo: int = -(2**62), key_hi: int = 2**62
                    ) -> tuple[np.ndarray, dict[int, str]]:
    """The business hours of stores with keys in [key_lo, key_hi] as (store, day, start_us, end_us) rows, and
    their zone names as the file gives them."""
    cursor = db.execute("SELECT store, day, start_us, end_us FROM business_hours WHERE store BETWEEN ? AND ?",
                        [key_lo, key_hi])
    parts = [np.zeros(0, dtype=np.int64)]
    while rows := cursor.fetchmany(FETCH_ROWS):  # a block at a time: 1.29M rows fetched whole peaked 185 MB higher
        parts.append(np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=4 * len(rows)))
    hours = np.concatenate(parts).reshape(-1, 4)
    zones = dict(db.execute("SELECT store, timezone_str FROM zones WHERE store BETWEEN ? AND ?",
                            [key_lo, key_hi]).fetchall())
    return hours, zones


def batches(db: sqlite_utils.Database, batch_stores: int = BATCH_STORES) -> list[tuple[int, int]]:
    """Store key ranges [lo, hi] of at most `batch_stores` keys covering every store."""
    lo, hi = polls.store_key_range(db)
    return [(start, min(start + batch_stores - 1, hi)) for start in range(lo, hi + 1, batch_stores)]


def load_snapshot(db: sqlite_utils.Database, as_of_us: int, key_lo: int, key_hi: int,
                  state: DataState | None = None) -> Snapshot:
    """The snapshot of stores with keys in [key_lo, key_hi] for a report at `as_of_us` (call inside a read
    transaction to combine several batches consistently)."""
    state = state or data_state(db)
    found = polls.read_window(db, int(polls.day_of(as_of_us - WEEK_US)), int(polls.day_of(as_of_us)), key_lo, key_hi)
    hours, zones = hours_and_zones(db, key_lo, key_hi)
    store_ids = dict(db.execute("SELECT id, store_id FROM stores WHERE id BETWEEN ? AND ?",
                                [key_lo, key_hi]).fetchall())
    return Snapshot(store_ids, found.store, found.ts, found.active, hours[:, 0], hours[:, 1], hours[:, 2],
                    hours[:, 3], zones, state.data_version, state.max_poll_ts)


def snapshots(db: sqlite_utils.Database, as_of_us: int, state: DataState,
              batch_stores: int = BATCH_STORES) -> Iterator[Snapshot]:
    """The snapshots of every batch of stores, in key order (call inside a read transaction)."""
    for key_lo, key_hi in batches(db, batch_stores):
        yield load_snapshot(db, as_of_us, key_lo, key_hi, state)
