"""Business-hours shapes of the public Loop releases (rows copied from them), against the model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import run, write_data
from model import model_row

# Two real stores: tiny 00:00-00:10 rows beside 11:00-23:59:00 (2023 release), and four segments a day with
# 23:59:00 and 23:30 ends and a Saturday that starts later (2025 release).
REAL_HOURS = [
    *[("1481966498820158979", day, "00:00:00", "00:10:00") for day in range(7)],
    *[("1481966498820158979", day, "11:00:00", "23:59:00") for day in range(7)],
    *[("982bc638-b74b-4cc0-873a-11a08a48e99c", day, "00:00:00", "00:30:00") for day in (4, 5, 6)],
    *[("982bc638-b74b-4cc0-873a-11a08a48e99c", day, "06:30:00", "10:19:00") for day in (0, 1, 2, 3, 4, 5)],
    ("982bc638-b74b-4cc0-873a-11a08a48e99c", 6, "07:30:00", "10:19:00"),
    *[("982bc638-b74b-4cc0-873a-11a08a48e99c", day, "10:20:00", "21:49:00") for day in range(7)],
    *[("982bc638-b74b-4cc0-873a-11a08a48e99c", day, "21:50:00", "23:30:00") for day in (0, 1, 2, 6)],
    *[("982bc638-b74b-4cc0-873a-11a08a48e99c", day, "21:50:00", "23:59:00") for day in (3, 4, 5)],
    ("8139926242460185114", 2, "06:00:00", "15:00:00"),
    ("8139926242460185114", 3, "06:00:00", "15:00:00"),
]
REAL_ZONES = [("1481966498820158979", "America/New_York"), ("982bc638-b74b-4cc0-873a-11a08a48e99c",
              "America/Chicago"), ("8139926242460185114", "Asia/Beirut")]


@pytest.mark.parametrize("interpolation", ["previous", "nearest"])
@pytest.mark.parametrize("as_of", [datetime(2023, 1, 25, 18, 13, tzinfo=UTC), datetime(2023, 3, 14, 6, tzinfo=UTC),
                                   datetime(2023, 11, 8, 12, 31, tzinfo=UTC)])
def test_real_hours_shapes_match_model(data_dir, db_path, as_of, interpolation):
    polls = {}
    for index, (store_id, _) in enumerate(REAL_ZONES):
        t, active, polls[store_id] = as_of - timedelta(days=8), True, []
        step = 0
        while t <= as_of + timedelta(hours=2):
            polls[store_id].append((t, active))
            step += 1
            active = (step * (index + 3)) % 7 not in (0, 1)
            t += timedelta(minutes=37 + 11 * ((step + index) % 5))
    write_data(
        data_dir,
        polls=[(sid, t.strftime("%Y-%m-%d %H:%M:%S UTC"), "active" if a else "inactive")
               for sid, ps in polls.items() for t, a in ps],
        hours=REAL_HOURS,
        zones=REAL_ZONES,
    )
    rows = run(data_dir, db_path, as_of.isoformat(), interpolation)
    hours_of = {sid: [(d, s, e) for i, d, s, e in REAL_HOURS if i == sid] for sid, _ in REAL_ZONES}
    expected = {
        sid: model_row(polls[sid], hours_of[sid], zone, as_of, interpolation, timedelta(seconds=30))
        for sid, zone in REAL_ZONES
    }
    assert rows == expected
