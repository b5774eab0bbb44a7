"""Shared helpers: write real CSV files, ingest them into a real SQLite file, read reports back."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import pytest

from storemon.compute import report_from_db
from storemon.db import open_db
from storemon.ingest import ingest
from storemon.parse import parse_instant

POLL_HEADER = ["store_id", "timestamp_utc", "status"]
HOURS_HEADER = ["store_id", "dayOfWeek", "start_time_local", "end_time_local"]
ZONE_HEADER = ["store_id", "timezone_str"]
# How long a test waits for something that must finish (a refresh, a server, a report) before calling it a hang:
# a guard, not a timing target, so it is generous for a loaded machine.
HANG_GUARD_S = 600


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_data(directory: Path, polls=(), hours=(), zones=()) -> Path:
    """The three files of a data directory."""
    directory.mkdir(parents=True, exist_ok=True)
    write_csv(directory / "store_status.csv", POLL_HEADER, polls)
    write_csv(directory / "menu_hours.csv", HOURS_HEADER, hours)
    write_csv(directory / "timezones.csv", ZONE_HEADER, zones)
    return directory


def report_csv(db_path: Path, as_of: str | None = None, interpolation: str = "previous") -> str:
    """The report CSV over a database, as `storemon report` writes it."""
    db = open_db(db_path)
    try:
        return report_from_db(db, parse_instant(as_of) if as_of else None, interpolation)[0].to_csv()
    finally:
        db.close()


def report_rows(db_path: Path, as_of: str | None = None, interpolation: str = "previous") -> dict[str, list[str]]:
    """The report over a database, as {store_id: [six figures as written]}."""
    lines = report_csv(db_path, as_of, interpolation).splitlines()
    return {line.split(",")[0]: line.split(",")[1:] for line in lines[1:]}


def ingest_dir(data_dir: Path, db_path: Path, **options):
    """Ingest a data directory into a database file (the library call `storemon ingest` makes); the result."""
    db = open_db(db_path)
    try:
        return ingest(db, data_dir, **options)
    finally:
        db.close()


def run(directory: Path, db_path: Path, as_of: str | None = None, interpolation: str = "previous"):
    """Ingest `directory` into `db_path` and return the report rows."""
    db = open_db(db_path)
    try:
        result = ingest(db, directory)
    finally:
        db.close()
    assert result.ok, result.errors
    return report_rows(db_path, as_of, interpolation)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "storemon.db"
