"""A report over the database: one read transaction, computed a batch of stores at a time, merged by store id.

This wires the pure engine (`storemon.engine`) to the stored data (`storemon.snapshot`); the CLI, the report jobs
and the tests all compute reports through `report_from_db`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import sqlite_utils

from storemon.db import read_transaction
from storemon.engine import INTERPOLATIONS, Report, compute_report
from storemon.snapshot import BATCH_STORES, batches, data_state, load_snapshot


def report_from_db(
    db: sqlite_utils.Database,
    as_of_us: int | None = None,
    interpolation: str = "previous",
    progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
    batch_stores: int = BATCH_STORES,
) -> tuple[Report, int]:
    """The report at `as_of_us` (default: the newest poll) and the data version it was computed on.

    Raises BeforeRetainedData when the week before `as_of_us` reaches before the retained polls.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}")
    with read_transaction(db):
        state = data_state(db)
        as_of = state.max_poll_ts if as_of_us is None else as_of_us
        if as_of is None:
            return Report(None, interpolation, [], np.zeros((0, 6), dtype=np.int64)), state.data_version
        state.check_as_of(as_of)
        ranges = batches(db, batch_stores)
        parts = []
        for index, (key_lo, key_hi) in enumerate(ranges):
            def batch_progress(fraction: float, index: int = index) -> None:
                if progress is not None:
                    progress((index + fraction) / len(ranges))

            snapshot = load_snapshot(db, as_of, key_lo, key_hi, state)
            parts.append(compute_report(snapshot, as_of, interpolation, batch_progress, cancel))
    return combine(parts, as_of, interpolation), state.data_version


def combine(parts: list[Report], as_of_us: int, interpolation: str) -> Report:
    """Reports of disjoint sets of stores as one, sorted by store id."""
    ids = np.array([store_id for part in parts for store_id in part.store_ids], dtype=object)
    figures = np.concatenate([part.hundredths for part in parts]) if parts else np.zeros((0, 6), dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    return Report(as_of_us, interpolation, ids[order].tolist(), figures[order])
