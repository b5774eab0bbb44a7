"""Each rule of SPEC sections 2-6, on small hand-made stores whose right answer is worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime

from conftest import run, write_data
from hypothesis import given
from hypothesis import strategies as st

from storemon.parse import parse_timestamps

MONDAY = "2023-01-23"  # a Monday


def test_worked_example_previous(data_dir, db_path):
    write_data(
        data_dir,
        polls=[("S", "2023-01-23 15:14:00 UTC", "active"), ("S", "2023-01-23 16:15:00 UTC", "inactive")],
        hours=[("S", 0, "09:00", "12:00")],
        zones=[("S", "America/New_York")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-23T17:30:00Z")
    assert rows == {"S": ["0.00", "2.25", "2.25", "30.00", "0.75", "0.75"]}


def test_worked_example_nearest(data_dir, db_path):
    write_data(
        data_dir,
        polls=[("S", "2023-01-23 15:14:00 UTC", "active"), ("S", "2023-01-23 16:15:00 UTC", "inactive")],
        hours=[("S", 0, "09:00", "12:00")],
        zones=[("S", "America/New_York")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-23T17:30:00Z", interpolation="nearest")
    # switch at 15:44:30Z: up 14:00-15:44:30 = 1.7417 h, down 15:44:30-17:00 = 1.2583 h
    assert rows["S"][1:3] == ["1.74", "1.74"]
    assert rows["S"][4:6] == ["1.26", "1.26"]
    assert rows["S"][0] == "0.00" and rows["S"][3] == "30.00"


def test_default_as_of_is_latest_poll_of_all_stores(data_dir, db_path):
    write_data(
        data_dir,
        polls=[("A", "2023-01-23 10:00:00 UTC", "active"), ("B", "2023-01-23 12:00:00 UTC", "inactive")],
    )
    rows = run(data_dir, db_path)
    # as_of = 12:00Z; A active since 10:00 (and before: first poll's status), 24x7 in Chicago
    assert rows["A"] == ["60.00", "24.00", "168.00", "0.00", "0.00", "0.00"]
    assert rows["B"] == ["0.00", "0.00", "0.00", "60.00", "24.00", "168.00"]


def test_store_without_poll_before_as_of_is_left_out_and_sorted_by_id(data_dir, db_path):
    write_data(
        data_dir,
        polls=[("b", "2023-01-23 10:00:00", "active"), ("a", "2023-01-23 10:00:00", "active"),
               ("B", "2023-01-23 10:00:00", "active"), ("late", "2023-01-23 13:00:00", "active")],
        hours=[("nopolls", 0, "09:00", "12:00")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-23T12:00:00Z")
    assert list(rows) == ["B", "a", "b"]


def test_as_of_before_last_poll_ignores_later_polls(data_dir, db_path):
    write_data(
        data_dir,
        polls=[("S", "2023-01-23 10:00:00", "active"), ("S", "2023-01-23 11:30:00", "inactive"),
               ("S", "2023-01-23 12:10:00", "inactive")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-23T11:00:00Z")
    assert rows["S"] == ["60.00", "24.00", "168.00", "0.00", "0.00", "0.00"]
    rows = run(data_dir, db_path, as_of="2023-01-23T12:00:00Z")
    assert rows["S"] == ["30.00", "23.50", "167.50", "30.00", "0.50", "0.50"]


def test_overnight_segment_belongs_to_its_day(data_dir, db_path):
    # Sunday 22:00 - Monday 02:00 in UTC (zone UTC). as_of Monday 12:00Z. Active throughout.
    write_data(
        data_dir,
        polls=[("S", "2023-01-23 11:00:00", "active")],
        hours=[("S", 6, "22:00", "02:00")],
        zones=[("S", "UTC")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-23T12:00:00Z")
    # Last day [Sun 12:00, Mon 12:00) holds Sun 22:00-24:00 and Mon 00:00-02:00. The week starts Mon 16
    # 12:00, after the night of Sun 15, so it holds the same single night.
    assert rows["S"][1:3] == ["4.00", "4.00"]


def test_end_23_59_59_is_end_of_day_but_23_59_00_is_literal(data_dir, db_path):
    write_data(
        data_dir,
        polls=[("A", "2023-01-23 00:00:00", "active"), ("B", "2023-01-23 00:00:00", "active")],
        hours=[("A", 0, "00:00:00", "23:59:59"), ("B", 0, "00:00:00", "23:59:00")],
        zones=[("A", "UTC"), ("B", "UTC")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-24T00:00:00Z")
    assert rows["A"][1] == "24.00"
    assert rows["B"][1] == "23.98"  # 23 h 59 min = 23.9833 h


def test_end_equal_start_is_open_24_hours_from_start(data_dir, db_path):
    write_data(
        data_dir,
        polls=[("S", "2023-01-25 00:00:00", "active")],
        hours=[("S", 0, "10:00", "10:00")],  # Monday 10:00 to Tuesday 10:00
        zones=[("S", "UTC")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-25T00:00:00Z")
    assert rows["S"][2] == "24.00"
    assert rows["S"][1] == "10.00"  # last day [Tue 00:00, Wed 00:00): Tue 00:00-10:00


def test_listed_days_only_and_union_of_overlaps(data_dir, db_path):
    write_data(
        data_dir,
        polls=[("S", "2023-01-23 00:00:00", "inactive")],
        hours=[("S", 1, "09:00", "12:00"), ("S", 1, "11:00", "13:00"), ("S", 1, "11:00", "13:00")],
        zones=[("S", "UTC")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-29T00:00:00Z")
    # only Tuesday, 09:00-13:00 once: 4 h of downtime in the week, none in the last day (Saturday)
    assert rows["S"] == ["0.00", "0.00", "0.00", "0.00", "0.00", "4.00"]


def test_no_hours_rows_means_24x7(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-23 00:00:00", "inactive")], zones=[("S", "Asia/Kolkata")])
    rows = run(data_dir, db_path, as_of="2023-01-23T00:30:00Z")
    assert rows["S"] == ["0.00", "0.00", "0.00", "60.00", "24.00", "168.00"]


def test_spring_forward_night_skipped_hour_is_never_open(data_dir, db_path):
    # 2023-03-12 is a Sunday; New York skips 02:00-03:00 local. Open 01:00-04:00 local: 2 real hours.
    write_data(
        data_dir,
        polls=[("S", "2023-03-12 00:00:00", "active")],
        hours=[("S", 6, "01:00", "04:00")],
        zones=[("S", "America/New_York")],
    )
    rows = run(data_dir, db_path, as_of="2023-03-13T00:00:00Z")
    assert rows["S"][1:3] == ["2.00", "2.00"]


def test_fall_back_night_repeated_hour_is_open_twice(data_dir, db_path):
    # 2023-11-05 is a Sunday; New York repeats 01:00-02:00 local. Open 00:00-03:00 local: 4 real hours.
    write_data(
        data_dir,
        polls=[("S", "2023-11-05 00:00:00", "inactive")],
        hours=[("S", 6, "00:00", "03:00")],
        zones=[("S", "America/New_York")],
    )
    rows = run(data_dir, db_path, as_of="2023-11-06T00:00:00Z")
    assert rows["S"][4:6] == ["4.00", "4.00"]


def test_dst_week_of_a_24x7_store_counts_real_hours(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-03-10 00:00:00", "active")], zones=[("S", "America/New_York")])
    rows = run(data_dir, db_path, as_of="2023-03-15T00:00:00Z")
    assert rows["S"][1:3] == ["24.00", "168.00"]


def test_half_hour_offset_zone(data_dir, db_path):
    # Asia/Kolkata is UTC+05:30: local Monday 09:00-10:00 is 03:30-04:30Z.
    write_data(
        data_dir,
        polls=[("S", "2023-01-23 04:00:00", "active"), ("S", "2023-01-23 04:10:00", "inactive")],
        hours=[("S", 0, "09:00", "10:00")],
        zones=[("S", "Asia/Kolkata")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-23T05:00:00Z")
    # up 03:30-04:10 (40 min), down 04:10-04:30 (20 min); last hour [04:00, 05:00): up 10, down 20
    assert rows["S"] == ["10.00", "0.67", "0.67", "20.00", "0.33", "0.33"]


def test_unknown_zone_is_computed_in_chicago(data_dir, db_path):
    write_data(
        data_dir,
        polls=[("S", "2023-01-23 15:00:00", "active"), ("T", "2023-01-23 15:00:00", "active")],
        hours=[("S", 0, "09:00", "10:00"), ("T", 0, "09:00", "10:00")],
        zones=[("S", "Mars/Olympus_Mons")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-23T16:00:00Z")
    # Chicago is UTC-6 in January: 09:00-10:00 local = 15:00-16:00Z
    assert rows["S"] == rows["T"] == ["60.00", "1.00", "1.00", "0.00", "0.00", "0.00"]


def test_later_duplicate_poll_wins_and_later_load_wins(data_dir, db_path):
    write_data(
        data_dir,
        polls=[("S", "2023-01-23 10:00:00 UTC", "active"), ("S", "2023-01-23T10:00:00Z", "inactive")],
        zones=[("S", "UTC")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-23T11:00:00Z")
    assert rows["S"][0:1] + rows["S"][3:4] == ["0.00", "60.00"]
    (data_dir / "store_status_2.csv").write_text(
        "store_id,timestamp_utc,status\nS,2023-01-23 10:00:00+00:00,active\n", encoding="utf-8"
    )
    rows = run(data_dir, db_path, as_of="2023-01-23T11:00:00Z")
    assert rows["S"][0:1] + rows["S"][3:4] == ["60.00", "0.00"]


def test_last_zone_row_wins(data_dir, db_path):
    write_data(
        data_dir,
        polls=[("S", "2023-01-23 15:00:00", "active")],
        hours=[("S", 0, "09:00", "10:00")],
        zones=[("S", "UTC"), ("S", "America/Chicago")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-23T16:00:00Z")
    assert rows["S"][0] == "60.00"


# Each store is down from 04:00Z, then up from one instant written in one format: its uptime in the last hour
# [05:00, 06:00Z) is 06:00 minus that instant. An offset ignored or its sign flipped, a fraction dropped or rounded,
# or the row rejected (the store then stays down) each changes the figures.
TIMESTAMP_FORMATS = {
    "colon offset": ("2023-01-23T10:50:00+05:30", "ACTIVE ", "40.00", "20.00"),  # 05:20Z
    "compact offset": ("2023-01-23 10:35:00+0530", " Active", "55.00", "5.00"),  # 05:05Z
    "hours offset": ("2023-01-23T10:10:00+05", "active", "50.00", "10.00"),  # 05:10Z
    "negative offset": ("2023-01-23T02:15:00-03:00", "active", "45.00", "15.00"),  # 05:15Z
    "Z with a fraction": ("2023-01-23 05:00:00.6Z", "active", "59.99", "0.01"),  # up 59 min 59.4 s
    "UTC with microseconds": ("2023-01-23 05:59:58.800000 UTC", "active", "0.02", "59.98"),  # up 1.2 s
    "lower-case utc": ("2023-01-23 05:30:00 utc", "active", "30.00", "30.00"),
    "no suffix": ("2023-01-23 05:45:00", "active", "15.00", "45.00"),
    # 0.3000001 s truncated to 0.300001 s of uptime: 0.00500002 min, "0.01"; rounded to the microsecond it would be
    # 0.300000 s, exactly half of 0.01 min, and "0.00" (half to even)
    "sub-microsecond": ("2023-01-23 05:59:59.6999999Z", "active", "0.01", "59.99"),
}


def test_timestamp_formats_and_offsets(data_dir, db_path):
    polls = []
    for store, (instant, status, _, _) in TIMESTAMP_FORMATS.items():
        polls += [(store, "2023-01-23 04:00:00", "INACTIVE"), (store, instant, status)]
    write_data(data_dir, polls=polls, zones=[(store, "UTC") for store in TIMESTAMP_FORMATS])
    rows = run(data_dir, db_path, as_of="2023-01-23T06:00:00Z")
    got = {store: (rows[store][0], rows[store][3]) for store in TIMESTAMP_FORMATS}
    assert got == {store: (up, down) for store, (_, _, up, down) in TIMESTAMP_FORMATS.items()}


def test_end_24_00_is_the_end_of_the_day(data_dir, db_path):
    # Monday 21:00-24:00 and Tuesday 09:00-10:00 (UTC). Last day [Mon 00:30, Tue 00:30) holds Monday 21:00-24:00:
    # up 21:00-23:00, down 23:00-24:00. Were the 24:00 row rejected, Monday would be closed (0 and 0).
    write_data(
        data_dir,
        polls=[("S", "2023-01-23 20:00:00", "active"), ("S", "2023-01-23 23:00:00", "inactive")],
        hours=[("S", 0, "21:00", "24:00"), ("S", 1, "09:00", "10:00")],
        zones=[("S", "UTC")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-24T00:30:00Z")
    assert (rows["S"][1], rows["S"][4]) == ("2.00", "1.00")


def test_a_store_whose_hours_rows_are_all_bad_is_open_24x7(data_dir, db_path):
    # B's rows are all bad (day 7, an hour 25, a time that is not one): B has no hours, so 24x7. G keeps its good
    # row (Monday 09:00-10:00) beside a bad one, so it is closed the rest of the day.
    write_data(
        data_dir,
        polls=[("B", "2023-01-23 00:00:00", "active"), ("G", "2023-01-23 00:00:00", "active")],
        hours=[("B", 7, "09:00", "10:00"), ("B", 0, "25:00", "26:00"), ("B", 1, "nine", "ten"),
               ("G", 0, "09:00", "10:00"), ("G", 0, "10:00", "99:00")],
        zones=[("B", "UTC"), ("G", "UTC")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-24T00:00:00Z")
    assert rows["B"][1] == "24.00" and rows["G"][1] == "1.00"


def test_rounding_half_to_even_exact(data_dir, db_path):
    # 0.3 s active in the last hour = 0.005 min: half way, rounds to even 0.00; 0.9 s = 0.015 min -> 0.02
    write_data(
        data_dir,
        polls=[("A", "2023-01-23 09:59:59.7", "active"), ("A", "2023-01-23 10:00:00", "inactive"),
               ("B", "2023-01-23 09:59:59.1", "active"), ("B", "2023-01-23 10:00:00", "inactive"),
               ("A", "2023-01-23 09:00:00", "inactive"), ("B", "2023-01-23 09:00:00", "inactive")],
        zones=[("A", "UTC"), ("B", "UTC")],
    )
    rows = run(data_dir, db_path, as_of="2023-01-23T10:00:00Z")
    assert rows["A"][0] == "0.00"
    assert rows["B"][0] == "0.02"


# Date and time fields, some out of range, rendered in the platform's layout or in other accepted ones.
timestamp_fields = st.tuples(st.integers(1, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
                             st.integers(0, 61), st.integers(0, 61), st.integers(0, 999_999))
renderings = st.sampled_from(["{} {}.{:06d} UTC", "{}T{}.{:06d}Z", "{} {}.{:06d}+00:00", "{} {}.{:06d}",
                              " {} {}.{:06d} UTC ", "{} {}.{:06d} utc"])


@given(st.lists(st.tuples(timestamp_fields, renderings), max_size=40))
def test_timestamps_read_as_the_standard_library_reads_them(rows):
    # The model: datetime, which rejects a date that does not exist and a time out of range.
    texts, expected = [], []
    for (year, month, day, hour, minute, second, micro), rendering in rows:
        texts.append(rendering.format(f"{year:04d}-{month:02d}-{day:02d}", f"{hour:02d}:{minute:02d}:{second:02d}",
                                      micro))
        try:
            moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
        except ValueError:
            expected.append(None)
        else:
            expected.append((moment - datetime(1970, 1, 1, tzinfo=UTC)) // datetime.resolution)
    parsed = parse_timestamps(texts)
    assert [int(v) if ok else None for v, ok in zip(parsed.values.tolist(), parsed.ok.tolist())] == expected
