"""Loop-shaped sample data: the three CSV files, with the shapes the real releases have.

19-digit and UUID store ids; polls about hourly with jitter, gaps and outages in runs; up to three business-hours
segments a day, overnight segments, days missing, ends at 23:59:59 and 23:59:00, 24x7 stores without hours rows;
US zones and stores without a zone row. Deterministic for a seed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

END = np.datetime64("2023-01-25T18:13:22", "us")
US_ZONES = [
    "America/Chicago", "America/New_York", "America/Denver", "America/Los_Angeles", "America/Phoenix",
    "America/Boise", "America/Detroit", "America/Indiana/Indianapolis", "America/Anchorage", "Pacific/Honolulu",
]
POLL_EVERY_US = 50 * 60 * 1_000_000


def store_ids(rng: np.random.Generator, count: int) -> list[str]:
    """Half 19-digit integers, half UUIDs, like the two public releases."""
    ids = []
    for i in range(count):
        if i % 2 == 0:
            ids.append(str(int(rng.integers(10**18, 9 * 10**18))))
        else:
            ids.append(str(uuid.UUID(bytes=rng.bytes(16), version=4)))
    return ids


def polls(rng: np.random.Generator, ids: list[str], days: int) -> pd.DataFrame:
    """About one poll an hour per store, jittered, with missing polls and outages lasting a few polls."""
    hours = days * 24 * 60 * 60_000_000 // POLL_EVERY_US
    count = len(ids)
    start = END - np.timedelta64(days * 24 * 3_600_000_000, "us")
    slot = np.tile(np.arange(hours, dtype=np.int64), count)
    store = np.repeat(np.arange(count), hours)
    jitter = rng.integers(0, POLL_EVERY_US, size=len(slot))
    ts = start + (slot * POLL_EVERY_US + jitter).astype("timedelta64[us]")
    kept = rng.random(len(slot)) > 0.04
    flaky = np.repeat(rng.random(count) < 0.3, hours)
    kept &= ~(flaky & (rng.random(len(slot)) < 0.3))
    # Outages: runs of inactive polls starting at random slots.
    inactive = np.zeros(len(slot), dtype=bool)
    starts = np.flatnonzero(rng.random(len(slot)) < 0.015)
    lengths = rng.integers(1, 8, size=len(starts))
    for offset in range(int(lengths.max(initial=0))):
        run = starts[lengths > offset] + offset
        run = run[run < len(slot)]
        inactive[run] = True
    always_down = np.repeat(rng.random(count) < 0.02, hours)
    inactive |= always_down
    text = pd.Series(np.datetime_as_string(ts[kept], unit="us"))
    trimmed = text.str.rstrip("0").str.rstrip(".")
    stamps = trimmed.str.replace("T", " ", regex=False) + " UTC"
    return pd.DataFrame({
        "store_id": np.array(ids, dtype=object)[store[kept]],
        "status": np.where(inactive[kept], "inactive", "active"),
        "timestamp_utc": stamps.to_numpy(),
    })


def menu_hours(rng: np.random.Generator, ids: list[str]) -> Iterator[tuple]:
    """Business hours: 24x7 stores get no rows; others 1-3 segments a day, some days missing, some overnight."""
    for store_id in ids:
        yield from _store_hours(rng, store_id)


def _store_hours(rng: np.random.Generator, store_id: str) -> list[tuple]:
    rows: list[tuple] = []
    kind = rng.random()
    if kind < 0.15:
        return rows  # open 24x7: no rows
    days = [d for d in range(7) if not (kind > 0.85 and rng.random() < 0.3)]
    for day in days:
        pattern = rng.random()
        if pattern < 0.1:
            rows.append((store_id, day, "00:00:00", "23:59:59"))
        elif pattern < 0.2:
            rows.append((store_id, day, "17:00:00", "02:00:00"))
        elif pattern < 0.3:
            rows.append((store_id, day, "10:00:00", "23:59:00"))
        else:
            opens = int(rng.integers(6, 12))
            for _ in range(int(rng.integers(1, 4))):
                closes = min(opens + int(rng.integers(2, 7)), 23)
                rows.append((store_id, day, f"{opens:02d}:{int(rng.integers(0, 4)) * 15:02d}:00",
                             f"{closes:02d}:00:00"))
                opens = closes + 1
                if opens >= 23:
                    break
    return rows


def timezones(rng: np.random.Generator, ids: list[str]) -> pd.DataFrame:
    """A US zone for most stores; about one in ten has no row (so it is in the default zone)."""
    listed = [store_id for store_id in ids if rng.random() > 0.1]
    weights = np.array([30, 30, 8, 15, 5, 2, 3, 3, 2, 2], dtype=float)
    zones = rng.choice(US_ZONES, size=len(listed), p=weights / weights.sum())
    return pd.DataFrame({"store_id": listed, "timezone_str": zones})


POLL_BATCH_STORES = 4_000
HOURS_BATCH_ROWS = 100_000
HOURS_COLUMNS = ["store_id", "dayOfWeek", "start_time_local", "end_time_local"]


def generate(out: Path, *, stores: int = 200, days: int = 8, seed: int = 1,
             progress: Callable[[str, float], None] | None = None) -> dict[str, int]:
    """Write store_status.csv, menu_hours.csv and timezones.csv to `out`; returns the row count of each.

    Written a batch of stores at a time, so memory does not grow with the fleet. `progress(step, fraction)` is
    told how far it got.
    """
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    ids = store_ids(rng, stores)
    counts = {"store_status.csv": 0, "menu_hours.csv": 0, "timezones.csv": 0}
    with (out / "store_status.csv").open("w", newline="") as handle:
        for start in range(0, stores, POLL_BATCH_STORES):
            frame = polls(rng, ids[start:start + POLL_BATCH_STORES], days)
            frame.to_csv(handle, index=False, header=start == 0)
            counts["store_status.csv"] += len(frame)
            if progress is not None:
                progress("polls", min(1.0, (start + POLL_BATCH_STORES) / stores))
    with (out / "menu_hours.csv").open("w", newline="") as handle:
        handle.write(",".join(HOURS_COLUMNS) + "\n")
        batch: list[tuple] = []
        for row in menu_hours(rng, ids):
            batch.append(row)
            if len(batch) >= HOURS_BATCH_ROWS:
                pd.DataFrame(batch, columns=HOURS_COLUMNS).to_csv(handle, index=False, header=False)
                counts["menu_hours.csv"] += len(batch)
                batch = []
        pd.DataFrame(batch, columns=HOURS_COLUMNS).to_csv(handle, index=False, header=False)
        counts["menu_hours.csv"] += len(batch)
    zones = timezones(rng, ids)
    zones.to_csv(out / "timezones.csv", index=False)
    counts["timezones.csv"] = len(zones)
    if progress is not None:
        progress("hours and zones", 1.0)
    return counts
