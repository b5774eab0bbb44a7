"""Exporting the database as the Parquet data set the Dask engine reads (`storemon.cluster`), to move from one
machine to a cluster.

The layout: `polls/day=N/part-0.parquet` (one directory per UTC day, as the database partitions polls; columns
store_id, timestamp_utc as a UTC timestamp, status), `menu_hours.parquet` and `timezones.parquet` (the source
files' columns, as text). The same rules read them back, so a report over the export equals the database's.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlite_utils

from storemon.cluster import PARQUET_HOURS, PARQUET_POLLS, PARQUET_ZONES
from storemon.db import read_transaction
from storemon.parse import US_PER_SECOND


def _time_of_day(micros: np.ndarray) -> list[str]:
    """Microseconds since local midnight as `HH:MM:SS.ffffff` (`24:00:00.000000` for the end of the day)."""
    seconds, fraction = np.divmod(micros, US_PER_SECOND)
    return [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{f:06d}"
            for s, f in zip(seconds.tolist(), fraction.tolist())]


def export_parquet(db: sqlite_utils.Database, out_dir: str | Path,
                   progress: Callable[[str, int, int], None] | None = None) -> dict[str, int]:
    """Write the database's polls, business hours and zones under `out_dir` (one read transaction); returns the
    rows written of each. An earlier export there is replaced: the new polls are written beside it and swapped in
    at the end."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f"{PARQUET_POLLS}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    written = {"polls": 0, "hours": 0, "zones": 0}
    with read_transaction(db):
        ids = dict(db.execute("SELECT id, store_id FROM stores").fetchall())
        days = [row[0] for row in db.execute("SELECT DISTINCT day FROM poll_days ORDER BY day").fetchall()]
        for index, day in enumerate(days):
            if progress is not None:
                progress("polls", index, len(days))
            rows = db.execute("SELECT store, polls, ts, active FROM poll_days WHERE day = ? ORDER BY store",
                              [day]).fetchall()
            counts = np.array([r[1] for r in rows], dtype=np.int64)
            stores = np.repeat(np.array([ids[r[0]] for r in rows], dtype=object), counts)
            ts = np.frombuffer(b"".join(r[2] for r in rows), dtype="<i8").astype(np.int64)
            active = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.uint8).astype(bool)
            table = pa.table({
                "store_id": pa.array(stores, type=pa.string()),
                "timestamp_utc": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
                "status": pa.array(np.where(active, "active", "inactive"), type=pa.string()),
            })
            folder = partial / f"day={day}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, folder / "part-0.parquet")
            written["polls"] += len(ts)
        hours = db.execute("SELECT store, day, start_us, end_us FROM business_hours ORDER BY store, day, start_us"
                           ).fetchall()
        array = np.array(hours, dtype=np.int64).reshape(-1, 4)
        pq.write_table(pa.table({
            "store_id": pa.array([ids[k] for k in array[:, 0].tolist()], type=pa.string()),
            "dayOfWeek": pa.array([str(d) for d in array[:, 1].tolist()], type=pa.string()),
            "start_time_local": pa.array(_time_of_day(array[:, 2]), type=pa.string()),
            "end_time_local": pa.array(_time_of_day(array[:, 3]), type=pa.string()),
        }), out / PARQUET_HOURS)
        written["hours"] = len(array)
        zones = db.execute("SELECT store, timezone_str FROM zones ORDER BY store").fetchall()
        pq.write_table(pa.table({
            "store_id": pa.array([ids[k] for k, _ in zones], type=pa.string()),
            "timezone_str": pa.array([name for _, name in zones], type=pa.string()),
        }), out / PARQUET_ZONES)
        written["zones"] = len(zones)
    partial.mkdir(exist_ok=True)
    shutil.rmtree(out / PARQUET_POLLS, ignore_errors=True)
    partial.rename(out / PARQUET_POLLS)
    return written
