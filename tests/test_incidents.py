"""Incidents (docs/SPEC.md section 7) against a slow model that reads the SPEC literally, from scratch and
incrementally, and the cases the SPEC names: a closed night, an outage while closed, ongoing, DST, 24x7."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from conftest import HANG_GUARD_S, POLL_HEADER, write_csv, write_data
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from model import is_open, zone_of
from test_engine_model import GRID, stores

from storemon.db import open_db
from storemon.ingest import ingest


def model_incidents(polls, hours, zone, latest: datetime) -> list[tuple[datetime, datetime | None]]:
    """SPEC section 7 read literally, on the grid: a cell is down when the store is open, has had a poll, and its
    latest poll at or before the cell is inactive; maximal runs of down cells are incidents."""
    polls = sorted(polls)
    tz = zone_of(zone)

    def down(t: datetime) -> bool:
        before = [p for p in polls if p[0] <= t]
        return bool(before) and not before[-1][1] and is_open(t.astimezone(tz).replace(tzinfo=None), hours)

    found, start = [], None
    t = polls[0][0]
    while t < latest:
        if down(t + GRID / 2):
            start = start or t
        elif start is not None:
            found.append((start, t))
            start = None
        t += GRID
    if start is not None:
        found.append((start, None if down(latest) else latest))
    elif down(latest):
        found.append((latest, None))
    return found


def stored_incidents(db_path) -> dict[str, list[tuple[datetime, datetime | None]]]:
    db = open_db(db_path)
    rows = db.execute('SELECT s.store_id, i.start, i."end" FROM incidents i JOIN stores s ON s.id = i.store '
                      "ORDER BY s.store_id, i.start").fetchall()
    db.close()
    out: dict[str, list] = {}
    for store_id, start, end in rows:
        out.setdefault(store_id, []).append(
            (datetime.fromtimestamp(start / 1e6, UTC), None if end is None else datetime.fromtimestamp(end / 1e6, UTC)))
    return out


def poll_rows(store_list, chosen=lambda t: True):
    return [(sid, t.strftime("%Y-%m-%d %H:%M:%S UTC"), "active" if a else "inactive")
            for sid, polls, _, _ in store_list for t, a in polls if chosen(t)]


def ingest_into(directory: Path, db_path: Path) -> None:
    db = open_db(db_path)
    try:
        assert ingest(db, directory, retain_days=0).ok
    finally:
        db.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target])
@given(stores(), st.integers(-8 * 96, 96))
def test_incidents_match_the_model_from_scratch_and_incrementally(case, split_step):
    as_of, store_list = case
    latest = max(t for _, polls, _, _ in store_list for t, _ in polls)
    expected = {sid: found for sid, polls, hours, zone in store_list
                if (found := model_incidents(polls, hours, zone, latest))}
    split = as_of + GRID * split_step
    with tempfile.TemporaryDirectory() as tmp:
        whole, parts = Path(tmp) / "whole", Path(tmp) / "parts"
        hours = [(sid, *row) for sid, _, hours, _ in store_list for row in hours]
        zones = [(sid, zone) for sid, _, _, zone in store_list if zone is not None]
        write_data(whole, polls=poll_rows(store_list), hours=hours, zones=zones)
        ingest_into(whole, Path(tmp) / "whole.db")
        assert stored_incidents(Path(tmp) / "whole.db") == expected
        # The same polls in two refreshes: those up to `split` first, the rest after, with a third of the
        # earlier ones held back to arrive late in the second (before the first refresh's latest poll).
        def late(t: datetime) -> bool:
            return t <= split and int(t.timestamp()) // 900 % 3 == 0

        write_data(parts, polls=poll_rows(store_list, lambda t: t <= split and not late(t)), hours=hours,
                   zones=zones)
        ingest_into(parts, Path(tmp) / "parts.db")
        write_csv(parts / "store_status_late.csv", POLL_HEADER,
                  poll_rows(store_list, lambda t: t > split or late(t)))
        ingest_into(parts, Path(tmp) / "parts.db")
        assert stored_incidents(Path(tmp) / "parts.db") == expected


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def incidents_of(tmp_path, polls, hours=(), zone="UTC"):
    data = write_data(tmp_path / "data", polls=[("S", t, s) for t, s in polls],
                      hours=[("S", *row) for row in hours], zones=[("S", zone)])
    ingest_into(data, tmp_path / "s.db")
    return stored_incidents(tmp_path / "s.db").get("S", [])


def test_an_outage_across_a_closed_night_is_two_incidents(tmp_path):
    hours = [(day, "09:00", "17:00") for day in range(7)]
    found = incidents_of(tmp_path, [("2023-01-23 15:00:00", "inactive"), ("2023-01-24 11:00:00", "active"),
                                    ("2023-01-24 12:00:00", "active")], hours)
    assert found == [(utc("2023-01-23 15:00"), utc("2023-01-23 17:00")),
                     (utc("2023-01-24 09:00"), utc("2023-01-24 11:00"))]


def test_an_outage_entirely_while_closed_is_no_incident(tmp_path):
    hours = [(day, "09:00", "17:00") for day in range(7)]
    assert incidents_of(tmp_path, [("2023-01-23 18:00:00", "inactive"), ("2023-01-24 08:00:00", "active"),
                                   ("2023-01-24 12:00:00", "active")], hours) == []


def test_an_outage_still_on_at_the_latest_poll_is_ongoing(tmp_path):
    found = incidents_of(tmp_path, [("2023-01-23 10:00:00", "active"), ("2023-01-23 11:30:00", "inactive"),
                                    ("2023-01-23 12:00:00", "inactive")], [(0, "09:00", "17:00")])
    assert found == [(utc("2023-01-23 11:30"), None)]


def test_a_store_without_hours_is_down_whenever_inactive(tmp_path):
    data = write_data(tmp_path / "data", polls=[("S", "2023-01-23 10:00:00", "inactive"),
                                                ("S", "2023-01-25 10:00:00", "active"),
                                                ("S", "2023-01-26 10:00:00", "inactive")])
    ingest_into(data, tmp_path / "s.db")
    assert stored_incidents(tmp_path / "s.db")["S"] == [(utc("2023-01-23 10:00"), utc("2023-01-25 10:00")),
                                                        (utc("2023-01-26 10:00"), None)]


def test_the_spring_forward_night_in_new_york(tmp_path):
    # Open 01:00-04:00 local every day; on 2023-03-12 02:00-03:00 does not exist: open 06:00-07:00Z and
    # 07:00-08:00Z (01:00 EST to 04:00 EDT is two real hours).
    hours = [(day, "01:00", "04:00") for day in range(7)]
    found = incidents_of(tmp_path, [("2023-03-11 12:00:00", "inactive"), ("2023-03-12 12:00:00", "active")], hours,
                         "America/New_York")
    assert found == [(utc("2023-03-12 06:00"), utc("2023-03-12 08:00"))]


def test_an_incident_in_progress_keeps_its_start_across_refreshes(tmp_path):
    data = write_data(tmp_path / "data", polls=[("S", "2023-01-23 10:00:00", "inactive")])
    ingest_into(data, tmp_path / "s.db")
    assert stored_incidents(tmp_path / "s.db")["S"] == [(utc("2023-01-23 10:00"), None)]
    for hour in (11, 12, 13):
        with (data / "store_status.csv").open("a") as handle:
            handle.write(f"S,2023-01-23 {hour}:00:00,{'active' if hour == 13 else 'inactive'}\n")
        ingest_into(data, tmp_path / "s.db")
    assert stored_incidents(tmp_path / "s.db")["S"] == [(utc("2023-01-23 10:00"), utc("2023-01-23 13:00"))]


def test_the_api_lists_incidents_newest_first_with_filters_and_csv(tmp_path):
    from webtest import TestApp

    from storemon.service import Service, ServiceConfig

    data = write_data(tmp_path / "data", polls=[
        ("A", "2023-01-23 10:00:00", "inactive"), ("A", "2023-01-23 11:00:00", "active"),
        ("B", "2023-01-23 12:00:00", "inactive"), ("B", "2023-01-23 12:30:00", "inactive"),
    ])
    service = Service(ServiceConfig(data, tmp_path / "s.db", port=0, workers=1))
    service.start()
    try:
        assert service.refresher.first_done.wait(HANG_GUARD_S)
        app = TestApp(service.app)
        listed = app.get("/incidents").json["incidents"]
        assert listed == [
            {"store_id": "B", "start": "2023-01-23T12:00:00.000000Z", "end": None, "minutes": 30.0},
            {"store_id": "A", "start": "2023-01-23T10:00:00.000000Z", "end": "2023-01-23T11:00:00.000000Z",
             "minutes": 60.0},
        ]
        assert [i["store_id"] for i in app.get("/incidents", {"ongoing": "true"}).json["incidents"]] == ["B"]
        assert [i["store_id"] for i in app.get("/incidents", {"store_id": "A"}).json["incidents"]] == ["A"]
        assert [i["store_id"] for i in app.get("/incidents", {"since": "2023-01-23T11:30:00Z"}).json["incidents"]] \
            == ["B"]
        assert len(app.get("/incidents", {"limit": 1}).json["incidents"]) == 1
        text = app.get("/incidents", {"format": "csv"}).text
        assert text.splitlines() == ["store_id,start,end,minutes", "B,2023-01-23T12:00:00.000000Z,,30.00",
                                     "A,2023-01-23T10:00:00.000000Z,2023-01-23T11:00:00.000000Z,60.00"]
        assert app.get("/incidents", {"since": "yesterday"}, status=400).json["error"].startswith("since")
    finally:
        service.stop()


def test_a_late_poll_that_ends_an_incident_earlier(tmp_path):
    # The first refresh sees S (24x7) inactive at 10:00 and active again at 12:00: down 10:00-12:00. The second
    # brings a late 11:00 active (before the first refresh's latest poll) and a new 13:00 active: down 10:00-11:00.
    data = write_data(tmp_path / "data", polls=[("S", "2023-01-23 10:00:00", "inactive"),
                                                ("S", "2023-01-23 12:00:00", "active")])
    ingest_into(data, tmp_path / "s.db")
    assert stored_incidents(tmp_path / "s.db")["S"] == [(utc("2023-01-23 10:00"), utc("2023-01-23 12:00"))]
    write_csv(data / "store_status_late.csv", POLL_HEADER, [("S", "2023-01-23 13:00:00", "active"),
                                                            ("S", "2023-01-23 11:00:00", "active")])
    ingest_into(data, tmp_path / "s.db")
    assert stored_incidents(tmp_path / "s.db")["S"] == [(utc("2023-01-23 10:00"), utc("2023-01-23 11:00"))]


def test_a_late_poll_before_the_last_refresh_adds_an_incident(tmp_path):
    # The first refresh sees S active at 10:00 and 12:00; the second brings a late 11:00 inactive and a new 13:00
    # active: down 11:00-12:00.
    data = write_data(tmp_path / "data", polls=[("S", "2023-01-23 10:00:00", "active"),
                                                ("S", "2023-01-23 12:00:00", "active")])
    ingest_into(data, tmp_path / "s.db")
    assert stored_incidents(tmp_path / "s.db") == {}
    write_csv(data / "store_status_late.csv", POLL_HEADER, [("S", "2023-01-23 13:00:00", "active"),
                                                            ("S", "2023-01-23 11:00:00", "inactive")])
    ingest_into(data, tmp_path / "s.db")
    assert stored_incidents(tmp_path / "s.db")["S"] == [(utc("2023-01-23 11:00"), utc("2023-01-23 12:00"))]
