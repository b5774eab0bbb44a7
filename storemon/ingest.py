"""Ingest: the three CSV sources of a data directory into the database, in one transaction.

Polls accumulate (deduplicated on store and instant, the later row winning); business hours and zones are replaced
by their files' current content. Only what changed is read: an unchanged file is skipped, a grown one is read from
where the last read ended, a rewritten one is read again in full. Each ingest is recorded in `ingest_runs`.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlite_utils

from storemon import incidents, parse, polls, runs, sources, state
from storemon.db import get_meta, now_iso, set_meta, write_transaction
from storemon.parse import US_PER_DAY
from storemon.snapshot import hours_and_zones
from storemon.sources import HOURS, POLLS, ZONES, Chunk, SourceError
from storemon.zones import DEFAULT_ZONE, lookup_zone

BAD_LINES_KEPT = 10



Progress = Callable[[str, int, int], None]
DEFAULT_RETAIN_DAYS = 90
MIN_RETAIN_DAYS = 8  # a week's window and the day it starts in: the latest report must stay answerable
FUTURE_LIMIT_US = US_PER_DAY  # a poll later than the ingest's own time plus this is a bad row


class IngestCancelled(Exception):
    """The ingest was asked to stop (the service is stopping); nothing was written."""


def ingest(db: sqlite_utils.Database, data_dir: str | Path, *, strict: bool = False,
           retain_days: int = DEFAULT_RETAIN_DAYS, cancel: threading.Event | None = None,
           progress: Progress | None = None) -> runs.Refresh:
    """Load the data directory's CSV files into `db` (one transaction), and record the run.

    Files are read and parsed first, in bounded blocks (polls are set aside by day on disk); the database is then
    written in one transaction. A file that is missing, unreadable or lacks a required column keeps its old data
    and is reported. With `strict`, any such file undoes the whole ingest, so that the database is unchanged.
    Polls older than `retain_days` days before the newest poll are pruned (0 keeps everything). Setting `cancel`
    stops it between blocks (IngestCancelled; the run is marked interrupted, the database unchanged).
    `progress(step, done, total)` is told of each block read (step: the file's name; bytes) and each day of polls
    written (step: "writing"; days).
    """
    if 0 < retain_days < MIN_RETAIN_DAYS:
        raise ValueError(f"retain_days must be 0 (keep everything) or at least {MIN_RETAIN_DAYS}")
    data_dir = Path(data_dir)
    run = runs.start(db)
    try:
        with tempfile.TemporaryDirectory(prefix="storemon-ingest-") as spill_dir:
            loaded = _Loaded(spill=_PollSpill(Path(spill_dir)), store_keys=_StoreKeys(db), cancel=cancel,
                             progress=progress)
            states = {row["name"]: row for row in db.query("SELECT * FROM source_files")}
            _read_sources(data_dir, states, loaded)
            failing = [f.error for f in loaded.files if f.error]
            if loaded.changed and not (strict and failing):
                with write_transaction(db):
                    run.data_version = _write(db, loaded, retain_days)
            else:
                run.data_version = int(get_meta(db, "data_version", 0) or 0)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt | IngestCancelled)
        run.status, run.error = runs.INTERRUPTED if interrupted else runs.FAILED, describe_failure(exc)
        run.finished, run.data_version = now_iso(), None
        try:
            runs.finish(db, run)
        except sqlite3.Error:
            raise RunFailed(run) from exc
        raise
    run.finished, run.files, run.error = now_iso(), loaded.files, "; ".join(failing) or None
    run.status = runs.OK if not failing else (runs.ROLLED_BACK if strict else runs.PARTIAL)
    runs.finish(db, run)
    return run


class RunFailed(Exception):
    """An ingest failed and its run could not be marked failed (the database refused): the caller records it."""

    def __init__(self, run: runs.Refresh) -> None:
        super().__init__(run.error)
        self.run = run


def describe_failure(exc: BaseException) -> str:
    """One line for the ingest log: a database error says so, anything else names its type."""
    if isinstance(exc, sqlite3.Error):
        return f"database error: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, IngestCancelled):
        return "interrupted (the service stopped)"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _FileState:
    """What to remember of a file once its rows are stored."""

    name: str
    kind: str
    size: int
    mtime_ns: int
    consumed: int
    lines: int
    fingerprint: str
    header: str


class _StoreKeys:
    """Integer keys for store ids: the stored ones, and provisional negative keys for new ids, which the write
    phase inserts and maps to real keys (so the read phase needs no write lock)."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.known: dict[str, int] = dict(db.execute("SELECT store_id, id FROM stores").fetchall())
        self.new: list[str] = []

    def keys(self, ids: pa.Array) -> np.ndarray:
        """The key of each id (provisional for new ones)."""
        if not len(ids):
            return np.zeros(0, dtype=np.int64)
        encoded = pc.dictionary_encode(ids)
        uniques = encoded.dictionary.to_pylist()
        unique_keys = np.empty(len(uniques), dtype=np.int64)
        for index, store_id in enumerate(uniques):
            key = self.known.get(store_id)
            if key is None:
                self.new.append(store_id)
                key = self.known[store_id] = -len(self.new)
            unique_keys[index] = key
        return unique_keys[encoded.indices.to_numpy(zero_copy_only=False)]

    def insert_new(self, db: sqlite_utils.Database) -> np.ndarray:
        """Insert the new ids (inside the write transaction); returns the real key of provisional key -k at k-1."""
        if not self.new:
            return np.zeros(0, dtype=np.int64)
        db.conn.executemany("INSERT OR IGNORE INTO stores (store_id) VALUES (?)", ((i,) for i in self.new))
        stored = dict(db.execute("SELECT store_id, id FROM stores WHERE id > ?",
                                 [max([k for k in self.known.values() if k > 0], default=0)]).fetchall())
        missing = [i for i in self.new if i not in stored]  # added by another process since the read phase
        for store_id in missing:
            stored[store_id] = db.execute("SELECT id FROM stores WHERE store_id = ?", [store_id]).fetchone()[0]
        return np.array([stored[i] for i in self.new], dtype=np.int64)


def _resolve(keys: np.ndarray, new_keys: np.ndarray) -> np.ndarray:
    """Provisional (negative) keys replaced by the keys the write phase gave them."""
    provisional = keys < 0
    if not provisional.any():
        return keys
    out = keys.copy()
    out[provisional] = new_keys[-keys[provisional] - 1]
    return out


class _PollSpill:
    """New polls set aside by UTC day until the write phase: in memory up to a budget, then in files of `folder`.

    Memory stays bounded whatever the files' size; the write phase takes one day at a time.
    """

    RECORD = np.dtype([("key", "<i8"), ("ts", "<i8"), ("order", "<i8"), ("active", "u1")])
    BUDGET_BYTES = 64 * 1024 * 1024

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.buffered: dict[int, list[np.ndarray]] = {}
        self.buffered_bytes = 0
        self.on_disk: set[int] = set()
        self.count = 0
        self.max_ts: int | None = None

    def add(self, keys: np.ndarray, ts: np.ndarray, active: np.ndarray) -> None:
        if not len(ts):
            return
        records = np.empty(len(ts), dtype=self.RECORD)
        records["key"], records["ts"], records["active"] = keys, ts, active
        records["order"] = np.arange(self.count, self.count + len(ts))
        self.count += len(ts)
        self.max_ts = max(int(ts.max()), self.max_ts if self.max_ts is not None else int(ts.max()))
        days = polls.day_of(ts)
        sort = np.argsort(days, kind="stable")
        days, records = days[sort], records[sort]
        bounds = np.flatnonzero(np.diff(days)) + 1
        for part in np.split(records, bounds):
            self.buffered.setdefault(int(polls.day_of(part["ts"][0])), []).append(part)
        self.buffered_bytes += records.nbytes
        if self.buffered_bytes > self.BUDGET_BYTES:
            self._flush()

    def _flush(self) -> None:
        for day, parts in self.buffered.items():
            with (self.folder / f"{day}.bin").open("ab") as handle:
                for part in parts:
                    part.tofile(handle)
            self.on_disk.add(day)
        self.buffered, self.buffered_bytes = {}, 0

    def days(self) -> list[int]:
        return sorted(self.on_disk | set(self.buffered))

    def load(self, day: int) -> np.ndarray:
        parts = []
        if day in self.on_disk:
            parts.append(np.fromfile(self.folder / f"{day}.bin", dtype=self.RECORD))
        parts.extend(self.buffered.get(day, []))
        return np.concatenate(parts)


@dataclass
class _Loaded:
    """What the read phase parsed, for the write phase to store."""

    spill: _PollSpill
    store_keys: _StoreKeys
    files: list[runs.FileResult] = field(default_factory=list)
    states: list[_FileState] = field(default_factory=list)
    hours: dict[str, np.ndarray] | None = None
    zones: dict[str, np.ndarray] | None = None
    cancel: threading.Event | None = None
    progress: Progress | None = None

    @property
    def changed(self) -> bool:
        return bool(self.states)

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise IngestCancelled("the ingest was stopped")


def _parse_polls(rows: dict[str, pa.Array], now_us: int) -> tuple[dict, np.ndarray, list[parse.Parsed]]:
    ids = parse.parse_store_ids(rows["store_id"])
    ts = parse.parse_timestamps(rows["timestamp_utc"])
    status = parse.parse_statuses(rows["status"])
    future = parse.Parsed(ts.values, ts.values <= now_us + FUTURE_LIMIT_US, ts.text,
                          lambda value: f"timestamp_utc more than a day after the ingest {parse.shown(value)}")
    columns = [ids, ts, future, status]
    return {"store_id": ids.values, "ts": ts.values, "active": status.values}, _all_ok(columns), columns


def _parse_hours(rows: dict[str, pa.Array], now_us: int) -> tuple[dict, np.ndarray, list[parse.Parsed]]:
    ids = parse.parse_store_ids(rows["store_id"])
    days = parse.parse_days(rows["day"])
    starts = parse.parse_times_of_day(rows["start_time_local"], "start_time_local", allow_24=False)
    ends = parse.parse_times_of_day(rows["end_time_local"], "end_time_local", allow_24=True)
    columns = [ids, days, starts, ends]
    values = {"store_id": ids.values, "day": days.values, "start_us": starts.values, "end_us": ends.values}
    return values, _all_ok(columns), columns


def _parse_zones(rows: dict[str, pa.Array], now_us: int) -> tuple[dict, np.ndarray, list[parse.Parsed]]:
    ids = parse.parse_store_ids(rows["store_id"])
    names = parse.clean_text(rows["timezone_str"])
    zone = parse.Parsed(names, pc.not_equal(names, "").to_numpy(zero_copy_only=False), names,
                        lambda value: "empty timezone_str")
    columns = [ids, zone]
    return {"store_id": ids.values, "zone": names}, _all_ok(columns), columns


PARSERS = {POLLS: _parse_polls, HOURS: _parse_hours, ZONES: _parse_zones}


def parse_rows(kind: str, rows: dict[str, pa.Array], now_us: int) -> tuple[dict, np.ndarray, list[parse.Parsed]]:
    """SPEC section 1's rules for one kind of file's rows: (values by name, mask of good rows, parsed columns).

    Poll values: store_id, ts, active; hours: store_id, day, start_us, end_us; zones: store_id, zone. A poll
    later than `now_us` plus a day is bad.
    """
    return PARSERS[kind](rows, now_us)


def _all_ok(columns: list[parse.Parsed]) -> np.ndarray:
    ok = columns[0].ok.copy()
    for column in columns[1:]:
        ok &= column.ok
    return ok


def _read_sources(data_dir: Path, states: dict, loaded: _Loaded) -> None:
    poll_paths = sources.poll_files(data_dir)
    # A rewritten poll file is read again in full, and so are the others, so that for an instant in several
    # files the file read last still wins, as in a load from scratch.
    plans = {path: _plan_read(path, states.get(path.name)) for path in poll_paths}
    reread_all = any(isinstance(plan, _Plan) and plan.action == "read" and states.get(path.name)
                     for path, plan in plans.items())
    for path in poll_paths:
        _read_file(path, POLLS, plans[path], loaded, whole=reread_all)

    for name, kind in ((sources.HOURS_FILE, HOURS), (sources.ZONES_FILE, ZONES)):
        path = data_dir / name
        _read_file(path, kind, _plan_read(path, states.get(name)), loaded)
    if loaded.zones is not None:
        zone_names = loaded.zones["zone"]
        unknown = sorted({name for name in set(zone_names.tolist()) if lookup_zone(name) is None})
        if unknown:
            count = int(np.isin(zone_names, unknown).sum())
            shown = ", ".join(repr(name) for name in unknown[:5])
            result = next(f for f in loaded.files if f.kind == ZONES)
            result.notes.append(f"{count} stores have an unknown zone ({shown}): computed in {DEFAULT_ZONE}")


@dataclass
class _Plan:
    """How to read a file: `action` is unchanged, appended (from `start`, continuing `fingerprint`) or read."""

    stat: os.stat_result
    action: str
    start: int = 0
    header: str | None = None
    lines_before: int = 0
    fingerprint: sources.Fingerprint | None = None


def _plan_read(path: Path, state: dict | None) -> _Plan | SourceError:
    """How to read a file given what was read of it before (or the reason it cannot be read)."""
    try:
        stat = sources.stat_source(path)
        if state is None:
            return _Plan(stat, "read")
        if stat.st_size == state["size"] and stat.st_mtime_ns == state["mtime_ns"]:
            return _Plan(stat, "unchanged")
        consumed = state["consumed"]
        if stat.st_size >= consumed:
            fingerprint = sources.prefix_fingerprint(path, consumed)
            if fingerprint.text() == state["fingerprint"]:
                return _Plan(stat, "appended", consumed, state["header"], state["lines"], fingerprint)
        return _Plan(stat, "read")
    except SourceError as exc:
        return exc


def _read_file(path: Path, kind: str, plan: _Plan | SourceError, loaded: _Loaded, whole: bool = False) -> None:
    """Read and parse what is new in one file (all of it if `whole` or not a poll file) into `loaded`.

    A last line without a newline that does not parse is taken as still being written: a poll file leaves it
    for the next read; a business-hours or zone file (replaced whole) is not used at all this time.
    """
    result = runs.FileResult(path.name, kind)
    loaded.files.append(result)
    try:
        if isinstance(plan, SourceError):
            raise plan
        if plan.action == "unchanged" and not whole:
            return
        if kind != POLLS or whole:  # hours and zones are replaced whole, never appended to
            plan = _Plan(plan.stat, "read")
        fingerprint = plan.fingerprint if plan.action == "appended" else sources.Fingerprint()
        bad = _BadRows(result)
        parts: list[dict] = []
        end, lines_after, header = plan.start, plan.lines_before, plan.header
        now_us = parse.parse_instant(now_iso())
        for chunk in sources.read_chunks(path, kind, start=plan.start, header=plan.header,
                                         lines_before=plan.lines_before):
            loaded.check_cancel()
            values, ok, columns = parse_rows(kind, chunk.rows, now_us)
            if chunk.unterminated_from is not None and not ok[-1]:
                if kind != POLLS:
                    raise SourceError(
                        f"{path.name}: last line {chunk.lines_after} is incomplete (file still being written?)"
                    )
                chunk = chunk.hold_back_last_line()
                values = {name: column[:-1] for name, column in values.items()}
                ok = ok[:-1]
            bad.add(chunk, ok, columns)
            fingerprint.update(chunk.raw)
            if loaded.progress is not None:
                loaded.progress(path.name, chunk.end, plan.stat.st_size)
            end, lines_after, header = chunk.end, chunk.lines_after, chunk.header
            good = good_rows(values, ok)
            keys = loaded.store_keys.keys(good.pop("store_id"))
            if kind == POLLS:
                loaded.spill.add(keys, good["ts"], good["active"])
            else:
                parts.append({"store": keys, **good})
    except SourceError as exc:
        result.action, result.error = "failed", str(exc)
        return
    result.action = "appended" if plan.action == "appended" else "read"
    if kind != POLLS and result.rows_read == 0:
        result.notes.append("no rows: " + ("every store is now open 24x7" if kind == HOURS
                                           else "every store is now computed in " + DEFAULT_ZONE))
    if kind == HOURS:
        loaded.hours = _concat(parts)
    elif kind == ZONES:
        loaded.zones = _concat(parts)
    loaded.states.append(_FileState(path.name, kind, plan.stat.st_size, plan.stat.st_mtime_ns, end, lines_after,
                                    fingerprint.text(), header))


def good_rows(values: dict, ok: np.ndarray) -> dict:
    """The rows of parsed columns (numpy arrays, or Arrow arrays for text) that `ok` marks good."""
    mask = pa.array(ok)
    return {name: column.filter(mask) if isinstance(column, pa.Array) else column[ok]
            for name, column in values.items()}


def _concat(parts: list[dict]) -> dict[str, np.ndarray]:
    """Parts of a small file as numpy columns (store ids and zone names as object arrays)."""
    out = {}
    for name in parts[0]:
        pieces = [part[name] for part in parts]
        if isinstance(pieces[0], pa.Array):
            out[name] = np.array(pa.concat_arrays(pieces).to_pylist(), dtype=object)
        else:
            out[name] = np.concatenate(pieces)
    return out


class _BadRows:
    """Counts a file's rows and keeps its first bad lines with their reasons."""

    def __init__(self, result: runs.FileResult) -> None:
        self.result = result
        self.shown: list[tuple[int, str]] = []

    def add(self, chunk: Chunk, ok: np.ndarray, columns: list[parse.Parsed]) -> None:
        result = self.result
        result.rows_read += len(chunk) + len(chunk.malformed)
        result.rows_loaded += int(ok.sum())
        bad_rows = np.flatnonzero(~ok)
        result.rows_skipped += len(bad_rows) + len(chunk.malformed)
        room = BAD_LINES_KEPT - len(self.shown)
        if room > 0:
            described = []
            for row in bad_rows[:room].tolist():
                column = next(c for c in columns if not c.ok[row])
                described.append((int(chunk.line_numbers[row]), column.why(row)))
            self.shown = sorted(self.shown + chunk.malformed + described)[:BAD_LINES_KEPT]
            result.bad_lines = list(self.shown)
        if chunk.pending_tail:
            result.notes.append(f"line {chunk.lines_after + 1} is incomplete (no newline yet): left for the next read")


def _write(db: sqlite_utils.Database, loaded: _Loaded, retain_days: int) -> int:
    """Store what the read phase parsed (inside the caller's write transaction); returns the new data version."""
    new_keys = loaded.store_keys.insert_new(db)
    previous_latest = get_meta(db, "max_poll_ts")
    added = 0
    earliest_keys, earliest_ts = [], []
    days = list(loaded.spill.days())
    # Incidents are recomputed from each store's earliest new poll only when nothing else changed.
    incremental = previous_latest is not None and loaded.hours is None and loaded.zones is None
    for index, day in enumerate(days):
        loaded.check_cancel()
        if loaded.progress is not None:
            loaded.progress("writing", index, len(days))
        records = loaded.spill.load(day)
        keys = _resolve(records["key"], new_keys)
        added += polls.merge_day(db, day, keys, records["ts"], records["active"].astype(bool), records["order"])
        if incremental:
            day_keys, day_ts = _earliest_per_store(keys, records["ts"])
            earliest_keys.append(day_keys)
            earliest_ts.append(day_ts)
    if loaded.hours is not None:
        hours = loaded.hours
        table = pd.DataFrame({"store": _resolve(hours["store"], new_keys), "day": hours["day"],
                              "start_us": hours["start_us"], "end_us": hours["end_us"]}).drop_duplicates()
        db.execute("DELETE FROM business_hours")
        db.conn.executemany("INSERT INTO business_hours (store, day, start_us, end_us) VALUES (?, ?, ?, ?)",
                            table.itertuples(index=False, name=None))
    if loaded.zones is not None:
        zones = loaded.zones
        table = pd.DataFrame({"store": _resolve(zones["store"], new_keys), "zone": zones["zone"]})
        table = table.drop_duplicates("store", keep="last")
        db.execute("DELETE FROM zones")
        db.conn.executemany("INSERT INTO zones (store, timezone_str) VALUES (?, ?)",
                            table.itertuples(index=False, name=None))
    db.conn.executemany(
        "INSERT OR REPLACE INTO source_files (name, kind, size, mtime_ns, consumed, lines, fingerprint, header) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [astuple(state) for state in loaded.states],
    )
    if loaded.spill.count:
        max_ts = max(loaded.spill.max_ts, int(get_meta(db, "max_poll_ts", loaded.spill.max_ts)))
        set_meta(db, "max_poll_ts", max_ts)
        set_meta(db, "poll_count", int(get_meta(db, "poll_count", 0) or 0) + added)
        set_meta(db, "polled_stores", db.execute("SELECT COUNT(DISTINCT store) FROM poll_days").fetchone()[0])
    prune(db, retain_days)
    hours_rows, zone_names = hours_and_zones(db)
    if not incremental:
        incidents.refresh(db, hours_rows, zone_names, None, None)
    elif earliest_keys:
        incidents.refresh(db, hours_rows, zone_names,
                          _earliest_per_store(np.concatenate(earliest_keys), np.concatenate(earliest_ts)),
                          int(previous_latest))
    state.record(db, hours_rows, zone_names)
    version = int(get_meta(db, "data_version", 0) or 0) + 1
    set_meta(db, "data_version", version)
    return version


def _earliest_per_store(keys: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each store's earliest instant among `ts`: (store keys in order, their earliest instants)."""
    earliest = pd.Series(ts).groupby(keys).min()
    return earliest.index.to_numpy(dtype=np.int64), earliest.to_numpy(dtype=np.int64)


def prune(db: sqlite_utils.Database, retain_days: int) -> None:
    """Drop polls older than `retain_days` whole UTC days before the newest poll (inside the caller's transaction).

    Whole day partitions go, once a day; each store keeps its last poll before them, so that every report whose
    week starts at or after `retained_from` is exact. 0 keeps everything.
    """
    max_ts = get_meta(db, "max_poll_ts")
    if retain_days <= 0 or max_ts is None:
        return
    cutoff_day = int(polls.day_of(int(max_ts) - retain_days * US_PER_DAY))
    retained_from = get_meta(db, "retained_from")
    if retained_from is not None and cutoff_day * US_PER_DAY <= int(retained_from):
        return
    if db.execute("SELECT 1 FROM poll_days WHERE day < ? LIMIT 1", [cutoff_day]).fetchone() is None:
        return
    dropped = polls.prune_before(db, cutoff_day)
    db.execute('DELETE FROM incidents WHERE "end" IS NOT NULL AND "end" < ?', [cutoff_day * US_PER_DAY])
    set_meta(db, "poll_count", int(get_meta(db, "poll_count", 0) or 0) - dropped)
    set_meta(db, "retained_from", cutoff_day * US_PER_DAY)
