"""The report on a Dask cluster: a data directory's source files read by the workers, reduced to what the report's
windows need, shuffled by store and computed by the embedded engine, one partition of stores at a time.

The directory may be local or any fsspec URL the workers can reach (`s3://bucket/loop/`, `gs://...`, NFS). The rows
are checked by the rules `storemon ingest` applies (the same block parser and row parsers), duplicates resolved the
same way (the later file, then the later line, wins), so the report equals the embedded one on the same files.

Two stages, as tasks on the cluster:
1. Each piece (a block of a poll CSV, one Parquet poll file, the whole hours or zone file) is parsed and reduced:
   for each store, its polls in the week before the piece's newest poll and its last poll before that week. A week
   ending at any later `as_of` needs nothing else from the piece, so the reduction is exact.
2. The reduced rows, hours and zones are shuffled by a hash of the store id into partitions (`dask.dataframe`), and
   each partition is one engine run; the client gathers the partitions' rows and sorts them by store id.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from storemon import ingest, polls, sources
from storemon.compute import combine
from storemon.db import now_iso
from storemon.engine import INTERPOLATIONS, Report, ReportCancelled, compute_report
from storemon.parse import parse_instant
from storemon.snapshot import WEEK_US, Snapshot
from storemon.sources import HOURS, POLLS, ZONES

MISSING_EXTRA = "the Dask engine needs the dask extra: pip install 'storemon[dask]'"
CONNECT_TIMEOUT_S = 10
NO_WORKERS_TIMEOUT_S = 60.0
POLL_S = 0.2
WORKER_CHECK_S = 5.0
BLOCK_BYTES = 64 * 1024 * 1024
MIN_BLOCK_BYTES = 1024 * 1024
PARQUET_POLLS = "polls"
PARQUET_HOURS = "menu_hours.parquet"
PARQUET_ZONES = "timezones.parquet"
READ_SHARE = 0.6  # of the progress: the pieces read; the rest is the partitions computed
_KIND_CODE = {POLLS: 0, HOURS: 1, ZONES: 2}
_ROW_BITS = 32  # a row's rank is (piece index << _ROW_BITS) + its row in the piece


class ClusterError(Exception):
    """The cluster cannot be used or the report could not be computed on it; the message says why."""


def connect(address: str):
    """A `distributed.Client` of the scheduler at `address`; ClusterError when the extra is missing or the
    scheduler cannot be reached."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError(MISSING_EXTRA) from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


@dataclass(frozen=True)
class Piece:
    """One task's share of a source file: a block of CSV lines from `start` (`length` bytes, to whole lines), or a
    whole file (`length` None). `index` orders pieces as ingest reads them: of two rows for one store and instant,
    the one in the later piece wins."""

    url: str
    name: str
    kind: str
    index: int
    header: str = ""
    start: int = 0
    length: int | None = None
    last: bool = True
    parquet: bool = False


@dataclass
class FileCount:
    """What was read of one source file: rows, bad rows skipped, and the reason it was not used, if any."""

    name: str
    kind: str
    rows_read: int = 0
    rows_skipped: int = 0
    newest_poll: int | None = None
    error: str | None = None

    def add(self, other: FileCount) -> None:
        self.rows_read += other.rows_read
        self.rows_skipped += other.rows_skipped
        if other.newest_poll is not None:
            self.newest_poll = max(other.newest_poll, self.newest_poll or other.newest_poll)
        self.error = self.error or other.error


@dataclass
class ClusterReport:
    """A report computed on the cluster, with what was read of each file and the partitions it used."""

    report: Report
    files: list[FileCount] = field(default_factory=list)
    partitions: int = 0

    @property
    def errors(self) -> list[str]:
        return [f.error for f in self.files if f.error]


def plan_pieces(data_dir: str, block_bytes: int = BLOCK_BYTES, spread: int = 1
                ) -> tuple[list[Piece], list[FileCount]]:
    """The pieces to read from a data directory (a path or an fsspec URL), and the files that cannot be used.

    A poll CSV is cut into blocks of `block_bytes`, or smaller (down to 1 MiB) so that it gives at least `spread`
    pieces, one for each worker thread.

    Polls: the Parquet files under `polls/` (in path order), then `store_status.csv` and the other
    `store_status*.csv` in name order. Hours and zones: `menu_hours.csv` and `timezones.csv`, or their `.parquet`
    counterparts where the CSV is absent.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(data_dir)
    root = root.rstrip("/")
    if not fs.isdir(root):
        raise ClusterError(f"data directory not found: {data_dir}")
    pieces: list[Piece] = []
    failed: list[FileCount] = []

    def add(path: str, kind: str, **options) -> None:
        pieces.append(Piece(fs.unstrip_protocol(path), path.rsplit("/", 1)[-1], kind, len(pieces), **options))

    parquet_polls = sorted(p for p in fs.find(f"{root}/{PARQUET_POLLS}") if p.endswith(".parquet")) \
        if fs.isdir(f"{root}/{PARQUET_POLLS}") else []
    for path in parquet_polls:
        add(path, POLLS, parquet=True)
    main = f"{root}/{sources.POLLS_FILE}"
    drops = sorted(p for p in fs.glob(f"{root}/store_status*.csv") if p != main and fs.isfile(p))
    poll_csvs = ([main] if fs.isfile(main) else []) + drops
    if not fs.isfile(main) and not parquet_polls:
        failed.append(FileCount(sources.POLLS_FILE, POLLS, error=f"{sources.POLLS_FILE}: file is missing"))
    for path in poll_csvs:
        header, error = _csv_header(fs, path, POLLS)
        if error:
            failed.append(FileCount(path.rsplit("/", 1)[-1], POLLS, error=error))
            continue
        size = fs.size(path)
        block = min(block_bytes, max(MIN_BLOCK_BYTES, -(-size // spread)))
        for start in range(0, max(size, 1), block):
            add(path, POLLS, header=header, start=start, length=block, last=start + block >= size)
    for csv_name, parquet_name, kind in ((sources.HOURS_FILE, PARQUET_HOURS, HOURS),
                                         (sources.ZONES_FILE, PARQUET_ZONES, ZONES)):
        csv_path, parquet_path = f"{root}/{csv_name}", f"{root}/{parquet_name}"
        if fs.isfile(csv_path):
            header, error = _csv_header(fs, csv_path, kind)
            if error:
                failed.append(FileCount(csv_name, kind, error=error))
            else:
                add(csv_path, kind, header=header)
        elif fs.isfile(parquet_path):
            add(parquet_path, kind, parquet=True)
        else:
            failed.append(FileCount(csv_name, kind, error=f"{csv_name}: file is missing"))
    return pieces, failed


def _csv_header(fs, path: str, kind: str) -> tuple[str, str | None]:
    """A CSV file's header line, and why the file cannot be used (no such column, not UTF-8...), if so."""
    name = path.rsplit("/", 1)[-1]
    with fs.open(path, "rb") as handle:
        first = handle.readline(sources.MAX_LINE_BYTES + 1)
    if first.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "", f"{name}: not UTF-8 text (UTF-16?)"
    if len(first) > sources.MAX_LINE_BYTES:
        return "", f"{name}: the header line is longer than 1 MiB"
    header = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    try:
        sources.match_columns(header, kind, name)
    except sources.SourceError as exc:
        return "", str(exc)
    return header, None


def _frame(bucket, store_id, kind: str, a=None, b=None, c=None, zone=None) -> pd.DataFrame:
    """Rows of one kind in the one shape the shuffle moves: polls (a = instant, b = active, c = rank), hours
    (a = day, b = start, c = end) and zones (c = rank, zone = its name), each with its store's partition."""
    count = len(bucket)
    zeros = np.zeros(count, dtype=np.int64)
    return pd.DataFrame({
        "bucket": np.asarray(bucket, dtype=np.int64),
        "store_id": pd.array(np.asarray(store_id, dtype=object), dtype="str"),
        "kind": np.full(count, _KIND_CODE[kind], dtype=np.int8),
        "a": zeros if a is None else np.asarray(a, dtype=np.int64),
        "b": zeros if b is None else np.asarray(b, dtype=np.int64),
        "c": zeros if c is None else np.asarray(c, dtype=np.int64),
        "zone": pd.array(np.full(count, None, dtype=object) if zone is None else np.asarray(zone, dtype=object),
                         dtype="str"),
    })


FRAME_META = _frame([], [], POLLS)


def _buckets_of(ids: pa.Array, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Each id's partition (a stable hash of the id, the same in every process) and its code among the ids."""
    encoded = pc.dictionary_encode(ids)
    uniques = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    hashed = pd.util.hash_array(uniques) % np.uint64(buckets) if len(uniques) else np.zeros(0, np.uint64)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return hashed.astype(np.int64)[codes], codes


def read_piece(piece: Piece, now_us: int, cap_us: int | None, buckets: int) -> tuple[pd.DataFrame, FileCount]:
    """On a worker: parse one piece by SPEC section 1 and reduce its polls to what a report at `cap_us` (or at any
    instant from the piece's newest poll on, if None) needs. Returns the rows to shuffle and what was read."""
    count = FileCount(piece.name, piece.kind)
    try:
        values, ok, rows_read, malformed = _parse_piece(piece, now_us)
    except sources.SourceError as exc:
        count.error = str(exc)
        return FRAME_META, count
    count.rows_read = rows_read
    count.rows_skipped = int((~ok).sum()) + malformed
    good = ingest.good_rows(values, ok)
    ids = good["store_id"]
    bucket, codes = _buckets_of(ids, buckets)
    rank = (piece.index << _ROW_BITS) + np.arange(len(ids), dtype=np.int64)
    if piece.kind == HOURS:
        return _frame(bucket, ids, HOURS, good["day"], good["start_us"], good["end_us"]), count
    if piece.kind == ZONES:
        return _frame(bucket, ids, ZONES, c=rank, zone=good["zone"].to_numpy(zero_copy_only=False)), count
    ts, active = good["ts"], good["active"]
    keep = np.ones(len(ts), dtype=bool) if cap_us is None else ts <= cap_us
    if keep.any():
        count.newest_poll = int(ts[keep].max())
    rows = np.flatnonzero(keep)[_needed(codes[keep], ts[keep], rank[keep])]
    return _frame(bucket[rows], np.asarray(ids.take(pa.array(rows)).to_pylist(), dtype=object), POLLS,
                  ts[rows], active[rows], rank[rows]), count


def _needed(codes: np.ndarray, ts: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Indices of the polls a report can need from these: duplicates resolved, then each store's polls from a week
    before the newest poll on, and its last poll before that."""
    if not len(ts):
        return np.zeros(0, dtype=np.int64)
    order = polls.latest_per_instant(codes, ts, rank)
    codes, ts = codes[order], ts[order]
    edge = ts.max() - WEEK_US
    last_before_edge = np.ones(len(ts), dtype=bool)
    last_before_edge[:-1] = (codes[1:] != codes[:-1]) | (ts[1:] >= edge)
    return order[(ts >= edge) | last_before_edge]


def _parse_piece(piece: Piece, now_us: int) -> tuple[dict, np.ndarray, int, int]:
    """(values, good-row mask, rows read, malformed lines) of one piece, by the ingest's rules."""
    if piece.parquet:
        return _parse_parquet(piece, now_us)
    import fsspec
    import fsspec.utils

    with fsspec.open(piece.url, "rb") as handle:
        if piece.length is None:
            body = handle.read()
        else:
            body = fsspec.utils.read_block(handle, piece.start, piece.length, delimiter=b"\n")
    if piece.start == 0:
        newline = body.find(b"\n")
        body = b"" if newline < 0 else body[newline + 1:]
    chunk = sources.parse_lines(body, piece.header, piece.kind, piece.name)
    values, ok, _ = ingest.parse_rows(piece.kind, chunk.rows, now_us)
    if piece.last and chunk.unterminated_from is not None and len(ok) and not ok[-1]:
        if piece.kind != POLLS:  # as ingest: an hours or zone file caught mid-write is not used
            raise sources.SourceError(f"{piece.name}: last line is incomplete (file still being written?)")
        values = {name: column[:-1] for name, column in values.items()}
        ok = ok[:-1]
        return values, ok, len(chunk) - 1 + len(chunk.malformed), len(chunk.malformed)
    return values, ok, len(chunk) + len(chunk.malformed), len(chunk.malformed)


def _parse_parquet(piece: Piece, now_us: int) -> tuple[dict, np.ndarray, int, int]:
    """A Parquet file's rows by the same rules: every column is read as text (a typed timestamp as pyarrow writes
    it, `2023-01-25 18:13:22.479220Z`, naive meaning UTC), so that one set of rules checks both formats."""
    import fsspec
    import pyarrow.parquet as pq

    try:
        with fsspec.open(piece.url, "rb") as handle:
            table = pq.read_table(handle)
    except (OSError, pa.ArrowInvalid) as exc:
        raise sources.SourceError(f"{piece.name}: cannot read ({exc})") from None
    positions = sources.match_columns(",".join(table.column_names), piece.kind, piece.name)
    rows = {name: table.column(position).combine_chunks().cast(pa.string()) for name, position in positions.items()}
    values, ok, _ = ingest.parse_rows(piece.kind, rows, now_us)
    return values, ok, table.num_rows, 0


def partition_report(frame: pd.DataFrame, as_of_us: int, interpolation: str) -> Report:
    """On a worker: the engine over one partition's stores (polls, hours and zones of the same stores)."""
    codes, uniques = pd.factorize(frame["store_id"], sort=True)
    codes = np.asarray(codes, dtype=np.int64)
    kind = frame["kind"].to_numpy()
    a, b, c = (frame[name].to_numpy(dtype=np.int64) for name in ("a", "b", "c"))
    is_poll = (kind == _KIND_CODE[POLLS]) & (a <= as_of_us)
    store, ts, active = codes[is_poll], a[is_poll], b[is_poll]
    counted = polls.latest_per_instant(store, ts, c[is_poll])
    hours = pd.DataFrame({"store": codes, "day": a, "start": b, "end": c})[kind == _KIND_CODE[HOURS]]
    hours = hours.drop_duplicates()
    is_zone = kind == _KIND_CODE[ZONES]
    zone_rows = pd.DataFrame({"store": codes[is_zone], "rank": c[is_zone],
                              "zone": frame["zone"].to_numpy(dtype=object)[is_zone]})
    zone_rows = zone_rows.sort_values("rank").drop_duplicates("store", keep="last")
    snapshot = Snapshot(
        dict(enumerate(np.asarray(uniques, dtype=object).tolist())),
        store[counted], ts[counted], active[counted].astype(bool),
        hours["store"].to_numpy(), hours["day"].to_numpy(), hours["start"].to_numpy(), hours["end"].to_numpy(),
        dict(zip(zone_rows["store"].tolist(), zone_rows["zone"].tolist())), 0, as_of_us,
    )
    return compute_report(snapshot, as_of_us, interpolation)


def cluster_report(client, data_dir: str, as_of_us: int | None = None, interpolation: str = "previous",
                   progress: Callable[[float], None] | None = None, cancel: threading.Event | None = None,
                   partitions: int | None = None, block_bytes: int = BLOCK_BYTES) -> ClusterReport:
    """The report over the data directory at `as_of_us` (default: the newest poll), computed on the cluster of
    `client`. `progress` gets the fraction of pieces and partitions done; setting `cancel` cancels the tasks and
    raises ReportCancelled. Raises ClusterError when a task fails for good or no worker is left."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}")
    import dask
    import dask.dataframe as dd

    threads = max(1, sum(client.nthreads().values()))
    pieces, failed = plan_pieces(data_dir, block_bytes, spread=threads)
    partitions = partitions or 2 * threads
    now_us = parse_instant(now_iso())
    read = client.map(read_piece, pieces, now_us=now_us, cap_us=as_of_us, buckets=partitions, pure=False)
    frames = client.map(operator.itemgetter(0), read, pure=False)
    counts = client.map(operator.itemgetter(1), read, pure=False)
    held = [*read, *frames, *counts]
    try:
        _wait(client, counts, 0.0, READ_SHARE, progress, cancel)
        files = _file_counts(failed, client.gather(counts))
        newest = [f.newest_poll for f in files if f.kind == POLLS and f.newest_poll is not None]
        as_of = as_of_us if as_of_us is not None else max(newest, default=None)
        if not newest:  # no file holds a poll: a report without rows
            return ClusterReport(Report(as_of, interpolation, [], np.zeros((0, 6), dtype=np.int64)), files,
                                 partitions)
        shuffled = dd.from_delayed(frames, meta=FRAME_META, verify_meta=False).shuffle(
            on="bucket", npartitions=partitions)
        tasks = [dask.delayed(partition_report)(part, as_of, interpolation) for part in shuffled.to_delayed()]
        computed = client.compute(tasks)
        held.extend(computed)
        _wait(client, computed, READ_SHARE, 1.0, progress, cancel)
        return ClusterReport(combine(client.gather(computed), as_of, interpolation), files, partitions)
    finally:  # releasing its futures stops what is left of the work (Client.cancel trips over shared keys)
        for future in held:
            future.release()


def _file_counts(failed: list[FileCount], counts: list[FileCount]) -> list[FileCount]:
    """One FileCount per file, in the order the files were read."""
    by_name: dict[tuple[str, str], FileCount] = {}
    for count in [*counts, *failed]:
        key = (count.kind, count.name)
        if key in by_name:
            by_name[key].add(count)
        else:
            by_name[key] = FileCount(count.name, count.kind, count.rows_read, count.rows_skipped,
                                     count.newest_poll, count.error)
    return list(by_name.values())


def _wait(client, futures: list, low: float, high: float, progress: Callable[[float], None] | None,
          cancel: threading.Event | None) -> None:
    """Wait for `futures`, telling progress from `low` to `high`; raise the first task's failure as ClusterError,
    ReportCancelled when `cancel` is set, and ClusterError when no worker has been there for a minute."""
    without_workers_since: float | None = None
    next_worker_check = 0.0
    shown = -1
    while True:
        if cancel is not None and cancel.is_set():
            raise ReportCancelled
        done = 0
        for future in futures:
            if future.status == "error" or future.status == "cancelled":
                try:
                    future.result()
                except Exception as exc:
                    raise ClusterError(f"a task failed on the cluster: {type(exc).__name__}: {exc}") from None
                raise ClusterError("a task was cancelled on the cluster")
            done += future.status == "finished"
        if done != shown and progress is not None:
            shown = done
            progress(low + (high - low) * done / max(1, len(futures)))
        if done == len(futures):
            return
        now = time.monotonic()
        if now >= next_worker_check:  # a call to the scheduler: not at every poll
            next_worker_check = now + WORKER_CHECK_S
            if client.nthreads():
                without_workers_since = None
            elif without_workers_since is None:
                without_workers_since = now
            elif now - without_workers_since > NO_WORKERS_TIMEOUT_S:
                raise ClusterError(f"no Dask worker has been connected for {NO_WORKERS_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
