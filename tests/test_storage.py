"""Time-partitioned poll storage: what is stored equals a plain model of SPEC's duplicate rules, whatever the order,
the files, the block size or the spill; late polls, retention and the schema upgrade keep every report exact."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from conftest import HANG_GUARD_S, POLL_HEADER, ingest_dir, report_csv, write_csv, write_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storemon import ingest as ingest_module
from storemon import polls, sources
from storemon.compute import report_from_db
from storemon.db import SCHEMA_VERSION, SchemaError, get_meta, open_db
from storemon.parse import parse_instant
from storemon.snapshot import BeforeRetainedData

DAY0 = datetime(2023, 1, 20, tzinfo=UTC)


def stamp(minutes: int) -> str:
    return (DAY0 + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S UTC")


def stored(db_path) -> dict[tuple[int, int], bool]:
    """Every stored poll as {(store key, microseconds): active}, read through the partitions."""
    db = open_db(db_path)
    try:
        everything = polls.read_window(db, -(10**6), 10**6, -(2**62), 2**62)
        ids = dict(db.execute("SELECT id, store_id FROM stores").fetchall())
    finally:
        db.close()
    return {(ids[s], t): a for s, t, a in zip(everything.store.tolist(), everything.ts.tolist(),
                                              everything.active.tolist())}


poll_rows = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 4 * 24 * 60), st.booleans()),
    min_size=1, max_size=60,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(loads=st.lists(st.lists(poll_rows, min_size=1, max_size=3), min_size=1, max_size=3))
def test_stored_polls_equal_a_model_of_the_duplicate_rules(tmp_path_factory, loads, monkeypatch):
    """Several loads, each a main file plus drop files, over four UTC days in file order: the stored polls are
    the model's, where the later row (file name order, then line, then load) wins at one store and instant."""
    monkeypatch.setattr(sources, "BLOCK_BYTES", 97)  # many blocks, cut anywhere
    monkeypatch.setattr(ingest_module._PollSpill, "BUDGET_BYTES", 200)  # spilled to disk
    base = tmp_path_factory.mktemp("storage")
    data, db_path = base / "data", base / "s.db"
    write_data(data)
    model: dict[tuple[str, int], bool] = {}
    written: dict[str, list] = {}
    for load in loads:
        added = {}
        for index, rows in enumerate(load):
            name = "store_status.csv" if index == 0 else f"store_status_{index}.csv"
            written[name] = written.get(name, []) + rows
            added[name] = rows
            write_csv(data / name, POLL_HEADER,
                      [(s, stamp(m), "active" if a else "inactive") for s, m, a in written[name]])
        for name in sorted(added, key=lambda n: (n != "store_status.csv", n)):  # what this load reads, in order
            for s, m, a in added[name]:
                model[(s, parse_instant(stamp(m)))] = a
        assert ingest_dir(data, db_path).ok
    assert stored(db_path) == model
    assert latest_polls(db_path) == {s: (t, model[(s, t)]) for s, t in
                                     ((s, max(t for m, t in model if m == s)) for s in {s for s, _ in model})}


def latest_polls(db_path) -> dict[str, tuple[int, bool]]:
    """polls.latest as {store id: (microseconds, active)}."""
    db = open_db(db_path)
    try:
        last = polls.latest(db)
        ids = dict(db.execute("SELECT id, store_id FROM stores").fetchall())
    finally:
        db.close()
    return {ids[s]: (t, a) for s, t, a in zip(last.store.tolist(), last.ts.tolist(), last.active.tolist())}


def test_a_late_poll_lands_in_its_older_partition(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-20 10:00:00", "active"), ("S", "2023-01-23 10:00:00", "active")],
               zones=[("S", "UTC")])
    ingest_dir(data_dir, db_path)
    before = report_csv(db_path, "2023-01-23T11:00:00Z")
    write_csv(data_dir / "store_status_late.csv", POLL_HEADER, [("S", "2023-01-21 00:00:00", "inactive")])
    assert ingest_dir(data_dir, db_path).ok
    db = open_db(db_path)
    days = [row[0] for row in db.execute("SELECT day FROM poll_days ORDER BY day")]
    db.close()
    assert days == [19377, 19378, 19380]  # 2023-01-20, -21 and -23: the late poll has its own old partition
    after = report_csv(db_path, "2023-01-23T11:00:00Z")
    # 24x7; before: active all week. After: inactive from 01-21 00:00 to 01-23 10:00 (58 h, 23 h of the day).
    assert before.splitlines()[1] == "S,60.00,24.00,168.00,0.00,0.00,0.00"
    assert after.splitlines()[1] == "S,60.00,1.00,110.00,0.00,23.00,58.00"


def test_a_duplicate_in_an_older_partition_is_replaced_by_the_later_load(data_dir, db_path):
    write_data(data_dir, polls=[("S", "2023-01-20 10:00:00", "active"), ("S", "2023-01-22 10:00:00", "active")],
               zones=[("S", "UTC")])
    ingest_dir(data_dir, db_path)
    write_csv(data_dir / "store_status_2.csv", POLL_HEADER,
              [("S", "2023-01-20 10:00:00+00:00", "inactive"), ("S", "2023-01-22 11:00:00", "active")])
    assert ingest_dir(data_dir, db_path).ok
    assert stored(db_path) == {
        ("S", parse_instant("2023-01-20 10:00:00")): False,
        ("S", parse_instant("2023-01-22 10:00:00")): True,
        ("S", parse_instant("2023-01-22 11:00:00")): True,
    }
    db = open_db(db_path)
    assert get_meta(db, "poll_count") == 3
    db.close()


def test_the_last_poll_before_the_week_comes_from_any_older_partition(data_dir, db_path):
    # The only poll before the week (from 01-17 13:00) is on 01-16, in an older partition than the week's; with
    # nearest the status switches at the midpoint 01-20 06:00, inside the week.
    write_data(data_dir, polls=[("S", "2023-01-16 00:00:00", "inactive"), ("S", "2023-01-24 12:00:00", "active")],
               zones=[("S", "UTC")])
    ingest_dir(data_dir, db_path)
    row = report_csv(db_path, "2023-01-24T13:00:00Z").splitlines()[1]
    assert row == "S,60.00,1.00,1.00,0.00,23.00,167.00"
    row = report_csv(db_path, "2023-01-24T13:00:00Z", "nearest").splitlines()[1]
    assert row == "S,60.00,24.00,103.00,0.00,0.00,65.00"


def week_of_polls(stores=("A", "B", "C"), days=12):
    rows = []
    for d in range(days * 24):
        for index, store in enumerate(stores):
            if (d + index) % 5 == 0:
                continue  # gaps, so some stores have no poll in some hours
            rows.append((store, stamp(60 * d + 7 * index), "active" if (d // 7 + index) % 3 else "inactive"))
    return rows


def test_retention_prunes_old_partitions_and_keeps_reports_exact(tmp_path):
    rows = week_of_polls(days=14)
    kept, everything = tmp_path / "kept", tmp_path / "all"
    write_data(kept, polls=rows, hours=[("A", 0, "09:00", "17:00"), ("B", 4, "22:00", "02:00")],
               zones=[("A", "America/New_York")])
    write_data(everything, polls=rows, hours=[("A", 0, "09:00", "17:00"), ("B", 4, "22:00", "02:00")],
               zones=[("A", "America/New_York")])
    ingest_dir(kept, tmp_path / "kept.db", retain_days=8)
    ingest_dir(everything, tmp_path / "all.db", retain_days=0)
    db = open_db(tmp_path / "kept.db")
    newest = int(get_meta(db, "max_poll_ts"))
    retained_from = int(get_meta(db, "retained_from"))
    old_rows = db.execute("SELECT COUNT(*), MAX(polls) FROM poll_days WHERE day < ?",
                          [retained_from // 86_400_000_000]).fetchone()
    db.close()
    assert retained_from == (newest - 8 * 86_400_000_000) // 86_400_000_000 * 86_400_000_000
    assert old_rows == (3, 1)  # one poll kept per store, its last before the cut
    earliest = retained_from + 7 * 86_400_000_000
    for as_of in (earliest, earliest + 3_600_000_000, newest):
        for interpolation in ("previous", "nearest"):
            text = datetime.fromtimestamp(as_of / 1e6, UTC).isoformat()
            assert report_csv(tmp_path / "kept.db", text, interpolation) == \
                report_csv(tmp_path / "all.db", text, interpolation)
    db = open_db(tmp_path / "kept.db")
    with pytest.raises(BeforeRetainedData, match="earliest as_of"):
        report_from_db(db, earliest - 1)
    db.close()


def test_report_before_the_retained_data_is_one_line_from_the_cli(tmp_path):
    data = write_data(tmp_path / "data", polls=week_of_polls(days=10))
    db = tmp_path / "s.db"
    run = [sys.executable, "-m", "storemon"]
    refused = subprocess.run([*run, "ingest", "--data-dir", str(data), "--db", str(db), "--retain-days", "3"],
                             capture_output=True, text=True)
    assert refused.returncode == 1 and "at least 8" in refused.stderr and refused.stderr.count("\n") == 1
    subprocess.run([*run, "ingest", "--data-dir", str(data), "--db", str(db), "--retain-days", "8"], check=True,
                   capture_output=True)
    done = subprocess.run([*run, "report", "--db", str(db), "--as-of", "2023-01-21T00:00:00Z"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "earliest as_of this database can answer is 2023-01-" in done.stderr


def v1_database(path, rows):
    """A database as storemon's schema version 1 wrote it: one poll_series row per store."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE stores (id INTEGER PRIMARY KEY, store_id TEXT NOT NULL UNIQUE);
        CREATE TABLE poll_series (store INTEGER PRIMARY KEY, polls INTEGER NOT NULL, first_ts INTEGER NOT NULL,
            last_ts INTEGER NOT NULL, last_active INTEGER NOT NULL, ts BLOB NOT NULL, active BLOB NOT NULL);
        CREATE TABLE business_hours (store INTEGER NOT NULL, day INTEGER NOT NULL, start_us INTEGER NOT NULL,
            end_us INTEGER NOT NULL);
        CREATE TABLE zones (store INTEGER PRIMARY KEY, timezone_str TEXT NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value);
        INSERT INTO meta VALUES ('data_version', 1);
    """)
    by_store: dict[str, list] = {}
    for store, when, status in rows:
        by_store.setdefault(store, []).append((parse_instant(when), status == "active"))
    for key, (store, series) in enumerate(sorted(by_store.items()), start=1):
        series = sorted(dict(series).items())
        ts = np.array([t for t, _ in series], dtype="<i8")
        active = np.array([a for _, a in series], dtype=np.uint8)
        conn.execute("INSERT INTO stores VALUES (?, ?)", [key, store])
        conn.execute("INSERT INTO poll_series VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [key, len(ts), int(ts[0]), int(ts[-1]), int(active[-1]), ts.tobytes(), active.tobytes()])
    conn.execute("INSERT INTO meta VALUES ('max_poll_ts', ?)",
                 [max(parse_instant(when) for _, when, _ in rows)])
    conn.commit()
    conn.close()


def test_a_version_1_database_is_upgraded_on_open(tmp_path):
    rows = week_of_polls(days=9)
    v1_database(tmp_path / "old.db", rows)
    write_data(tmp_path / "data", polls=rows)
    ingest_dir(tmp_path / "data", tmp_path / "new.db", retain_days=0)
    db = open_db(tmp_path / "old.db")
    assert get_meta(db, "schema_version") == SCHEMA_VERSION
    assert "poll_series" not in db.table_names()
    assert get_meta(db, "poll_count") == len(rows)
    db.close()
    for interpolation in ("previous", "nearest"):
        assert report_csv(tmp_path / "old.db", None, interpolation) == \
            report_csv(tmp_path / "new.db", None, interpolation)


def test_a_version_2_database_gets_the_alerts_table_of_version_3(tmp_path):
    db = open_db(tmp_path / "v2.db")
    db.execute("DROP TABLE alerts")
    db.execute("CREATE TABLE alerts (store INTEGER NOT NULL, start INTEGER NOT NULL, kind TEXT NOT NULL, "
               "sent TEXT NOT NULL, PRIMARY KEY (store, start, kind))")
    db.execute("DROP INDEX incidents_ongoing")
    db.execute("UPDATE meta SET value = 2 WHERE key = 'schema_version'")
    db.close()
    db = open_db(tmp_path / "v2.db")
    assert get_meta(db, "schema_version") == SCHEMA_VERSION
    assert set(db["alerts"].columns_dict) == {"store", "start", "target", "sent"}
    assert "incidents_ongoing" in [index.name for index in db["incidents"].indexes]
    db.close()


def test_a_version_3_database_gets_each_stores_state_worked_out(tmp_path):
    write_data(tmp_path / "data", polls=[("a", "2023-01-25 11:00:00 UTC", "inactive"),
                                         ("b", "2023-01-25 12:00:00 UTC", "active")],
               hours=[("a", 2, "05:00:00", "07:00:00"), ("b", 2, "13:00:00", "14:00:00")])
    ingest_dir(tmp_path / "data", tmp_path / "v3.db")
    db = open_db(tmp_path / "v3.db")
    db.execute("DROP TABLE store_state")
    db.execute("UPDATE meta SET value = 3 WHERE key = 'schema_version'")
    db.close()
    db = open_db(tmp_path / "v3.db")
    assert get_meta(db, "schema_version") == SCHEMA_VERSION == 4
    # The newest poll, Wed 12:00 UTC, is 06:00 in Chicago (no zone given): a (05:00-07:00) is open, b is not.
    rows = db.execute("SELECT s.store_id, t.last_poll_us, t.last_active, t.open_now FROM store_state t "
                      "JOIN stores s ON s.id = t.store ORDER BY s.store_id").fetchall()
    db.close()
    assert rows == [("a", parse_instant("2023-01-25 11:00:00 UTC"), 0, 1),
                    ("b", parse_instant("2023-01-25 12:00:00 UTC"), 1, 0)]


def test_a_database_from_a_newer_storemon_is_refused_in_one_line(tmp_path):
    db = open_db(tmp_path / "s.db")
    db.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(SchemaError, match="schema version 99"):
        open_db(tmp_path / "s.db")
    done = subprocess.run([sys.executable, "-m", "storemon", "report", "--db", str(tmp_path / "s.db")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "new database file" in done.stderr


def test_the_api_refuses_an_as_of_before_the_retained_data_naming_the_earliest(tmp_path):
    from webtest import TestApp

    from storemon.service import Service, ServiceConfig

    data = write_data(tmp_path / "data", polls=week_of_polls(days=10))
    service = Service(ServiceConfig(data, tmp_path / "s.db", port=0, workers=1, retain_days=8))
    service.start()
    try:
        assert service.refresher.first_done.wait(HANG_GUARD_S)
        app = TestApp(service.app)
        refused = app.get("/trigger_report", {"as_of": "2023-01-25T00:00:00Z"}, status=400).json
        assert refused["status"] == "error" and refused["error"].startswith("as_of: as_of 2023-01-25")
        # newest poll 2023-01-29 23:14, minus 8 days: pruned before 2023-01-21, a week later is the earliest
        assert "earliest as_of this database can answer is 2023-01-28T00:00:00" in refused["error"]
        assert app.get("/trigger_report", {"as_of": "2023-01-28T00:00:00Z"}).json["status"] == "success"
    finally:
        service.stop()
