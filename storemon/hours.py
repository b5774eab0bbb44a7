"""Business hours as UTC time: the open intervals of every store over a span, by SPEC section 3.

A segment is a span of local wall-clock time; a store is open at instant t when t's wall-clock time in the store's
zone falls in a segment. Each zone's UTC offsets are constant between its transitions, so the open set is, piece by
piece, the local interval shifted by that piece's offset: that settles daylight-saving time without special cases.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from storemon.zones import zone_or_default

US_PER_SECOND = 1_000_000
US_PER_HOUR = 3_600 * US_PER_SECOND
US_PER_DAY = 24 * US_PER_HOUR
END_OF_DAY_FROM = US_PER_DAY - US_PER_SECOND  # an end at 23:59:59 (or later in that second) means 24:00
FAR = 2**61  # beyond every instant a report looks at, with room to shift by an offset
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday is 0


def utc_offset_us(zone: ZoneInfo, second: int) -> int:
    """The zone's UTC offset, in microseconds, at a Unix second."""
    return datetime.fromtimestamp(second, zone).utcoffset() // timedelta(microseconds=1)


def zone_pieces(zone: ZoneInfo, lo_us: int, hi_us: int) -> list[tuple[int, int, int]]:
    """(start, end, offset) pieces of constant UTC offset that cover all time, exact within [lo_us, hi_us]."""
    first, last = lo_us // US_PER_SECOND, -(-hi_us // US_PER_SECOND)
    samples = list(range(first, last + 3600, 3600))
    offsets = [utc_offset_us(zone, s) for s in samples]
    pieces, start = [], -FAR
    for i in range(1, len(samples)):
        if offsets[i] == offsets[i - 1]:
            continue
        before, after = samples[i - 1], samples[i]  # offset changes in (before, after]
        while after - before > 1:
            middle = (before + after) // 2
            if utc_offset_us(zone, middle) == offsets[i - 1]:
                before = middle
            else:
                after = middle
        pieces.append((start, after * US_PER_SECOND, offsets[i - 1]))
        start = after * US_PER_SECOND
    pieces.append((start, FAR, offsets[-1]))
    return pieces


@lru_cache(maxsize=512)
def _cached_zone_pieces(name: str, lo_us: int, hi_us: int) -> list[tuple[int, int, int]]:
    """zone_pieces of a zone by name: every batch of a report asks for the same span."""
    return zone_pieces(ZoneInfo(name), lo_us, hi_us)


def local_segments(
    day: np.ndarray, start: np.ndarray, end: np.ndarray, first_day: int, last_day: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every dated occurrence of each hours row on local days [first_day, last_day] (days since 1970-01-01).

    Returns (row index, local start, local end), local times as microseconds since 1970-01-01 wall clock.
    """
    full_day = start == end
    end = np.where(end >= END_OF_DAY_FROM, US_PER_DAY, end)
    length = np.where(full_day, US_PER_DAY, np.where(end > start, end - start, end + US_PER_DAY - start))
    days = np.arange(first_day, last_day + 1, dtype=np.int64)
    weekdays = (days + EPOCH_WEEKDAY) % 7
    row, column = np.nonzero(day[:, None] == weekdays[None, :])
    local_start = days[column] * US_PER_DAY + start[row]
    return row, local_start, local_start + length[row]


def union_by_store(
    store: np.ndarray, begin: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge overlapping intervals of each store: returns disjoint (store, begin, end), sorted."""
    if len(store) == 0:
        return store, begin, end
    order = np.lexsort((begin, store))
    store, begin, end = store[order], begin[order], end[order]
    base = int(begin.min())
    span = int(end.max()) - base + 1
    dense = np.unique(store, return_inverse=True)[1].astype(np.int64)
    # Keys `dense * span + offset` order intervals by store, then time, with every offset in [0, span): one running
    # maximum over all stores then gives each store's reach so far, never carrying one store's ends into the next.
    reach = np.maximum.accumulate(dense * span + (end - base))
    starts_group = np.ones(len(store), dtype=bool)
    starts_group[1:] = dense[1:] * span + (begin[1:] - base) > reach[:-1]
    group_first = np.flatnonzero(starts_group)
    group_last = np.concatenate([group_first[1:] - 1, [len(store) - 1]])
    merged_end = reach[group_last] - dense[group_last] * span + base
    return store[group_first], begin[group_first], merged_end


def open_intervals(
    stores: np.ndarray,
    hours_store: np.ndarray,
    hours_day: np.ndarray,
    hours_start: np.ndarray,
    hours_end: np.ndarray,
    zones: dict[int, str],
    lo_us: int,
    hi_us: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint UTC intervals (store, begin, end) in which each of `stores` is open, covering [lo_us, hi_us).

    A store without hours rows is open all the time; one with rows for some days only is closed on the others.
    Intervals may reach outside [lo_us, hi_us): callers clip them.
    """
    listed = np.isin(hours_store, stores)
    h_store, h_day = hours_store[listed], hours_day[listed]
    h_start, h_end = hours_start[listed], hours_end[listed]

    first_day, last_day = lo_us // US_PER_DAY - 2, hi_us // US_PER_DAY + 2
    row, local_begin, local_end = local_segments(h_day, h_start, h_end, first_day, last_day)
    seg_store, local_begin, local_end = union_by_store(h_store[row], local_begin, local_end)

    segment_stores, store_of_segment = np.unique(seg_store, return_inverse=True)
    store_zone = np.array([zone_or_default(zones.get(s)).key for s in segment_stores.tolist()], dtype=object)
    names, zone_of_store = (np.unique(store_zone, return_inverse=True) if len(store_zone)
                            else (np.array([], dtype=object), np.zeros(0, dtype=np.int64)))
    zone_index = zone_of_store[store_of_segment] if len(seg_store) else np.zeros(0, dtype=np.int64)
    piece_start, piece_end, piece_offset, piece_first, piece_count = [], [], [], [], []
    for name in names.tolist():
        pieces = _cached_zone_pieces(name, lo_us - 3 * US_PER_DAY, hi_us + 3 * US_PER_DAY)
        piece_first.append(len(piece_start))
        piece_count.append(len(pieces))
        for p_start, p_end, p_offset in pieces:
            piece_start.append(p_start)
            piece_end.append(p_end)
            piece_offset.append(p_offset)
    piece_start_a = np.array(piece_start, dtype=np.int64)
    piece_end_a = np.array(piece_end, dtype=np.int64)
    piece_offset_a = np.array(piece_offset, dtype=np.int64)
    counts = np.array(piece_count, dtype=np.int64)[zone_index]
    firsts = np.array(piece_first, dtype=np.int64)[zone_index]
    segment = np.repeat(np.arange(len(seg_store)), counts)
    within = np.arange(len(segment)) - np.repeat(np.cumsum(counts) - counts, counts)
    piece = firsts[segment] + within
    begin = np.maximum(local_begin[segment] - piece_offset_a[piece], piece_start_a[piece])
    end = np.minimum(local_end[segment] - piece_offset_a[piece], piece_end_a[piece])
    nonempty = begin < end

    always_open = stores[~np.isin(stores, h_store)]
    out_store = np.concatenate([seg_store[segment][nonempty], always_open])
    out_begin = np.concatenate([begin[nonempty], np.full(len(always_open), lo_us, dtype=np.int64)])
    out_end = np.concatenate([end[nonempty], np.full(len(always_open), hi_us, dtype=np.int64)])
    return out_store.astype(np.int64), out_begin, out_end
