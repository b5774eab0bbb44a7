"""The poll store: status polls kept in time partitions, one row per (UTC day, store), and all SQL on them.

A partition row holds one store's polls of one UTC day as two packed arrays (instants as int64 little-endian
microseconds, sorted and unique; statuses as one byte each, 1 = active), with its count and its last poll. A report
reads only the days its windows cover, plus each store's last poll before them; a refresh rewrites only the
partitions its new polls fall in; retention drops whole old partitions. This module is the one place that knows
the table and its encoding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import sqlite_utils

from storemon.parse import US_PER_DAY

EMPTY_KEYS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Polls:
    """Polls as parallel arrays sorted by store key, then time: store key, microseconds (UTC), active."""

    store: np.ndarray
    ts: np.ndarray
    active: np.ndarray

    @staticmethod
    def empty() -> Polls:
        return Polls(EMPTY_KEYS, EMPTY_KEYS, np.zeros(0, dtype=bool))

    def __len__(self) -> int:
        return len(self.ts)


def day_of(micros: np.ndarray | int) -> np.ndarray | int:
    """The UTC day (days since 1970-01-01) of instants in microseconds: the partition they belong to."""
    return micros // US_PER_DAY


def _decode_rows(rows: list[tuple]) -> Polls:
    """Rows of (store, day, polls, ts blob, active blob) as Polls, ordered by store then day."""
    if not rows:
        return Polls.empty()
    store = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    day = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    counts = np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows))
    order = np.lexsort((day, store)).tolist()
    ts = np.frombuffer(b"".join([rows[i][3] for i in order]), dtype="<i8").astype(np.int64)
    active = np.frombuffer(b"".join([rows[i][4] for i in order]), dtype=np.uint8).astype(bool)
    return Polls(np.repeat(store[order], counts[order]), ts, active)


def read_window(db: sqlite_utils.Database, first_day: int, last_day: int, key_lo: int, key_hi: int) -> Polls:
    """Every poll of stores with keys in [key_lo, key_hi] on UTC days [first_day, last_day], plus each such store's
    last poll before `first_day` (what SPEC section 4 needs at the window's edge), sorted by store and time."""
    rows = db.execute(
        "SELECT store, day, polls, ts, active FROM poll_days WHERE day BETWEEN ? AND ? AND store BETWEEN ? AND ?",
        [first_day, last_day, key_lo, key_hi],
    ).fetchall()
    window = _decode_rows(rows)
    before = last_before(db, first_day, key_lo, key_hi)
    if not len(before):
        return window
    # Each store's earlier poll goes just before its first poll in the window (a sorted insertion).
    at = np.searchsorted(window.store, before.store, side="left")
    return Polls(np.insert(window.store, at, before.store), np.insert(window.ts, at, before.ts),
                 np.insert(window.active, at, before.active))


def last_before(db: sqlite_utils.Database, day: int, key_lo: int, key_hi: int) -> Polls:
    """Each store's (keys in [key_lo, key_hi]) last poll on a UTC day before `day`, found by one index seek each."""
    rows = db.execute(
        """
        SELECT p.store, p.last_ts, p.last_active
        FROM stores s
        JOIN poll_days p ON p.store = s.id
            AND p.day = (SELECT MAX(q.day) FROM poll_days q WHERE q.store = s.id AND q.day < :day)
        WHERE s.id BETWEEN :lo AND :hi
        ORDER BY s.id
        """,
        {"day": day, "lo": key_lo, "hi": key_hi},
    ).fetchall()
    return _as_polls(rows)


def latest(db: sqlite_utils.Database) -> Polls:
    """Every store's latest poll: the newest day's partitions in one range scan, then one index seek for each
    store with no poll that day (a store that polls every day costs no seek)."""
    newest = db.execute("SELECT MAX(day) FROM poll_days").fetchone()[0]
    if newest is None:
        return Polls.empty()
    found = _as_polls(db.execute("SELECT store, last_ts, last_active FROM poll_days WHERE day = ?",
                                 [newest]).fetchall())
    keys = np.array(db.execute("SELECT id FROM stores").fetchall(), dtype=np.int64).ravel()
    missing = np.setdiff1d(keys, found.store)
    if not len(missing):
        return found
    earlier = _as_polls(db.execute(
        """
        SELECT p.store, p.last_ts, p.last_active
        FROM json_each(:keys) k
        JOIN poll_days p ON p.store = k.value
            AND p.day = (SELECT MAX(q.day) FROM poll_days q WHERE q.store = k.value AND q.day < :day)
        """,
        {"keys": json.dumps(missing.tolist()), "day": newest},
    ).fetchall())
    store = np.concatenate([found.store, earlier.store])
    order = np.argsort(store)
    return Polls(store[order], np.concatenate([found.ts, earlier.ts])[order],
                 np.concatenate([found.active, earlier.active])[order])


def _as_polls(rows: list[tuple[int, int, int]]) -> Polls:
    """Rows of (store, ts, active) as Polls."""
    if not rows:
        return Polls.empty()
    array = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return Polls(array[:, 0], array[:, 1], array[:, 2].astype(bool))


def store_polls(db: sqlite_utils.Database, key: int, first_day: int, last_day: int) -> Polls:
    """One store's polls on days [first_day, last_day] and its last poll before them."""
    return read_window(db, first_day, last_day, key, key)


def store_key_range(db: sqlite_utils.Database) -> tuple[int, int]:
    """The smallest and largest store key (0, -1 when there is none)."""
    lo, hi = db.execute("SELECT MIN(id), MAX(id) FROM stores").fetchone()
    return (0, -1) if lo is None else (int(lo), int(hi))


def latest_per_instant(store: np.ndarray, ts: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Indices, sorted by store then time, of the poll that counts at each (store, instant): the highest rank
    (SPEC section 1: the later line, and the later file, wins)."""
    by_rank = np.argsort(rank, kind="stable")  # ranks usually come in order: timsort takes one pass then
    order = by_rank[np.lexsort((ts[by_rank], store[by_rank]))]  # stable, so ties stay in rank order
    store, ts = store[order], ts[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (store[1:] != store[:-1]) | (ts[1:] != ts[:-1])
    return order[last]


def merge_day(db: sqlite_utils.Database, day: int, keys: np.ndarray, ts: np.ndarray, active: np.ndarray,
              order: np.ndarray) -> int:
    """Merge new polls of one UTC day into their partitions (inside the caller's transaction).

    `order` ranks the new polls (file order): at one store and instant the later one wins, and any new poll wins
    over a stored one. Returns the change in the number of stored polls.
    """
    touched = np.unique(keys)
    stored = db.execute(
        "SELECT store, polls, ts, active FROM poll_days WHERE day = ? AND store BETWEEN ? AND ?",
        [day, int(touched[0]), int(touched[-1])],
    ).fetchall()
    wanted = set(touched.tolist())
    stored = [row for row in stored if row[0] in wanted]
    old_count = sum(row[1] for row in stored)
    if stored:
        old_store = np.repeat(np.array([r[0] for r in stored], dtype=np.int64),
                              np.array([r[1] for r in stored], dtype=np.int64))
        old_ts = np.frombuffer(b"".join(r[2] for r in stored), dtype="<i8").astype(np.int64)
        old_active = np.frombuffer(b"".join(r[3] for r in stored), dtype=np.uint8).astype(bool)
        keys = np.concatenate([old_store, keys])
        ts = np.concatenate([old_ts, ts])
        active = np.concatenate([old_active, active])
        order = np.concatenate([np.full(len(old_ts), -1, dtype=np.int64), order])
    counted = latest_per_instant(keys, ts, order)
    keys, ts, active = keys[counted], ts[counted], active[counted].astype(np.uint8)
    bounds = np.flatnonzero(np.diff(keys)) + 1
    starts = np.concatenate([[0], bounds]).tolist()
    ends = np.concatenate([bounds, [len(keys)]]).tolist()
    ts_bytes = ts.astype("<i8").tobytes()
    active_bytes = active.tobytes()
    keys_list, ts_list, active_list = keys.tolist(), ts.tolist(), active.tolist()
    db.conn.executemany(
        "INSERT OR REPLACE INTO poll_days (day, store, polls, last_ts, last_active, ts, active) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            (day, keys_list[s], e - s, ts_list[e - 1], active_list[e - 1], ts_bytes[8 * s: 8 * e],
             active_bytes[s:e])
            for s, e in zip(starts, ends)
        ),
    )
    return len(keys) - old_count


def prune_before(db: sqlite_utils.Database, day: int) -> int:
    """Drop the partitions of days before `day`, keeping each store's last poll before it (inside the caller's
    transaction), so that a report whose windows start on or after `day` stays exact. Returns the polls dropped."""
    kept = db.execute(
        """
        SELECT p.store, p.day, p.last_ts, p.last_active, p.polls
        FROM (SELECT store, MAX(day) AS day FROM poll_days WHERE day < ? GROUP BY store) AS m
        JOIN poll_days p ON p.day = m.day AND p.store = m.store
        """,
        [day],
    ).fetchall()
    dropped = db.execute("SELECT COALESCE(SUM(polls), 0) FROM poll_days WHERE day < ?", [day]).fetchone()[0]
    db.execute("DELETE FROM poll_days WHERE day < ?", [day])
    db.conn.executemany(
        "INSERT INTO poll_days (day, store, polls, last_ts, last_active, ts, active) VALUES (?, ?, 1, ?, ?, ?, ?)",
        ((d, store, ts, active, int(ts).to_bytes(8, "little", signed=True), bytes([active]))
         for store, d, ts, active, _ in kept),
    )
    return int(dropped) - len(kept)


def counts(db: sqlite_utils.Database) -> tuple[int, int]:
    """(stores with polls, polls) as stored."""
    stores, polls = db.execute("SELECT COUNT(DISTINCT store), COALESCE(SUM(polls), 0) FROM poll_days").fetchone()
    return int(stores), int(polls)
