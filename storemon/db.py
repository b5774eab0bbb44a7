"""Opening the SQLite database: one connection per thread, WAL mode, the schema applied and upgraded on open.

The schema's version is `schema_version` in `meta`. A database of an older version is upgraded on open by the
steps in `MIGRATIONS` (each in one transaction); one of a newer version than this storemon knows is refused.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np
import sqlite_utils

BUSY_TIMEOUT_S = 30.0
SCHEMA_VERSION = 4


class SchemaError(Exception):
    """The database cannot be used by this storemon; the message says how to rebuild it."""


def schema_sql() -> str:
    """The schema: `schema.sql` shipped in the wheel, or the repository's own when run from a checkout."""
    packaged = resources.files("storemon").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "schema.sql").read_text(encoding="utf-8")


def open_db(path: str | Path, busy_timeout: float = BUSY_TIMEOUT_S) -> sqlite_utils.Database:
    """Open (creating if needed) the storemon database at `path`, in WAL mode, with the current schema.

    Each thread must open its own connection. Raises SchemaError for a database this storemon cannot read.
    """
    conn = sqlite3.connect(str(path), timeout=busy_timeout, check_same_thread=False, isolation_level=None)
    db = sqlite_utils.Database(conn, execute_plugins=False)
    try:
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=wal")
        db.execute("PRAGMA synchronous=NORMAL")
        _upgrade(db)
    except BaseException:
        conn.close()
        raise
    return db


def _upgrade(db: sqlite_utils.Database) -> None:
    """Bring the database to SCHEMA_VERSION (creating it if empty), or refuse it."""
    version = _version(db)
    if version == SCHEMA_VERSION:
        return
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaError(f"the database has schema version {version}, newer than this storemon's "
                          f"({SCHEMA_VERSION}): upgrade storemon, or ingest into a new database file")
    with write_transaction(db):
        version = _version(db)
        if version == SCHEMA_VERSION:
            return
        legacy = version is None and "poll_series" in db.table_names()
        if legacy and "ingest_runs" in db.table_names() and "owner" not in db["ingest_runs"].columns_dict:
            db.execute("ALTER TABLE ingest_runs ADD COLUMN owner TEXT")
        if version == 2 and "target" not in db["alerts"].columns_dict:
            db.execute("DROP TABLE alerts")  # version 2 created it without its target column and never wrote to it
        _apply_schema(db)
        if legacy:
            _from_poll_series(db)
        if version is not None or legacy:
            _record_state(db)
        set_meta(db, "schema_version", SCHEMA_VERSION)


def _apply_schema(db: sqlite_utils.Database) -> None:
    """Run each statement of schema.sql (all are idempotent) inside the caller's transaction."""
    for statement in sqlite3_statements(schema_sql()):
        db.execute(statement)


def sqlite3_statements(script: str) -> list[str]:
    """Split a script of complete SQL statements."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]


def _version(db: sqlite_utils.Database) -> int | None:
    if "meta" not in db.table_names():
        return None
    value = get_meta(db, "schema_version")
    return None if value is None else int(value)


def _from_poll_series(db: sqlite_utils.Database) -> None:
    """Version 1 kept each store's whole history in one `poll_series` row: split it into day partitions."""
    from storemon import polls

    last = -1
    while True:
        rows = db.execute("SELECT store, polls, ts, active FROM poll_series WHERE store > ? ORDER BY store LIMIT 2000",
                          [last]).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        store = np.repeat(np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows])
        ts = np.frombuffer(b"".join(r[2] for r in rows), dtype="<i8").astype(np.int64)
        active = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.uint8).astype(bool)
        day = polls.day_of(ts)
        for one_day in np.unique(day).tolist():
            chosen = day == one_day
            polls.merge_day(db, one_day, store[chosen], ts[chosen], active[chosen],
                            np.arange(int(chosen.sum()), dtype=np.int64))
    db.execute("DROP TABLE poll_series")
    stores, count = polls.counts(db)
    set_meta(db, "poll_count", count)
    set_meta(db, "polled_stores", stores)


def _record_state(db: sqlite_utils.Database) -> None:
    """Version 4 keeps each store's state at the data's latest instant: work it out for the data already stored."""
    from storemon import state
    from storemon.snapshot import hours_and_zones

    state.record(db, *hours_and_zones(db))


class read_transaction:  # noqa: N801 - used as a context manager, like a function
    """`BEGIN` ... `COMMIT` (or `ROLLBACK` on an exception): every read inside sees one snapshot of the database."""

    begin = "BEGIN"

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def __enter__(self) -> sqlite_utils.Database:
        self.db.execute(self.begin)
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        if self.db.conn.in_transaction:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")


class write_transaction(read_transaction):  # noqa: N801 - used as a context manager, like a function
    """`BEGIN IMMEDIATE` ... `COMMIT` (or `ROLLBACK` on an exception): the write lock is taken up front, waiting
    for other writers within the busy timeout, so the transaction never fails half-way to upgrade its lock."""

    begin = "BEGIN IMMEDIATE"


def now_iso() -> str:
    """The current UTC time as the database records it: ISO-8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def get_meta(db: sqlite_utils.Database, key: str, default: object = None) -> object:
    """A value of the `meta` table, or `default`."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return default if row is None else row[0]


def set_meta(db: sqlite_utils.Database, key: str, value: object) -> None:
    """Set a value of the `meta` table (inside the caller's transaction, if any)."""
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])
