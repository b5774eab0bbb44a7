"""The `storemon` command as a user runs it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

from conftest import write_data


def storemon(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "storemon", *args], capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(result, *words):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("storemon: error:"), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[-1]


def test_generate_ingest_report_round_trip(tmp_path):
    data, db = tmp_path / "data", tmp_path / "s.db"
    assert storemon("generate", "--out", str(data), "--stores", "30", "--days", "3", "--seed", "4").returncode == 0
    ingested = storemon("ingest", "--data-dir", str(data), "--db", str(db))
    assert ingested.returncode == 0, ingested.stderr
    assert "ingest: store_status.csv ..." in ingested.stdout  # progress, as plain lines (not a terminal)
    assert re.search(r"^store_status.csv: [\d,]+ rows read, [\d,]+ loaded, \d+ skipped$", ingested.stdout, re.M)
    printed = storemon("report", "--db", str(db))
    assert printed.returncode == 0
    lines = printed.stdout.splitlines()
    assert lines[0] == ("store_id,uptime_last_hour,uptime_last_day,uptime_last_week,"
                        "downtime_last_hour,downtime_last_day,downtime_last_week")
    assert len(lines) == 31
    ids = [line.split(",")[0] for line in lines[1:]]
    assert ids == sorted(ids)
    out = tmp_path / "r.csv"
    assert storemon("report", "--db", str(db), "-o", str(out)).returncode == 0
    assert out.read_text() == printed.stdout

    lines_before = len((data / "store_status.csv").read_text().splitlines())
    with (data / "store_status.csv").open("a") as handle:
        handle.write("late-store,active,not a time\n")
    assert storemon("ingest", "--data-dir", str(data), "--db", str(db)).returncode == 0
    log = storemon("ingest", "--db", str(db), "--history", "2").stdout.splitlines()
    assert re.fullmatch(r"#2 \S+ -> \S+: ok, data version 2", log[0]), log
    assert log[1] == "  store_status.csv: 1 rows read (the lines added since the last ingest), 0 loaded, 1 skipped"
    assert log[2].startswith(f"    line {lines_before + 1}: ") and "not a time" in log[2]
    assert re.fullmatch(r"#1 \S+ -> \S+: ok, data version 1", log[3]), log
    assert [line[:2] for line in log if line.startswith("#")] == ["#2", "#1"]


def test_generated_data_has_loop_shapes(tmp_path):
    data = tmp_path / "data"
    storemon("generate", "--out", str(data), "--stores", "60", "--days", "2")
    polls = (data / "store_status.csv").read_text().splitlines()
    ids = {line.split(",")[0] for line in polls[1:]}
    assert any(i.isdigit() and len(i) == 19 for i in ids) and any(len(i) == 36 for i in ids)
    hours_ids = {line.split(",")[0] for line in (data / "menu_hours.csv").read_text().splitlines()[1:]}
    zone_ids = {line.split(",")[0] for line in (data / "timezones.csv").read_text().splitlines()[1:]}
    assert ids - hours_ids, "some stores are 24x7 (no hours rows)"
    assert ids - zone_ids, "some stores have no zone row"
    assert "inactive" in (data / "store_status.csv").read_text()


def test_as_of_and_interpolation_options(tmp_path):
    data, db = tmp_path / "data", tmp_path / "s.db"
    write_data(data, polls=[("S", "2023-01-23 15:14:00", "active"), ("S", "2023-01-23 16:15:00", "inactive")],
               hours=[("S", 0, "09:00", "12:00")], zones=[("S", "America/New_York")])
    storemon("ingest", "--data-dir", str(data), "--db", str(db))
    result = storemon("report", "--db", str(db), "--as-of", "2023-01-23 17:30:00 UTC", "--interpolation", "nearest")
    assert result.stdout.splitlines()[1] == "S,0.00,1.74,1.74,30.00,1.26,1.26"


def test_bad_as_of_is_one_line(tmp_path):
    data, db = tmp_path / "data", tmp_path / "s.db"
    write_data(data, polls=[("S", "2023-01-23 15:14:00", "active")])
    storemon("ingest", "--data-dir", str(data), "--db", str(db))
    assert_one_line_error(storemon("report", "--db", str(db), "--as-of", "yesterday"), "--as-of", "yesterday")


def test_missing_database_is_one_line(tmp_path):
    assert_one_line_error(storemon("report", "--db", str(tmp_path / "none.db")), "database not found")


def test_missing_data_dir_is_one_line(tmp_path):
    assert_one_line_error(storemon("ingest", "--data-dir", str(tmp_path / "nope"), "--db", str(tmp_path / "d.db")),
                          "data directory")


def test_missing_file_fails_ingest_and_keeps_database(tmp_path):
    data, db = tmp_path / "data", tmp_path / "s.db"
    write_data(data, polls=[("S", "2023-01-23 15:14:00", "active")])
    storemon("ingest", "--data-dir", str(data), "--db", str(db))
    before = storemon("report", "--db", str(db)).stdout
    (data / "menu_hours.csv").unlink()
    with (data / "store_status.csv").open("a") as handle:
        handle.write("S,2023-01-23 16:00:00,inactive\n")
    result = storemon("ingest", "--data-dir", str(data), "--db", str(db))
    assert_one_line_error(result, "menu_hours.csv", "unchanged")
    assert storemon("report", "--db", str(db)).stdout == before


def test_unwritable_output_is_one_line(tmp_path):
    data, db = tmp_path / "data", tmp_path / "s.db"
    write_data(data, polls=[("S", "2023-01-23 15:14:00", "active")])
    storemon("ingest", "--data-dir", str(data), "--db", str(db))
    assert_one_line_error(storemon("report", "--db", str(db), "-o", str(tmp_path / "no" / "dir" / "r.csv")),
                          "cannot write")


def test_serve_with_an_unusable_database_is_one_line(tmp_path):
    data = tmp_path / "data"
    write_data(data, polls=[("S", "2023-01-23 15:14:00", "active")])
    (tmp_path / "bad.db").write_text("not a database")
    for db in (tmp_path / "missing-dir" / "s.db", tmp_path / "bad.db"):
        result = storemon("serve", "--data-dir", str(data), "--db", str(db), "--port", "0",
                          "--log-file", str(tmp_path / "s.log"))
        assert_one_line_error(result, "cannot open database")


def test_serve_with_an_unwritable_log_file_is_one_line(tmp_path):
    data = tmp_path / "data"
    write_data(data, polls=[("S", "2023-01-23 15:14:00", "active")])
    (tmp_path / "file").write_text("")
    result = storemon("serve", "--data-dir", str(data), "--db", str(tmp_path / "s.db"), "--port", "0",
                      "--log-file", str(tmp_path / "file" / "s.log"))
    assert_one_line_error(result, "cannot write the log file")


def test_serve_with_a_bad_port_or_host_is_one_line(tmp_path):
    data = tmp_path / "data"
    write_data(data, polls=[("S", "2023-01-23 15:14:00", "active")])
    common = ["serve", "--data-dir", str(data), "--db", str(tmp_path / "s.db"), "--log-file", str(tmp_path / "s.log")]
    assert_one_line_error(storemon(*common, "--port", "70000"), "--port")
    assert_one_line_error(storemon(*common, "--host", "999.1.1.1", "--port", "0"), "cannot listen on 999.1.1.1")


def test_ingest_in_a_terminal_shows_progress_bars(tmp_path):
    data = tmp_path / "data"
    assert storemon("generate", "--out", str(data), "--stores", "30", "--days", "3").returncode == 0
    primary, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "storemon", "ingest", "--data-dir", str(data), "--db",
                                str(tmp_path / "s.db")], stdout=subprocess.DEVNULL, stderr=secondary)
    os.close(secondary)
    shown = b""
    while True:
        try:
            piece = os.read(primary, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not piece:
            break
        shown += piece
    assert process.wait(timeout=300) == 0
    text = shown.decode("utf-8", "replace")
    assert "ingest: store_status.csv" in text and "100%" in text


def test_cli_edges_a_user_meets(tmp_path):
    assert "--history must be at least 1" in storemon("ingest", "--db", str(tmp_path / "x.db"),
                                                      "--history", "0").stderr
    data = write_data(tmp_path / "data", polls=[("S", "2023-01-23 10:00:00", "active")])
    (data / "timezones.csv").unlink()
    failed = storemon("ingest", "--data-dir", str(data), "--db", str(tmp_path / "new.db"))
    assert failed.returncode == 1 and "no database was created" in failed.stderr
    assert not (tmp_path / "new.db").exists()
    empty = tmp_path / "empty.db"
    write_data(tmp_path / "none")
    assert storemon("ingest", "--data-dir", str(tmp_path / "none"), "--db", str(empty)).returncode == 0
    report = storemon("report", "--db", str(empty))
    assert report.returncode == 1 and "has no polls yet" in report.stderr and report.stdout == ""
    assert "(default: 200)" in storemon("generate", "--help").stdout


def test_an_internal_error_is_one_line_too(tmp_path, monkeypatch, capsys):
    # A bug of storemon's own (the engine raising, standing in for one) still ends in one line and a non-zero exit.
    from storemon import cli, compute

    data = write_data(tmp_path / "data", polls=[("S", "2023-01-23 10:00:00 UTC", "active")])
    assert cli.main(["ingest", "--data-dir", str(data), "--db", str(tmp_path / "s.db")]) == 0
    capsys.readouterr()

    def broken(*args, **kwargs):
        raise IndexError("index 0 is out of bounds for axis 0 with size 0")

    monkeypatch.setattr(compute, "report_from_db", broken)
    assert cli.main(["report", "--db", str(tmp_path / "s.db")]) == 1
    err = capsys.readouterr().err
    assert err == ("storemon: error: internal error (IndexError: index 0 is out of bounds for axis 0 with size 0); "
                   "please report it\n")
