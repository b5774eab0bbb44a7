"""Incidents (SPEC section 7): the maximal intervals in which a store is open and its status, by `previous`
interpolation, is inactive; and their storage in the `incidents` table, kept up to date by each refresh.

The computation is vectorised over all stores like the engine: each store's inactive runs (from an inactive poll to
the next active poll) are intersected with its open intervals with `searchsorted` on composite (store, time) keys.
A refresh recomputes only from where its data changed: per store, from its earliest new poll or the previous
data's latest instant, whichever is earlier, carrying the start of an incident that was in progress there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlite_utils

from storemon import hours, polls
from storemon.db import get_meta
from storemon.snapshot import batches

NEVER = 2**62


@dataclass(frozen=True)
class Incidents:
    """Incidents as parallel arrays: store key, start, end (microseconds; NEVER while ongoing)."""

    store: np.ndarray
    start: np.ndarray
    end: np.ndarray


def compute(found: polls.Polls, hours_rows: np.ndarray, zones: dict[int, str], stores: np.ndarray,
            since: np.ndarray, latest_us: int) -> Incidents:
    """Incidents of `stores` (sorted keys) that end after each store's own `since` instant, clipped to start there.

    `found` holds the stores' polls from before their `since` (at least each one's last poll before it) to
    `latest_us`, sorted by store and time; `hours_rows` is (store, day, start_us, end_us). An incident still in
    progress at `latest_us` (inactive and open there) ends at NEVER.
    """
    empty = Incidents(*(np.zeros(0, dtype=np.int64) for _ in range(3)))
    keep = np.isin(found.store, stores)
    store, ts, active = found.store[keep], found.ts[keep], found.active[keep]
    if not len(store):
        return empty
    count = len(store)
    first = np.ones(count, dtype=bool)
    first[1:] = store[1:] != store[:-1]
    # An inactive run starts at an inactive poll that is its store's first or follows an active one, and ends at
    # the store's next active poll (NEVER if there is none).
    previous_active = np.concatenate([[True], active[:-1]])
    run_at = np.flatnonzero(~active & (first | previous_active))
    next_active = np.minimum.accumulate(np.where(active, np.arange(count), count)[::-1])[::-1]
    after = next_active[np.minimum(run_at + 1, count - 1)]
    ends = (run_at + 1 < count) & (after < count)
    ends &= store[np.minimum(after, count - 1)] == store[run_at]
    run_store, run_begin = store[run_at], ts[run_at]
    run_end = np.where(ends, ts[np.minimum(after, count - 1)], NEVER)

    span_lo = min(int(since.min()), int(run_begin.min()) if len(run_begin) else latest_us)
    open_store, open_begin, open_end = hours.open_intervals(
        stores, hours_rows[:, 0], hours_rows[:, 1], hours_rows[:, 2], hours_rows[:, 3], zones,
        max(span_lo, int(ts.min())), latest_us + 1,
    )
    # A store without hours is open always; intervals touching at a DST piece boundary are one.
    always = np.isin(open_store, stores[~np.isin(stores, hours_rows[:, 0])])
    open_begin = np.where(always, int(ts.min()) - 1, open_begin)
    open_end = np.where(always, latest_us + 1, open_end)
    open_store, open_begin, open_end = hours.union_by_store(open_store, open_begin, open_end)
    started = open_begin <= latest_us  # open_intervals may reach past the span asked for
    open_store, open_begin, open_end = open_store[started], open_begin[started], open_end[started]
    open_end = np.where(open_end > latest_us, NEVER, open_end)

    # Times become ranks so that (store, time) pairs sort as one composite integer key without overflow.
    times = np.unique(np.concatenate([run_begin, run_end, open_begin, open_end]))
    width = len(times) + 1
    run_dense = np.searchsorted(stores, run_store)
    open_dense = np.searchsorted(stores, open_store)
    begin_keys = open_dense * width + np.searchsorted(times, open_begin)
    end_keys = open_dense * width + np.searchsorted(times, open_end)
    first_open = np.searchsorted(end_keys, run_dense * width + np.searchsorted(times, run_begin), side="right")
    last_open = np.searchsorted(begin_keys, run_dense * width + np.searchsorted(times, run_end), side="left") - 1
    pairs = np.maximum(last_open - first_open + 1, 0)
    run = np.repeat(np.arange(len(run_begin)), pairs)
    which = first_open[run] + np.arange(int(pairs.sum())) - np.repeat(np.cumsum(pairs) - pairs, pairs)
    out_store = run_store[run]
    own_since = since[np.searchsorted(stores, out_store)]
    begin = np.maximum(np.maximum(run_begin[run], open_begin[which]), own_since)
    end = np.minimum(run_end[run], open_end[which])
    kept = end > begin
    order = np.lexsort((begin[kept], out_store[kept]))
    return Incidents(out_store[kept][order], begin[kept][order], end[kept][order])


def refresh(db: sqlite_utils.Database, hours_rows: np.ndarray, zones: dict[int, str],
            new_since: tuple[np.ndarray, np.ndarray] | None, previous_latest: int | None) -> int:
    """Bring the `incidents` table up to date after a write (inside the caller's transaction), with the business
    hours as (store, day, start_us, end_us) rows and the zones the database now holds.

    `new_since` is (store keys, earliest new poll of each) for the stores with new polls; None means everything may
    have changed (business hours or zones replaced): every store is recomputed over the retained data. Returns the
    number of incidents written.
    """
    latest = get_meta(db, "max_poll_ts")
    if latest is None:
        return 0
    latest = int(latest)
    stores = np.array(db.execute("SELECT DISTINCT store FROM poll_days ORDER BY store").fetchall(),
                      dtype=np.int64).reshape(-1)
    if not len(stores):
        return 0
    if new_since is None or previous_latest is None:
        since = np.full(len(stores), -NEVER, dtype=np.int64)
        db.execute("DELETE FROM incidents")
        carry: dict[int, int] = {}
        first_day = -(10**7)
    else:
        since = np.full(len(stores), previous_latest, dtype=np.int64)
        keys, earliest = new_since
        at = np.searchsorted(stores, keys)
        since[at] = np.minimum(since[at], earliest)
        carry = _delete_after(db, stores, since)
        first_day = int(polls.day_of(int(since.min())))
    parts = []
    for key_lo, key_hi in batches(db):
        chosen = (stores >= key_lo) & (stores <= key_hi)
        if not chosen.any():
            continue
        found = polls.read_window(db, first_day, int(polls.day_of(latest)), key_lo, key_hi)
        parts.append(compute(found, hours_rows, zones, stores[chosen], since[chosen], latest))
    result = Incidents(*(np.concatenate([getattr(p, name) for p in parts]) if parts else np.zeros(0, np.int64)
                         for name in ("store", "start", "end")))
    store, start, end = result.store, result.start.copy(), result.end
    if carry:
        # An incident in progress at a store's `since` was down until then (its polls before `since` did not
        # change): if the store is still down at `since` the recomputed incident keeps the start it had, and if
        # not (a late poll ended it) it ends at `since`.
        carried_store = np.array(sorted(carry), dtype=np.int64)
        carried_start = np.array([carry[s] for s in carried_store.tolist()], dtype=np.int64)
        at = np.minimum(np.searchsorted(carried_store, store), len(carried_store) - 1)
        hit = (carried_store[at] == store) & (start == since[np.searchsorted(stores, store)])
        start = np.where(hit, carried_start[at], start)
        ended = ~np.isin(carried_store, store[hit])
        store = np.concatenate([store, carried_store[ended]])
        start = np.concatenate([start, carried_start[ended]])
        end = np.concatenate([end, since[np.searchsorted(stores, carried_store[ended])]])
    db.conn.executemany(
        'INSERT OR REPLACE INTO incidents (store, start, "end") VALUES (?, ?, ?)',
        ((s, b, None if e >= NEVER else e) for s, b, e in zip(store.tolist(), start.tolist(), end.tolist())),
    )
    return len(store)


def _delete_after(db: sqlite_utils.Database, stores: np.ndarray, since: np.ndarray) -> dict[int, int]:
    """Delete each store's incidents that end after its `since` (or are ongoing); returns, per store, the start of
    the deleted incident that began before its `since` (it is carried into the recomputed one)."""
    rows = db.execute('SELECT store, start, "end" FROM incidents WHERE "end" IS NULL OR "end" > ?',
                      [int(since.min())]).fetchall()
    since_of = dict(zip(stores.tolist(), since.tolist()))
    carry, doomed = {}, []
    for store, start, end in rows:
        limit = since_of.get(store)
        if limit is None or (end is not None and end <= limit):
            continue
        doomed.append((store, start))
        if start < limit:
            carry[store] = start
    db.conn.executemany("DELETE FROM incidents WHERE store = ? AND start = ?", doomed)
    return carry


def listing(db: sqlite_utils.Database, store_id: str | None = None, since_us: int | None = None,
            ongoing: bool = False, limit: int = 100) -> list[dict]:
    """Stored incidents, newest first, as the API lists them: store_id, start, end (None while ongoing), minutes
    (up to the data's latest instant while ongoing)."""
    from storemon.parse import format_instant

    latest = get_meta(db, "max_poll_ts")
    clauses, params = [], []
    if store_id is not None:
        clauses.append("s.store_id = ?")
        params.append(store_id)
    if since_us is not None:
        clauses.append('(i."end" IS NULL OR i."end" > ?)')
        params.append(since_us)
    if ongoing:
        clauses.append('i."end" IS NULL')
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = db.execute(
        f'SELECT s.store_id, i.start, i."end" FROM incidents i JOIN stores s ON s.id = i.store {where} '
        "ORDER BY i.start DESC, s.store_id LIMIT ?", [*params, limit],
    ).fetchall()
    return [{"store_id": store, "start": format_instant(start), "end": format_instant(end),
             "minutes": round(((end if end is not None else int(latest or start)) - start) / 60e6, 2)}
            for store, start, end in rows]
