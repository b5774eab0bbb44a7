"""A consistent, in-memory snapshot of the data a report needs, read from the database in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlite_utils

from storemon.db import get_meta, read_series


@dataclass(frozen=True)
class Snapshot:
    """Everything the engine reads: polls sorted by store key and time, business hours, zones, store ids.

    Times are integer microseconds (UTC for polls, since local midnight for hours).
    """

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


def load_snapshot(db: sqlite_utils.Database) -> Snapshot:
    """Read one consistent snapshot of the data: an ingest running meanwhile is seen whole or not at all."""
    with db.atomic():
        poll_store, poll_ts, poll_active = read_series(db)
        hours = np.array(
            db.execute("SELECT store, day, start_us, end_us FROM business_hours").fetchall(), dtype=np.int64
        ).reshape(-1, 4)
        zones = dict(db.execute("SELECT store, timezone_str FROM zones").fetchall())
        store_ids = dict(db.execute("SELECT id, store_id FROM stores").fetchall())
        data_version = int(get_meta(db, "data_version", 0) or 0)
    max_poll_ts = int(poll_ts.max()) if len(poll_ts) else None
    return Snapshot(
        store_ids, poll_store, poll_ts, poll_active.astype(bool),
        hours[:, 0], hours[:, 1], hours[:, 2], hours[:, 3], zones, data_version, max_poll_ts,
    )
