"""Opening the SQLite database: one connection per thread, WAL mode, the schema applied idempotently."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

import numpy as np
import sqlite_utils

BUSY_TIMEOUT_S = 30.0


def schema_sql() -> str:
    """The schema: `schema.sql` shipped in the wheel, or the repository's own when run from a checkout."""
    packaged = resources.files("storemon").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "schema.sql").read_text(encoding="utf-8")


def open_db(path: str | Path, busy_timeout: float = BUSY_TIMEOUT_S) -> sqlite_utils.Database:
    """Open (creating if needed) the storemon database at `path`, in WAL mode, with the schema applied.

    Each thread must open its own connection.
    """
    conn = sqlite3.connect(str(path), timeout=busy_timeout, check_same_thread=False)
    db = sqlite_utils.Database(conn, execute_plugins=False)
    db.enable_wal()
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema_sql())
    return db


def get_meta(db: sqlite_utils.Database, key: str, default: object = None) -> object:
    """A value of the `meta` table, or `default`."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return default if row is None else row[0]


def set_meta(db: sqlite_utils.Database, key: str, value: object) -> None:
    """Set a value of the `meta` table (inside the caller's transaction, if any)."""
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])


def read_series(db: sqlite_utils.Database, stores: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Stored polls as (store key, microseconds, active) arrays sorted by store and time; all or some stores."""
    wanted = None if stores is None else set(stores.tolist())
    key_parts, ts_blobs, active_blobs = [], [], []
    for store, count, ts_blob, active_blob in db.execute("SELECT store, polls, ts, active FROM poll_series "
                                                         "ORDER BY store"):
        if wanted is not None and store not in wanted:
            continue
        key_parts.append((store, count))
        ts_blobs.append(ts_blob)
        active_blobs.append(active_blob)
    if not key_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
    store_keys_arr = np.array([k for k, _ in key_parts], dtype=np.int64)
    counts = np.array([c for _, c in key_parts], dtype=np.int64)
    ts = np.frombuffer(b"".join(ts_blobs), dtype="<i8").astype(np.int64)
    active = np.frombuffer(b"".join(active_blobs), dtype=np.uint8).copy()
    return np.repeat(store_keys_arr, counts), ts, active
