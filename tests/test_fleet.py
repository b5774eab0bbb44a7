"""The fleet the console shows: each store's state at the data's latest poll, and its figures from the latest
complete report, checked against values worked out by hand from SPEC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import HOURS_HEADER, POLL_HEADER, ZONE_HEADER, ingest_dir, write_csv, write_data

from storemon import reports
from storemon.db import open_db
from storemon.engine import HEADER
from storemon.fleet import load_fleet
from storemon.parse import parse_instant


@pytest.fixture
def fleet_db(data_dir, db_path):
    """A database of three stores with polls and one without, open."""
    # The newest poll is Wed 2023-01-25 12:00 UTC. "NA" last polled the day before (its latest poll is in an older
    # partition than the others'); "ghost" has hours but no polls, so it is not in the fleet.
    write_data(
        data_dir,
        polls=[("a,b", "2023-01-25 11:30:00 UTC", "active"), ("007", "2023-01-25 12:00:00 UTC", "inactive"),
               ("NA", "2023-01-24 10:00:00 UTC", "active"), ("NA", "2023-01-23 10:00:00 UTC", "inactive")],
        hours=[("a,b", 2, "08:00:00", "17:00:00"), ("NA", 2, "11:00:00", "13:00:00"),
               ("ghost", 2, "00:00:00", "23:59:59")],
        zones=[("a,b", "America/New_York"), ("007", "Mars/Olympus"), ("NA", "UTC")],
    )
    assert ingest_dir(data_dir, db_path).ok
    db = open_db(db_path)
    yield db
    db.close()


def store_report(db, report_id: str, rows: str) -> None:
    """A complete report with the CSV rows `rows` (the fleet shows its figures, whatever computed them)."""
    reports.insert(db, report_id, None, "previous")
    reports.complete(db, report_id, "2023-01-25T12:00:00.000Z", 1, rows.count("\n"), f"{HEADER}\n{rows}")


def figures(hours: np.ndarray) -> list[float | None]:
    """A fleet's figures, None where the report has no row for the store."""
    return [None if math.isnan(value) else value for value in hours.tolist()]


def test_the_fleet_at_the_latest_poll_with_the_latest_reports_figures(fleet_db):
    store_report(fleet_db, "r1", '"a,b",60.00,5.50,30.25,0.00,0.00,0.00\nNA,0.00,1.00,2.00,0.00,0.00,0.00\n')
    fleet = load_fleet(fleet_db)

    assert fleet.as_of_us == parse_instant("2023-01-25 12:00:00 UTC")
    assert fleet.report == reports.ReportRef("r1", "2023-01-25T12:00:00.000Z")
    assert fleet.store_id.tolist() == ["007", "NA", "a,b"]
    # Wed 12:00 UTC is 06:00 in Chicago (the default for an unknown zone), 12:00 UTC, 07:00 in New York.
    assert fleet.zone.tolist() == ["America/Chicago*", "UTC", "America/New_York"]
    assert fleet.local_time.tolist() == ["Wed 06:00", "Wed 12:00", "Wed 07:00"]
    # 007 has no hours (open 24x7); NA is open 11:00-13:00 UTC; a,b opens at 08:00 New York time.
    assert fleet.open_now.tolist() == [True, True, False]
    assert fleet.last_active.tolist() == [False, True, True]
    assert fleet.last_poll_age_s.tolist() == [0.0, 26 * 3600.0, 1800.0]
    assert figures(fleet.uptime_day) == [None, 1.0, 5.5] and figures(fleet.uptime_week) == [None, 2.0, 30.25]
    assert fleet.down() == {"007"}


def test_an_empty_database_is_an_empty_fleet(db_path):
    db = open_db(db_path)
    try:
        fleet = load_fleet(db)
    finally:
        db.close()
    assert len(fleet) == 0 and fleet.as_of_us is None and fleet.report is None and fleet.down() == set()


def test_a_new_report_changes_only_the_figures_and_new_data_the_rest(fleet_db, data_dir, db_path):
    store_report(fleet_db, "r1", "NA,0.00,1.00,2.00,0.00,0.00,0.00\n")
    first = load_fleet(fleet_db)
    store_report(fleet_db, "r2", "007,0.00,3.00,4.00,0.00,0.00,0.00\nNA,0.00,0.50,0.75,0.00,0.00,0.00\n")
    second = load_fleet(fleet_db, first)
    assert second.report.id == "r2"
    assert figures(second.uptime_day) == [3.0, 0.5, None]
    assert figures(second.uptime_week) == [4.0, 0.75, None]
    assert second.last_active.tolist() == first.last_active.tolist() and second.as_of_us == first.as_of_us

    write_csv(data_dir / "store_status_2.csv", POLL_HEADER, [("007", "2023-01-25 12:30:00 UTC", "active")])
    assert ingest_dir(data_dir, db_path).ok
    third = load_fleet(fleet_db, second)
    assert third.as_of_us == parse_instant("2023-01-25 12:30:00 UTC")
    assert third.last_active.tolist() == [True, True, True] and third.down() == set()
    assert third.last_poll_age_s.tolist() == [0.0, 26.5 * 3600, 3600.0]
    assert third.report.id == "r2" and figures(third.uptime_day) == [3.0, 0.5, None]


def test_new_hours_or_zones_alone_change_who_is_open(fleet_db, data_dir, db_path):
    first = load_fleet(fleet_db)
    assert first.open_now.tolist() == [True, True, False]
    # a,b now opens at 07:00 New York time, which Wed 12:00 UTC is: open.
    write_csv(data_dir / "menu_hours.csv", HOURS_HEADER, [("a,b", 2, "07:00:00", "17:00:00"),
                                                          ("NA", 2, "11:00:00", "13:00:00")])
    assert ingest_dir(data_dir, db_path).ok
    second = load_fleet(fleet_db, first)
    assert second.open_now.tolist() == [True, True, True] and second.as_of_us == first.as_of_us
    # NA's 11:00-13:00 is now New York time, and 12:00 UTC is 07:00 there: closed.
    write_csv(data_dir / "timezones.csv", ZONE_HEADER, [("a,b", "America/New_York"), ("007", "Mars/Olympus"),
                                                        ("NA", "America/New_York")])
    assert ingest_dir(data_dir, db_path).ok
    third = load_fleet(fleet_db, second)
    assert third.open_now.tolist() == [True, False, True]
    assert third.zone.tolist() == ["America/Chicago*", "America/New_York", "America/New_York"]
    assert third.local_time.tolist() == ["Wed 06:00", "Wed 07:00", "Wed 07:00"]
