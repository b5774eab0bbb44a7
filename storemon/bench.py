"""The benchmark: a Loop-sized data set (14,000 stores, 8 days, ~2.6M polls), then ingest and report timings.

Each step runs as its own `storemon` process, so wall time includes start-up and imports, and peak memory is
that process's maximum resident set size.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from storemon.generate import generate

BASE_STORES = 14_000
CLUSTER_CLOSE_S = 120
PRESS_WAIT_S = 5.0  # a key press not repainted by then counts as this long
MAX_PRESSES = 2_000  # the console's keys go on until a report has completed, up to this many
PRESSES_AFTER_REPORT = 40  # and this many more, while the console reloads the report's figures
FILL_WAIT_S = 600.0  # the console's start is measured up to this long


@dataclass
class Measure:
    step: str
    seconds: float
    peak_mb: float
    target: str


# Runs `storemon ARGS` and, at exit, writes that process's own peak resident memory (VmHWM, kB) to a file.
_MEASURED_MAIN = """
import atexit, sys
peak_file = sys.argv.pop(1)

def write_peak():
    status = open("/proc/self/status").read().splitlines()
    open(peak_file, "w").write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))

atexit.register(write_peak)
from storemon.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def run_step(args: list[str], work: Path) -> tuple[float, float]:
    """Run `storemon ARGS` as a process; returns (wall seconds, its own peak RSS in MB)."""
    peak_file = work / "peak.txt"
    peak_file.unlink(missing_ok=True)
    start = time.perf_counter()
    completed = subprocess.run([sys.executable, "-c", _MEASURED_MAIN, str(peak_file), *args],
                               stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"storemon {' '.join(args)} failed")
    return seconds, int(peak_file.read_text()) / 1024


def append_hour(path: Path, seed: int) -> int:
    """Append one more hour of polls (one per store) to a poll file; returns the rows added."""
    polls = pd.read_csv(path, usecols=["store_id", "timestamp_utc"], dtype=str)
    last = pd.to_datetime(polls["timestamp_utc"].str.removesuffix(" UTC"), format="ISO8601").max()
    stores = polls["store_id"].unique()
    rng = np.random.default_rng(seed)
    stamps = last + pd.to_timedelta(rng.integers(1, 3_600_000_000, size=len(stores)), unit="us")
    extra = pd.DataFrame({
        "store_id": stores,
        "status": np.where(rng.random(len(stores)) < 0.05, "inactive", "active"),
        "timestamp_utc": stamps.strftime("%Y-%m-%d %H:%M:%S.%f") + " UTC",
    })
    extra.to_csv(path, mode="a", header=False, index=False)
    return len(extra)


def bench(work: Path, stores: int = BASE_STORES, days: int = 8, label: str = "1x, 1 week",
          full: bool = True) -> list[Measure]:
    """Generate (once) and measure ingest, re-ingest, +1 h and reports for one fleet and history; with `full`,
    the service's refresh, the API latency and the console as well."""
    source = work / f"data-{stores}x{days}"
    if not (source / "timezones.csv").exists():
        print(f"generating {stores} stores x {days} days into {source} ...", flush=True)
        counts = generate(source, stores=stores, days=days, seed=7)
        print(f"  {counts}", flush=True)
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(source, data)
    db = work / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    polls_file = data / "store_status.csv"
    rows = sum(1 for _ in polls_file.open("rb")) - 1
    print(f"[{label}] {stores} stores, {days} days: {rows} polls, {polls_file.stat().st_size / 1e6:.0f} MB",
          flush=True)
    common = ["--data-dir", str(data), "--db", str(db), "--retain-days", "0"]
    measures: list[Measure] = []

    def measured(*new: Measure) -> None:
        for measure in new:  # as each step ends, so that a long bench shows its progress
            print(f"  {measure.step}: {measure.seconds:.2f} s", flush=True)
        measures.extend(new)

    measured(Measure(f"[{label}] full ingest ({rows} polls)", *run_step(["ingest", *common], work), ""))
    measured(Measure(f"[{label}] re-ingest, unchanged", *run_step(["ingest", *common], work), ""))
    added = append_hour(polls_file, seed=8)
    measured(Measure(f"[{label}] ingest of one more hour ({added} rows)", *run_step(["ingest", *common], work), ""))
    for interpolation in ("previous", "nearest"):
        report = ["report", "--db", str(db), "--interpolation", interpolation, "-o", str(work / "r.csv")]
        measured(Measure(f"[{label}] report ({interpolation})", *run_step(report, work), ""))
    measured(*refresh_times(data, db, label))
    if full:
        measured(api_latency(data, db, work))
    if full or stores > BASE_STORES:
        measured(*console_in_own_process(data, db, presses=150, label=label))
    return measures


def refresh_times(data: Path, db_path: Path, label: str) -> list[Measure]:
    """In-process refreshes (what the service's scheduler runs): nothing changed, then one more hour of polls."""
    from storemon.db import open_db
    from storemon.ingest import ingest

    db = open_db(db_path)
    try:
        start = time.perf_counter()
        assert not ingest(db, data, retain_days=0).changed
        unchanged = time.perf_counter() - start
        added = append_hour(data / "store_status.csv", seed=9)
        start = time.perf_counter()
        assert ingest(db, data, retain_days=0).changed
        one_hour = time.perf_counter() - start
    finally:
        db.close()
    return [Measure(f"[{label}] refresh in the service, nothing changed", unchanged, 0.0, ""),
            Measure(f"[{label}] refresh in the service, one more hour ({added} rows)", one_hour, 0.0, "")]


def api_latency(data: Path, db: Path, work: Path, clients: int = 40, seconds: float = 20.0,
                reports: int = 200, pause: float = 0.1) -> Measure:
    """p50/p99 of /get_report while Loop-sized reports run back to back.

    `clients` threads (in this process, the server in its own) each poll /get_report, pausing `pause` seconds
    between a response and the next request.
    """
    import json
    import socket
    import threading
    import urllib.error
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "storemon", "serve", "--data-dir", str(data), "--db", str(db), "--port", str(port),
         "--workers", "1", "--log-file", str(work / "serve.log"), "--trigger-limit", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def get(path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None,
                                         method="GET", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if get("/health")[1].get("last_refresh"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("storemon serve did not start")
            time.sleep(0.2)
        def completed() -> int:
            return sum(1 for r in get("/reports", {"limit": 1000})[1]["reports"] if r["status"] == "Complete")

        completed_before = completed()
        for _ in range(reports):
            get("/trigger_report")
        probe_id = get("/trigger_report")[1]["report_id"]
        latencies: list[float] = []
        errors: list[int] = []
        stop = threading.Event()

        def client(index: int) -> None:
            while not stop.is_set():
                start = time.perf_counter()
                status, _ = get("/get_report", {"report_id": probe_id})
                latencies.append(time.perf_counter() - start)
                if status >= 500:
                    errors.append(status)
                stop.wait(pause)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
        done = completed() - completed_before
    finally:
        server.terminate()
        server.wait(30)
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    return Measure(
        f"/get_report, {clients} clients polling every {pause * 1000:.0f} ms ({len(latencies)} requests, "
        f"{done} reports completed meanwhile, {len(errors)} 5xx)",
        float(p99) / 1000, 0.0, f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (aim p99 < 100 ms)",
    )


def main(work: str = "bench-data", scale: int = 1, weeks: int = 1, dask_data: str | None = None) -> None:
    """Measure the 1x fleet with one week (and the API and console), then a `scale`x fleet and `weeks` weeks of
    history if asked, and print one table with the growth against the 1x figures. With `dask_data`, measure only
    the embedded and Dask engines on that data directory."""
    from storemon.logs import log_to_file

    Path(work).mkdir(parents=True, exist_ok=True)
    log_to_file(Path(work) / "bench.log")
    if dask_data is not None:
        _print_table(dask_engines(Path(dask_data), Path(work)))
        return
    sample = Path(work) / "sample.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{sample}{suffix}").unlink(missing_ok=True)
    measures = console_in_own_process(Path("data"), sample, presses=0) if Path("data").is_dir() else []
    base = bench(Path(work))
    measures += base
    if scale > 1:
        measures += growth(base, bench(Path(work), BASE_STORES * scale, 8, f"{scale}x, 1 week", full=False))
    if weeks > 1:
        measures += growth(base, bench(Path(work), BASE_STORES, 7 * weeks + 1, f"1x, {weeks} weeks", full=False))
    _print_table(measures)


def _print_table(measures: list[Measure]) -> None:
    print(f"{'step':78} {'wall s':>8} {'peak MB':>8}  note")
    for m in measures:
        peak = f"{m.peak_mb:8.0f}" if m.peak_mb else f"{'-':>8}"
        print(f"{m.step:78} {m.seconds:8.3f} {peak}  {m.target}")


def dask_engines(data: Path, work: Path, workers: tuple[int, ...] = (1, 2)) -> list[Measure]:
    """The report over `data` by the embedded engine (ingest, then report, each its own process) and on a
    LocalCluster of 1 and 2 worker processes of one thread each (`storemon report --dask` as its own process; peak
    memory is the client's, the workers' is in the note), each checked equal to the embedded report. The same on
    the 200-store sample in `data/` shows the cluster's fixed cost, which does not grow with the data."""
    from distributed import Client, LocalCluster

    measures: list[Measure] = []
    for label, source in (("sample", Path("data")), (data.name, data)):
        if not (source / "timezones.csv").exists():
            continue
        db = work / f"dask-{label}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        embedded, clustered = work / "embedded.csv", work / "dask.csv"
        ingest_s, ingest_mb = run_step(["ingest", "--data-dir", str(source), "--db", str(db), "--retain-days", "0"],
                                       work)
        report_s, report_mb = run_step(["report", "--db", str(db), "-o", str(embedded)], work)
        measures.append(Measure(f"[{label}] embedded: ingest + report", ingest_s + report_s,
                                max(ingest_mb, report_mb), f"ingest {ingest_s:.1f} s, report {report_s:.1f} s"))
        print(f"  {measures[-1].step}: {measures[-1].seconds:.1f} s", flush=True)
        for count in workers:
            cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
            try:
                seconds, peak = run_step(["report", "--dask", cluster.scheduler_address, "--data-dir",
                                          str(source.resolve()), "-o", str(clustered)], work)
                worker_mb = [kb / 1024 for kb in client.run(_peak_kb).values()]
            finally:
                client.close()
                cluster.close(timeout=CLUSTER_CLOSE_S)
            same = clustered.read_text() == embedded.read_text()
            measures.append(Measure(f"[{label}] dask, {count} worker{'s' if count > 1 else ''}", seconds, peak,
                                    f"workers' peak {', '.join(f'{mb:.0f}' for mb in worker_mb)} MB; "
                                    f"{'equal to' if same else 'DIFFERS from'} the embedded report"))
            print(f"  {measures[-1].step}: {seconds:.1f} s", flush=True)
    return measures


def _peak_kb() -> int:
    """This process's peak resident memory (VmHWM), in kB."""
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("VmHWM:")))


def growth(base: list[Measure], other: list[Measure]) -> list[Measure]:
    """`other`'s measures, each noting its ratio to the same step of `base` (wall time, peak memory)."""
    before_by_step = {_step_kind(m.step): m for m in base}
    out = []
    for after in other:
        before = before_by_step.get(_step_kind(after.step))
        if before is None:
            out.append(after)
            continue
        ratio = f"x{after.seconds / before.seconds:.2f} time" if before.seconds else ""
        if before.peak_mb and after.peak_mb:
            ratio += f", x{after.peak_mb / before.peak_mb:.2f} memory"
        out.append(Measure(after.step, after.seconds, after.peak_mb, f"{after.target} vs 1x 1 week: {ratio}".strip()))
    return out


def _step_kind(step: str) -> str:
    """A step without its label and counts: the same step at two sizes has the same kind."""
    return re.sub(r"^\[.*?\] |\(.*?\)|\d+", "", step)


# Runs console_latency in a fresh process and prints its measures as JSON.
_CONSOLE_MAIN = """
import json, sys
from dataclasses import asdict
from pathlib import Path
from storemon.bench import console_latency
data, db, presses, label = sys.argv[1:]
print(json.dumps([asdict(m) for m in console_latency(Path(data), Path(db), int(presses), label)]))
"""


def console_in_own_process(data: Path, db: Path, presses: int = 60, label: str = "sample") -> list[Measure]:
    """`console_latency` in a process of its own, as an operator runs the console: the benchmark's own memory
    and garbage (the in-process refreshes before it) do not weigh on the console's collector."""
    import json

    completed = subprocess.run([sys.executable, "-c", _CONSOLE_MAIN, str(data), str(db), str(presses), label],
                               stdout=subprocess.PIPE, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"the console's benchmark on {db} failed")
    return [Measure(**fields) for fields in json.loads(completed.stdout.strip().splitlines()[-1])]


def console_latency(data: Path, db: Path, presses: int = 60, label: str = "sample") -> list[Measure]:
    """The console on a database, headless: the time until the stores table is full, then key-press-to-repaint.

    Latency is measured from posting a cursor key event to the app producing the first screen update that shows
    the moved cursor (the compositor's frame, which a terminal driver would write). Keys are pressed every 50 ms
    while reports are computed back to back (three are triggered, after any already queued), each followed by
    the console's reload of the stores. Keys go on after `presses` until at least one report has completed, then
    `PRESSES_AFTER_REPORT` more while the console reloads its figures (`MAX_PRESSES` at most).
    """
    import asyncio

    from textual import events

    from storemon.console.app import StoremonApp
    from storemon.console.stores_table import StoresTable
    from storemon.service import Service, ServiceConfig

    class FrameTimedApp(StoremonApp):
        """The console, noting when it produces each frame and which stores row the cursor is on in it."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.frames: list[tuple[float, int]] = []
            self.timed_table: StoresTable | None = None

        def _display(self, screen, renderable) -> None:
            if renderable is not None and self.timed_table is not None:
                self.frames.append((time.perf_counter(), self.timed_table.cursor_row))
            super()._display(screen, renderable)

    async def scenario() -> tuple[float, int, list[float], int, int]:
        start = time.perf_counter()
        service = Service(ServiceConfig(data, db, port=0))
        app = FrameTimedApp(service, export_dir=db.parent / "exports")
        async with app.run_test(size=(180, 50)) as pilot:
            table = app.timed_table = app.query_one(StoresTable)
            frames = app.frames
            while time.perf_counter() - start < FILL_WAIT_S:
                await asyncio.sleep(0.01)
                if table.row_count:
                    break
            filled = time.perf_counter() - start
            await pilot.pause(1.0)  # let the table finish measuring its new rows
            latencies: list[float] = []

            def completed() -> int:
                return sum(1 for r in service.recent_reports(1000) if r["status"] == "Complete")

            completed_before = completed()
            for _ in range(3):
                service.trigger_report()
            missed = 0
            press, until, waited = 0, presses, False
            while press < until:
                key = "down" if (press // 10) % 2 == 0 else "up"
                if table.cursor_row <= 0:
                    key = "down"
                elif table.cursor_row >= table.row_count - 1:
                    key = "up"
                target = table.cursor_row + (1 if key == "down" else -1)
                seen = len(frames)
                sent = time.perf_counter()
                app.post_message(events.Key(key, None))
                shown = None
                while shown is None and time.perf_counter() - sent < PRESS_WAIT_S:
                    await asyncio.sleep(0.001)
                    shown = next((t for t, row in frames[seen:] if row == target), None)
                latencies.append(PRESS_WAIT_S if shown is None else shown - sent)
                missed += shown is None
                press += 1
                if press == until and until < MAX_PRESSES:
                    if completed() == completed_before:  # no report has completed yet: one more key
                        until, waited = until + 1, True
                    elif waited:  # one just did: keys while the console reloads its figures
                        until, waited = until + PRESSES_AFTER_REPORT, False
                await asyncio.sleep(0.05)
            reports = completed() - completed_before
            await pilot.pause()
            return filled, table.row_count, latencies, missed, reports

    filled, rows, latencies, missed, reports = asyncio.run(scenario())
    target = "<= 2 s on the sample data" if label == "sample" else "usable within 5 s"
    late = f", not shown within {FILL_WAIT_S:.0f} s" if filled >= FILL_WAIT_S else ""
    fill = Measure(f"[{label}] console: start to stores table shown ({rows} stores{late})", filled, 0.0, target)
    if not latencies:
        return [fill]
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    unanswered = f", {missed} not repainted within {PRESS_WAIT_S:.0f} s (counted as that)" if missed else ""
    return [
        fill,
        Measure(f"[{label}] console: key press to repaint, {len(latencies)} presses while {reports} reports completed"
                f"{unanswered}",
                float(p99) / 1000, 0.0, f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (aim < 100 ms)"),
    ]
