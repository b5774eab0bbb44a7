"""Ingest: the three CSV sources of a data directory into the database, in one transaction.

Polls accumulate (deduplicated on store and instant, the later row winning); business hours and zones are replaced
by their files' current content. Only what changed is read: an unchanged file is skipped, a grown one is read from
where the last read ended, a rewritten one is read again in full. Each ingest is recorded in `ingest_runs`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, astuple, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlite_utils

from storemon import parse, sources
from storemon.db import get_meta, read_series, set_meta
from storemon.sources import HOURS, POLLS, ZONES, Chunk, SourceError
from storemon.zones import DEFAULT_ZONE, lookup_zone

BAD_LINES_KEPT = 10


@dataclass
class FileResult:
    """What one ingest did with one file."""

    name: str
    kind: str
    action: str = "unchanged"  # read | appended | unchanged | failed
    rows_read: int = 0
    rows_loaded: int = 0
    rows_skipped: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class IngestResult:
    """The outcome of one ingest: per-file results, and the data version it produced."""

    run_id: int
    started: str
    finished: str
    files: list[FileResult]
    data_version: int
    changed: bool
    rolled_back: bool = False

    @property
    def errors(self) -> list[str]:
        return [f.error for f in self.files if f.error]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        out["errors"] = self.errors
        return out


def now_iso() -> str:
    """The current UTC time, ISO-8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ingest(db: sqlite_utils.Database, data_dir: str | Path, *, strict: bool = False) -> IngestResult:
    """Load the data directory's CSV files into `db` (one transaction), and record the run.

    Files are read and parsed first; the database is written in one short transaction at the end. A file that
    is missing, unreadable or lacks a required column keeps its old data and is reported. With `strict`, any
    such file undoes the whole ingest, so that the database is unchanged.
    """
    data_dir = Path(data_dir)
    started = now_iso()
    run_id = db.execute("INSERT INTO ingest_runs (started, status) VALUES (?, 'running')", [started]).lastrowid
    states = {row["name"]: row for row in db.query("SELECT * FROM source_files")}
    loaded = _read_sources(data_dir, states)
    rolled_back = strict and any(f.error for f in loaded.files)
    version = int(get_meta(db, "data_version", 0) or 0)
    changed = loaded.changed and not rolled_back
    if changed:
        with db.atomic():
            _write(db, loaded)
            version = int(get_meta(db, "data_version", 0) or 0) + 1
            set_meta(db, "data_version", version)
    result = IngestResult(run_id, started, now_iso(), loaded.files, version, changed, rolled_back)
    status = "ok" if result.ok else ("rolled back" if rolled_back else "partial")
    db.execute(
        "UPDATE ingest_runs SET finished = ?, status = ?, data_version = ?, files = ?, error = ? WHERE id = ?",
        [result.finished, status, version, json.dumps([asdict(f) for f in loaded.files]),
         "; ".join(result.errors) or None, run_id],
    )
    return result


def mark_interrupted_runs(db: sqlite_utils.Database) -> int:
    """Runs left 'running' by a killed process are recorded as interrupted. Returns how many."""
    return db.execute(
        "UPDATE ingest_runs SET status = 'interrupted', error = 'the process stopped during this ingest' "
        "WHERE status = 'running'"
    ).rowcount


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


@dataclass
class _Loaded:
    """What the read phase parsed, for the write phase to store."""

    files: list[FileResult] = field(default_factory=list)
    states: list[_FileState] = field(default_factory=list)
    poll_ids: list[np.ndarray] = field(default_factory=list)
    poll_ts: list[np.ndarray] = field(default_factory=list)
    poll_active: list[np.ndarray] = field(default_factory=list)
    hours: pd.DataFrame | None = None
    zones: pd.DataFrame | None = None

    @property
    def changed(self) -> bool:
        return bool(self.states)


def _parse_polls(rows: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
    ids, id_reasons = parse.parse_store_ids(rows["store_id"])
    ts, ts_reasons = parse.parse_timestamps(rows["timestamp_utc"])
    active, status_reasons = parse.parse_statuses(rows["status"])
    return {"store_id": ids, "ts": ts, "active": active}, _first_reason(id_reasons, ts_reasons, status_reasons)


def _parse_hours(rows: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
    ids, id_reasons = parse.parse_store_ids(rows["store_id"])
    days, day_reasons = parse.parse_days(rows["day"])
    starts, start_reasons = parse.parse_times_of_day(rows["start_time_local"], "start_time_local", allow_24=False)
    ends, end_reasons = parse.parse_times_of_day(rows["end_time_local"], "end_time_local", allow_24=True)
    values = {"store_id": ids, "day": days, "start_us": starts, "end_us": ends}
    return values, _first_reason(id_reasons, day_reasons, start_reasons, end_reasons)


def _parse_zones(rows: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
    ids, id_reasons = parse.parse_store_ids(rows["store_id"])
    names = parse.clean_text(rows["timezone_str"]).to_numpy(dtype=object)
    empty = np.where(names == "", "empty timezone_str", "")
    return {"store_id": ids, "zone": names}, _first_reason(id_reasons, empty)


PARSERS = {POLLS: _parse_polls, HOURS: _parse_hours, ZONES: _parse_zones}


def _read_sources(data_dir: Path, states: dict) -> _Loaded:
    loaded = _Loaded()
    poll_paths = sources.poll_files(data_dir)
    # A rewritten poll file is read again in full, and so are the others, so that for an instant in several
    # files the file read last still wins, as in a load from scratch.
    reread_all = any(_rewritten(path, states.get(path.name)) for path in poll_paths)
    for path in poll_paths:
        values = _read_file(path, POLLS, states, loaded, whole=reread_all)
        if values is not None:
            loaded.poll_ids.append(values["store_id"])
            loaded.poll_ts.append(values["ts"])
            loaded.poll_active.append(values["active"])

    values = _read_file(data_dir / sources.HOURS_FILE, HOURS, states, loaded)
    if values is not None:
        loaded.hours = pd.DataFrame(values).drop_duplicates()

    values = _read_file(data_dir / sources.ZONES_FILE, ZONES, states, loaded)
    if values is not None:
        zones = pd.DataFrame(values).drop_duplicates("store_id", keep="last")
        unknown = sorted({name for name in zones["zone"].unique() if lookup_zone(name) is None})
        if unknown:
            count = int(zones["zone"].isin(unknown).sum())
            shown = ", ".join(repr(name) for name in unknown[:5])
            loaded.files[-1].notes.append(f"{count} stores have an unknown zone ({shown}): computed in {DEFAULT_ZONE}")
        loaded.zones = zones
    return loaded


def _rewritten(path: Path, state: dict | None) -> bool:
    """Whether a file read before has changed other than by growing."""
    try:
        return state is not None and _plan_read(path, state)[1] == "read"
    except SourceError:
        return False


def _read_file(path: Path, kind: str, states: dict, loaded: _Loaded, whole: bool = False
               ) -> dict[str, np.ndarray] | None:
    """Read and parse what is new in one file (all of it if `whole`): its good rows' values, or None if nothing
    is new or it failed.

    A last line without a newline that does not parse is taken as still being written: a poll file leaves it
    for the next read; a business-hours or zone file (replaced whole) is not used at all this time.
    """
    result = FileResult(path.name, kind)
    loaded.files.append(result)
    try:
        stat, action, read_args = _plan_read(path, states.get(path.name))
        if action == "unchanged" and not whole:
            return None
        if kind != POLLS or whole:  # hours and zones are replaced whole, never appended to
            action, read_args = "read", {}
        chunk = sources.read_chunk(path, kind, **read_args)
        values, reasons = PARSERS[kind](chunk.rows)
        if chunk.unterminated_from is not None and reasons[-1] != "":
            if kind != POLLS:
                raise SourceError(
                    f"{path.name}: last line {chunk.lines_after} is incomplete (file still being written?)"
                )
            chunk = chunk.hold_back_last_line()
            values = {name: column[:-1] for name, column in values.items()}
            reasons = reasons[:-1]
    except SourceError as exc:
        result.action, result.error = "failed", str(exc)
        return None
    result.action = action
    good = _record_bad_rows(result, chunk, reasons)
    loaded.states.append(_FileState(path.name, kind, stat.st_size, stat.st_mtime_ns, chunk.end, chunk.lines_after,
                                    sources.fingerprint(path, chunk.end), chunk.header))
    return {name: column[good] for name, column in values.items()}


def _plan_read(path: Path, state: dict | None) -> tuple[os.stat_result, str, dict]:
    """How to read a file given what was read of it before: (stat, 'unchanged'|'appended'|'read', read args)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise SourceError(f"{path.name}: file is missing") from None
    except OSError as exc:
        raise SourceError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    if state is None:
        return stat, "read", {}
    if stat.st_size == state["size"] and stat.st_mtime_ns == state["mtime_ns"]:
        return stat, "unchanged", {}
    consumed = state["consumed"]
    if stat.st_size >= consumed and sources.fingerprint(path, consumed) == state["fingerprint"]:
        return stat, "appended", {"start": consumed, "header": state["header"], "lines_before": state["lines"]}
    return stat, "read", {}


def _write(db: sqlite_utils.Database, loaded: _Loaded) -> None:
    """Store what the read phase parsed (inside the caller's transaction)."""
    if loaded.poll_ts and sum(len(part) for part in loaded.poll_ts):
        keys = store_keys(db, np.concatenate(loaded.poll_ids))
        merge_polls(db, keys, np.concatenate(loaded.poll_ts), np.concatenate(loaded.poll_active))
    if loaded.hours is not None:
        hours = loaded.hours.assign(store=store_keys(db, loaded.hours["store_id"].to_numpy(dtype=object)))
        db.execute("DELETE FROM business_hours")
        db.conn.executemany(
            "INSERT INTO business_hours (store, day, start_us, end_us) VALUES (?, ?, ?, ?)",
            hours[["store", "day", "start_us", "end_us"]].itertuples(index=False, name=None),
        )
    if loaded.zones is not None:
        zones = loaded.zones.assign(store=store_keys(db, loaded.zones["store_id"].to_numpy(dtype=object)))
        db.execute("DELETE FROM zones")
        db.conn.executemany(
            "INSERT INTO zones (store, timezone_str) VALUES (?, ?)",
            zones[["store", "zone"]].itertuples(index=False, name=None),
        )
    db.conn.executemany(
        "INSERT OR REPLACE INTO source_files (name, kind, size, mtime_ns, consumed, lines, fingerprint, header) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [astuple(state) for state in loaded.states],
    )


def _record_bad_rows(result: FileResult, chunk: Chunk, reasons: np.ndarray) -> np.ndarray:
    """Count and keep the first bad rows of a chunk; returns the mask of good rows."""
    good = reasons == ""
    bad_rows = [(int(line), str(reason)) for line, reason in zip(chunk.line_numbers[~good], reasons[~good])]
    every_bad = sorted(chunk.malformed + bad_rows)
    result.rows_read = len(chunk.rows) + len(chunk.malformed)
    result.rows_skipped = len(every_bad)
    result.rows_loaded = int(good.sum())
    result.bad_lines = every_bad[:BAD_LINES_KEPT]
    if chunk.pending_tail:
        result.notes.append(f"line {chunk.lines_after + 1} is incomplete (no newline yet): left for the next read")
    return good


def _first_reason(*reason_columns: np.ndarray) -> np.ndarray:
    """Per row, the first non-empty reason among several columns' reasons."""
    out = reason_columns[-1]
    for reasons in reversed(reason_columns[:-1]):
        out = np.where(reasons != "", reasons, out)
    return out


def store_keys(db: sqlite_utils.Database, ids: np.ndarray) -> np.ndarray:
    """The integer key of each store id, adding the ids not yet in `stores`."""
    codes, uniques = pd.factorize(ids)
    known = dict(db.execute("SELECT store_id, id FROM stores").fetchall())
    missing = [store_id for store_id in uniques if store_id not in known]
    if missing:
        db.conn.executemany("INSERT INTO stores (store_id) VALUES (?)", ((m,) for m in missing))
        known = dict(db.execute("SELECT store_id, id FROM stores").fetchall())
    unique_keys = np.fromiter((known[store_id] for store_id in uniques), dtype=np.int64, count=len(uniques))
    return unique_keys[codes] if len(codes) else np.zeros(0, dtype=np.int64)


def merge_polls(db: sqlite_utils.Database, keys: np.ndarray, ts: np.ndarray, active: np.ndarray) -> None:
    """Merge new polls (in file order) into the stored series; at one store and instant the later poll wins."""
    touched = np.unique(keys)
    old_keys, old_ts, old_active = read_series(db, touched)
    all_keys = np.concatenate([old_keys, keys])
    all_ts = np.concatenate([old_ts, ts])
    all_active = np.concatenate([old_active, active.astype(np.uint8)])
    order = np.lexsort((all_ts, all_keys))
    all_keys, all_ts, all_active = all_keys[order], all_ts[order], all_active[order]
    last = np.ones(len(all_keys), dtype=bool)
    last[:-1] = (all_keys[1:] != all_keys[:-1]) | (all_ts[1:] != all_ts[:-1])
    all_keys, all_ts, all_active = all_keys[last], all_ts[last], all_active[last]
    bounds = np.flatnonzero(np.diff(all_keys)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(all_keys)]])
    db.conn.executemany(
        "INSERT OR REPLACE INTO poll_series (store, polls, first_ts, last_ts, last_active, ts, active) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            (int(all_keys[s]), int(e - s), int(all_ts[s]), int(all_ts[e - 1]), int(all_active[e - 1]),
             all_ts[s:e].astype("<i8").tobytes(), all_active[s:e].tobytes())
            for s, e in zip(starts.tolist(), ends.tolist())
        ),
    )
    max_ts = db.execute("SELECT MAX(last_ts) FROM poll_series").fetchone()[0]
    set_meta(db, "max_poll_ts", max_ts)
