"""Each store's state at the data's latest instant (the newest poll): its own latest poll and status, and whether
its business hours have it open then (SPEC section 3). Kept in the `store_state` table and worked out again by
every ingest that changes the data, in the ingest's transaction (like incidents).

The console and the metrics read it instead of working it out: that takes every store's business hours, 1.3 million
rows at 140,000 stores, and tens of seconds on a slow machine; reading the stored state takes one row per store.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlite_utils

from storemon import hours, polls


def open_at(keys: np.ndarray, hours_rows: np.ndarray, zones: dict[int, str], instant_us: int) -> np.ndarray:
    """Whether each store of `keys` is open at `instant_us` (SPEC section 3); `hours_rows` is (store, day,
    start_us, end_us)."""
    open_store, begin, end = hours.open_intervals(
        keys, hours_rows[:, 0], hours_rows[:, 1], hours_rows[:, 2], hours_rows[:, 3], zones, instant_us,
        instant_us + 1,
    )
    return np.isin(keys, open_store[(begin <= instant_us) & (instant_us < end)])


def record(db: sqlite_utils.Database, hours_rows: np.ndarray, zones: dict[int, str]) -> int:
    """Work out every polled store's state from its polls and the given business hours and zones, replacing what
    `store_state` held (inside the caller's write transaction); returns the number of stores."""
    last = polls.latest(db)
    db.execute("DELETE FROM store_state")
    if not len(last):
        return 0
    open_now = open_at(last.store, hours_rows, zones, int(last.ts.max()))
    db.conn.executemany(
        "INSERT INTO store_state (store, last_poll_us, last_active, open_now) VALUES (?, ?, ?, ?)",
        zip(last.store.tolist(), last.ts.tolist(), last.active.astype(int).tolist(), open_now.astype(int).tolist()),
    )
    return len(last)


def read(db: sqlite_utils.Database) -> pd.DataFrame:
    """Every polled store's state, sorted by store id: store_id, zone (as the file names it, "" when it has none),
    last_poll_us, last_active, open_now."""
    rows = db.execute(
        """
        SELECT s.store_id, COALESCE(z.timezone_str, ''), t.last_poll_us, t.last_active, t.open_now
        FROM store_state t
        JOIN stores s ON s.id = t.store
        LEFT JOIN zones z ON z.store = t.store
        ORDER BY s.store_id
        """
    ).fetchall()
    frame = pd.DataFrame(rows, columns=["store_id", "zone", "last_poll_us", "last_active", "open_now"])
    return frame.astype({"store_id": object, "zone": object, "last_poll_us": np.int64, "last_active": bool,
                         "open_now": bool})


@dataclass(frozen=True)
class FleetNow:
    """How many stores there are, are open, and are down (open, latest poll inactive) at the data's latest
    instant, which is `latest_us`."""

    stores: int
    open: int
    down: int
    latest_us: int | None


def fleet_now(db: sqlite_utils.Database) -> FleetNow:
    """The fleet's counts at the data's latest instant (what the metrics show)."""
    stores, open_count, down, latest = db.execute(
        "SELECT COUNT(*), TOTAL(open_now), TOTAL(open_now AND NOT last_active), MAX(last_poll_us) FROM store_state"
    ).fetchone()
    return FleetNow(stores, int(open_count), int(down), latest)
