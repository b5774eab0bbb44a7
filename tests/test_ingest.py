"""Ingest by SPEC section 1: header matching, bad rows, duplicates, whole-file errors, incremental reads."""

from __future__ import annotations

import os

import pytest
from conftest import ingest_dir, report_rows, run, write_data

from storemon import polls
from storemon.db import open_db


def poll_count(db_path) -> int:
    db = open_db(db_path)
    try:
        return polls.counts(db)[1]
    finally:
        db.close()


def file_result(result, name):
    return next(f for f in result.files if f.name == name)


def test_headers_matched_by_name_case_order_bom_and_extra_columns(data_dir, db_path):
    data_dir.mkdir()
    (data_dir / "store_status.csv").write_bytes(
        "\ufeffStatus,extra,TIMESTAMP_UTC,Store_Id\nactive,x,2023-01-23 10:00:00 UTC,S\n".encode()
    )
    (data_dir / "menu_hours.csv").write_text("day,store_id,start_time_local,end_time_local\n0,S,09:00,10:00\n")
    (data_dir / "timezones.csv").write_text("timezone_str,store_id\nUTC,S\n")
    rows = run(data_dir, db_path, as_of="2023-01-23T10:00:00Z")
    assert rows["S"][1] == "1.00"  # Monday 09:00-10:00 UTC, active


def test_day_of_week_header_is_accepted(data_dir, db_path):
    data_dir.mkdir()
    (data_dir / "store_status.csv").write_text("store_id,timestamp_utc,status\nS,2023-01-23 10:00:00,active\n")
    (data_dir / "menu_hours.csv").write_text("store_id,day_of_week,start_time_local,end_time_local\nS,0,9:00,10:00")
    (data_dir / "timezones.csv").write_text("store_id,timezone_str\nS,UTC")
    rows = run(data_dir, db_path, as_of="2023-01-23T10:00:00Z")
    assert rows["S"][1] == "1.00"


def test_a_line_of_empty_fields_is_no_row_and_the_next_keeps_its_number(data_dir, db_path):
    # ",," (every field empty) is read as no row at all, as a blank line is; line 4's bad row is still line 4.
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00 UTC", "active"), ("", "", ""),
                                ("S", "2023-01-23 10:05:00 UTC", "offline"),
                                ("S", "2023-01-23 10:10:00 UTC", "active")])
    polls = file_result(ingest_dir(data_dir, db_path), "store_status.csv")
    assert (polls.rows_read, polls.rows_loaded, polls.rows_skipped) == (3, 2, 1)
    assert [line for line, _ in polls.bad_lines] == [4]


def test_bad_rows_are_skipped_and_reported_with_line_and_reason(data_dir, db_path):
    write_data(
        data_dir,
        polls=[
            ("S", "2023-01-23 10:00:00 UTC", "active"),      # line 2
            ("", "2023-01-23 10:00:00 UTC", "active"),       # 3: empty store_id
            ("S", "2023-01-23 10:05:00 UTC", "offline"),     # 4: unknown status
            ("S", "not a time", "inactive"),                 # 5: bad timestamp
            ("S", "2023-02-30 10:00:00", "inactive"),        # 6: no such date
            ("S", "2023-01-23", "inactive"),                 # 7: no time
            ("S", "2023-01-23 10:30:00 UTC", "inactive", "extra"),  # 8: too many fields
            ("T", "2023-01-23 10:00:00 UTC", "active"),      # 9
        ],
        hours=[("S", 7, "09:00", "10:00"), ("S", "x", "09:00", "10:00"), ("S", 0, "25:00", "26:00"),
               ("S", 0, "09:00", "nine"), ("T", 0, "09:00", "10:00")],
    )
    result = ingest_dir(data_dir, db_path)
    polls = file_result(result, "store_status.csv")
    assert (polls.rows_read, polls.rows_loaded, polls.rows_skipped) == (8, 2, 6)
    assert [line for line, _ in polls.bad_lines] == [3, 4, 5, 6, 7, 8]
    reasons = dict(polls.bad_lines)
    assert "store_id" in reasons[3] and "status" in reasons[4] and "timestamp" in reasons[5]
    assert "fields" in reasons[8]
    hours = file_result(result, "menu_hours.csv")
    assert (hours.rows_loaded, hours.rows_skipped) == (1, 4)
    assert "0..6" in dict(hours.bad_lines)[2]
    assert result.ok  # bad rows do not fail the ingest
    assert poll_count(db_path) == 2


def test_missing_file_in_strict_mode_leaves_database_unchanged(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00", "active")], zones=[("S", "UTC")])
    assert ingest_dir(data_dir, db_path, strict=True).ok
    before = report_rows(db_path)
    with (data_dir / "store_status.csv").open("a") as handle:
        handle.write("S,2023-01-23 11:00:00,inactive\n")
    (data_dir / "timezones.csv").unlink()
    result = ingest_dir(data_dir, db_path, strict=True)
    assert not result.ok and result.rolled_back
    assert "timezones.csv" in result.errors[0]
    assert report_rows(db_path) == before
    assert poll_count(db_path) == 1


def test_missing_column_keeps_that_sources_old_data(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-23 15:00:00", "active")], hours=[("S", 0, "09:00", "10:00")],
               zones=[("S", "UTC")])
    ingest_dir(data_dir, db_path)
    (data_dir / "menu_hours.csv").write_text("store_id,day,start_time_local\nS,0,00:00\n")
    result = ingest_dir(data_dir, db_path)
    assert "end_time_local" in file_result(result, "menu_hours.csv").error
    # old hours (09:00-10:00 UTC) still apply: 1 h open in the last day
    assert report_rows(db_path, "2023-01-23T16:00:00Z")["S"][1] == "1.00"


def test_unchanged_files_are_skipped(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00", "active")])
    first = ingest_dir(data_dir, db_path)
    second = ingest_dir(data_dir, db_path)
    assert first.changed and not second.changed
    assert {f.action for f in second.files} == {"unchanged"}
    assert second.data_version == first.data_version


def test_grown_file_is_read_from_where_it_ended(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00", "active"), ("S", "2023-01-23 10:30:00", "active")])
    ingest_dir(data_dir, db_path)
    with (data_dir / "store_status.csv").open("a") as handle:
        handle.write("S,2023-01-23 11:00:00,inactive\nS,bad,active\n")
    result = ingest_dir(data_dir, db_path)
    polls = file_result(result, "store_status.csv")
    assert polls.action == "appended"
    assert (polls.rows_read, polls.rows_loaded) == (2, 1)
    assert polls.bad_lines[0][0] == 5  # line numbers count from the file's start
    assert poll_count(db_path) == 3


def test_rewritten_file_is_read_again_and_merged(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00", "active")])
    ingest_dir(data_dir, db_path)
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00", "inactive"), ("S", "2023-01-23 09:00:00", "inactive")])
    os.utime(data_dir / "store_status.csv", ns=(1, 1))
    result = ingest_dir(data_dir, db_path)
    assert file_result(result, "store_status.csv").action == "read"
    assert poll_count(db_path) == 2  # accumulated and deduplicated
    assert report_rows(db_path, "2023-01-23T10:30:00Z")["S"][0] == "0.00"


def test_drop_files_are_read_after_the_main_file_in_name_order(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00", "active")], zones=[("S", "UTC")])
    (data_dir / "store_status-b.csv").write_text("store_id,timestamp_utc,status\nS,2023-01-23 10:00:00,active\n")
    (data_dir / "store_status-a.csv").write_text("store_id,timestamp_utc,status\nS,2023-01-23 10:00:00,inactive\n")
    rows = run(data_dir, db_path, as_of="2023-01-23T11:00:00Z")
    assert rows["S"][0] == "60.00"  # store_status-b.csv, read last, wins


def test_unterminated_last_poll_line_is_left_for_the_next_read(data_dir, db_path):
    data_dir.mkdir()
    path = data_dir / "store_status.csv"
    path.write_text("store_id,timestamp_utc,status\nS,2023-01-23 10:00:00,active\nS,2023-01-23 11:0")
    write_data_hours_zones(data_dir)
    result = ingest_dir(data_dir, db_path)
    polls = file_result(result, "store_status.csv")
    assert (polls.rows_loaded, polls.rows_skipped) == (1, 0)
    assert "left for the next read" in polls.notes[0]
    with path.open("a") as handle:
        handle.write("0:00,inactive\n")
    result = ingest_dir(data_dir, db_path)
    assert file_result(result, "store_status.csv").rows_loaded == 1
    assert poll_count(db_path) == 2


@pytest.mark.parametrize("name", ["menu_hours.csv", "timezones.csv"])
def test_unterminated_incomplete_hours_or_zone_file_is_not_used(data_dir, db_path, name):
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00", "active")], hours=[("S", 0, "09:00", "10:00")],
               zones=[("S", "Asia/Tokyo")])
    assert ingest_dir(data_dir, db_path).ok
    before = report_rows(db_path)
    rewritten = {"menu_hours.csv": "store_id,dayOfWeek,start_time_local,end_time_local\nS,0,00:00,23:59:59\nS,1,09:",
                 "timezones.csv": "store_id,timezone_str\nS,UTC\nT"}[name]
    (data_dir / name).write_text(rewritten)
    result = ingest_dir(data_dir, db_path)
    assert "incomplete" in file_result(result, name).error
    assert report_rows(db_path) == before  # the old hours or zone are kept whole
    with (data_dir / name).open("a") as handle:
        handle.write("00:00,10:00:00\n" if name == "menu_hours.csv" else ",America/New_York\n")
    assert ingest_dir(data_dir, db_path).ok
    assert report_rows(db_path) != before


def test_complete_last_line_without_newline_is_read(data_dir, db_path):
    data_dir.mkdir()
    (data_dir / "store_status.csv").write_text("store_id,timestamp_utc,status\nS,2023-01-23 10:00:00,active")
    write_data_hours_zones(data_dir)
    ingest_dir(data_dir, db_path)
    assert poll_count(db_path) == 1


def test_unknown_zone_is_kept_and_reported(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00", "active")], zones=[("S", "Mars/Base")])
    result = ingest_dir(data_dir, db_path)
    zones = file_result(result, "timezones.csv")
    assert "Mars/Base" in zones.notes[0] and "America/Chicago" in zones.notes[0]
    db = open_db(db_path)
    assert db.execute("SELECT timezone_str FROM zones").fetchone()[0] == "Mars/Base"


def test_store_ids_are_opaque_case_sensitive_and_trimmed(data_dir, db_path):
    write_data(data_dir, polls=[(" 00123 ", "2023-01-23 10:00:00", "active"), ("abc", "2023-01-23 10:00:00", "active"),
                                ("ABC", "2023-01-23 10:00:00", "inactive")])
    rows = run(data_dir, db_path)
    assert list(rows) == ["00123", "ABC", "abc"]


def test_every_ingest_is_recorded(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00", "active")])
    ingest_dir(data_dir, db_path)
    (data_dir / "menu_hours.csv").unlink()
    ingest_dir(data_dir, db_path)
    db = open_db(db_path)
    runs = db.execute("SELECT status, error FROM ingest_runs ORDER BY id").fetchall()
    assert runs[0] == ("ok", None)
    assert runs[1][0] == "partial" and "menu_hours.csv" in runs[1][1]


def write_data_hours_zones(data_dir):
    (data_dir / "menu_hours.csv").write_text("store_id,dayOfWeek,start_time_local,end_time_local\n")
    (data_dir / "timezones.csv").write_text("store_id,timezone_str\n")


def test_rewritten_main_file_keeps_the_drop_files_precedence(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-23 10:00:00", "active")], zones=[("S", "UTC")])
    (data_dir / "store_status_2.csv").write_text("store_id,timestamp_utc,status\nS,2023-01-23 10:00:00,inactive\n")
    assert run(data_dir, db_path, as_of="2023-01-23T11:00:00Z")["S"][3] == "60.00"  # the drop file wins
    write_data(data_dir, polls=[("S", "2023-01-23 09:00:00", "active"), ("S", "2023-01-23 10:00:00", "active")],
               zones=[("S", "UTC")])
    rows = run(data_dir, db_path, as_of="2023-01-23T11:00:00Z")
    assert rows["S"][3] == "60.00"  # read after the main file, the drop file still wins at 10:00
