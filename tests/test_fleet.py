"""The fleet the console shows: each store's state at the data's latest poll, and its figures from the latest
complete report, checked against values worked out by hand from SPEC."""

from __future__ import annotations

from conftest import ingest_dir, write_data

from storemon import reports
from storemon.db import open_db
from storemon.engine import HEADER
from storemon.fleet import load_fleet
from storemon.parse import parse_instant


def test_the_fleet_at_the_latest_poll_with_the_latest_reports_figures(data_dir, db_path):
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
    try:
        reports.insert(db, "r1", None, "previous")
        reports.complete(db, "r1", "2023-01-25T12:00:00.000Z", 1, 2,
                         f'{HEADER}\n"a,b",60.00,5.50,30.25,0.00,0.00,0.00\nNA,0.00,1.00,2.00,0.00,0.00,0.00\n')
        fleet = load_fleet(db)
    finally:
        db.close()

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
    assert fleet.uptime_day.tolist() == ["", "1.00", "5.50"] and fleet.uptime_week.tolist() == ["", "2.00", "30.25"]
    assert fleet.down() == {"007"}


def test_an_empty_database_is_an_empty_fleet(db_path):
    db = open_db(db_path)
    try:
        fleet = load_fleet(db)
    finally:
        db.close()
    assert len(fleet) == 0 and fleet.as_of_us is None and fleet.report is None and fleet.down() == set()
