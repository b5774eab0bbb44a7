"""The engine against a slow, obviously correct model (tests/model.py), on random small stores."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import run, write_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model import model_row

GRID = timedelta(minutes=15)  # every poll, segment boundary, zone transition and as_of is on this grid
CELL = GRID / 2  # nearest's midpoints fall on half the grid
ZONES = [None, "America/New_York", "America/Chicago", "America/Los_Angeles", "Asia/Kolkata", "Asia/Kathmandu",
         "Australia/Lord_Howe", "Europe/London", "Asia/Beirut", "Pacific/Honolulu", "Not/AZone"]
# as_of anchors near DST changes of several zones, and one quiet week.
ANCHORS = [datetime(2023, 3, 12, 12, tzinfo=UTC), datetime(2023, 11, 5, 12, tzinfo=UTC),
           datetime(2023, 1, 23, 12, tzinfo=UTC), datetime(2024, 4, 7, 0, tzinfo=UTC),
           datetime(2023, 3, 26, 6, tzinfo=UTC)]


def grid_time(day_fraction_steps: int) -> str:
    minutes = day_fraction_steps * 15
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


hours_row = st.tuples(
    st.integers(0, 6),
    st.integers(0, 95).map(grid_time),
    st.one_of(st.integers(0, 95).map(grid_time), st.just("23:59:59")),
)


every_day_hours = st.tuples(st.integers(0, 12).map(grid_time), st.integers(0, 95).map(grid_time)).map(
    lambda start_end: [(day, *start_end) for day in range(7)]
)


@st.composite
def stores(draw):
    anchor = draw(st.sampled_from(ANCHORS))
    as_of = anchor + GRID * draw(st.integers(-96, 6 * 96))
    count = draw(st.integers(1, 3))
    result = []
    for index in range(count):
        poll_steps = draw(st.lists(st.integers(-8 * 96, 96), min_size=1, max_size=20, unique=True))
        polls = [(as_of + GRID * s, draw(st.booleans())) for s in poll_steps]
        hours = draw(st.one_of(st.just([]), st.lists(hours_row, min_size=1, max_size=5), every_day_hours))
        zone = draw(st.sampled_from(ZONES))
        result.append((f"store-{index}", polls, hours, zone))
    return as_of, result


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stores(), st.sampled_from(["previous", "nearest"]))
def test_engine_matches_model(case, interpolation):
    as_of, store_list = case
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "data"
        write_data(
            directory,
            polls=[(sid, t.strftime("%Y-%m-%d %H:%M:%S UTC"), "active" if a else "inactive")
                   for sid, polls, _, _ in store_list for t, a in polls],
            hours=[(sid, *row) for sid, _, hours, _ in store_list for row in hours],
            zones=[(sid, zone) for sid, _, _, zone in store_list if zone is not None],
        )
        rows = run(directory, Path(tmp) / "db.sqlite", as_of.isoformat(), interpolation)
    expected = {}
    for sid, polls, hours, zone in store_list:
        row = model_row(polls, hours, zone, as_of, interpolation, CELL)
        if row is not None:
            expected[sid] = row
    assert rows == expected
