"""Reading the CSV sources: a file, or the part past what was already read, in bounded blocks of whole lines.

Columns are matched by header name. A file is read from an offset to its last complete line, block by block (so
memory does not depend on the file's size), and only up to the size it had when opened (so a file that grows while
read, or never ends, is not chased). A last line without a newline is reported so that a file caught mid-write can
leave it for the next read. Rows come back as strings with their line numbers in the file; the rules for the values
themselves live in `storemon.parse`.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat as stat_module
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

POLLS = "polls"
HOURS = "hours"
ZONES = "zones"

POLLS_FILE = "store_status.csv"
HOURS_FILE = "menu_hours.csv"
ZONES_FILE = "timezones.csv"

# Required columns of each kind of file; each entry lists the accepted header names, first match wins.
COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    POLLS: {"store_id": ("store_id",), "timestamp_utc": ("timestamp_utc",), "status": ("status",)},
    HOURS: {
        "store_id": ("store_id",),
        "day": ("dayofweek", "day_of_week", "day"),
        "start_time_local": ("start_time_local",),
        "end_time_local": ("end_time_local",),
    },
    ZONES: {"store_id": ("store_id",), "timezone_str": ("timezone_str",)},
}

BLOCK_BYTES = 32 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024
_EXPECTED_FIELDS = re.compile(r"Skipping line (\d+): expected \d+ fields?, saw (\d+)")


class SourceError(Exception):
    """A whole file cannot be used: missing, unreadable, not a regular file, or without a required column."""


@dataclass
class Chunk:
    """Rows read from one block of a file: named columns of raw strings, each row's line number, the bytes read.

    `unterminated_from` is the byte offset of a last line that has no newline (its row is the last of `rows`),
    or None. Such a line may still be being written: see `hold_back_last_line`. `raw` holds the bytes from `start`
    to `end` (the header line included in a file's first chunk), to be added to the file's running fingerprint.
    """

    rows: dict[str, pa.Array]
    line_numbers: np.ndarray
    malformed: list[tuple[int, str]]
    header: str
    start: int
    end: int
    lines_after: int
    unterminated_from: int | None = None
    pending_tail: bool = False
    raw: bytes = b""

    def __len__(self) -> int:
        return len(self.line_numbers)

    def hold_back_last_line(self) -> Chunk:
        """This chunk without its unterminated last line, which is left for the next read."""
        return replace(
            self, rows={name: column[:-1] for name, column in self.rows.items()},
            line_numbers=self.line_numbers[:-1], end=self.unterminated_from, lines_after=self.lines_after - 1,
            unterminated_from=None, pending_tail=True, raw=self.raw[: self.unterminated_from - self.start],
        )


def poll_files(data_dir: Path) -> list[Path]:
    """`store_status.csv` first, then every other `store_status*.csv` beside it in name order."""
    main = data_dir / POLLS_FILE
    drops = sorted(p for p in data_dir.glob("store_status*.csv") if p.name != POLLS_FILE and p.is_file())
    return [main, *drops]


def stat_source(path: Path) -> os.stat_result:
    """The file's stat; SourceError (one line, the file's name only) if it is missing or not a regular file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SourceError(f"{path.name}: file is missing") from None
    except OSError as exc:
        raise SourceError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    if not stat_module.S_ISREG(info.st_mode):
        raise SourceError(f"{path.name}: not a regular file")
    return info


def _open_source(path: Path) -> tuple[io.BufferedReader, int]:
    """Open a source file for reading without blocking (a FIFO must not hang us); returns (file, its size)."""
    stat_source(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SourceError(f"{path.name}: file is missing") from None
    except OSError as exc:
        raise SourceError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if not stat_module.S_ISREG(info.st_mode):
        os.close(fd)
        raise SourceError(f"{path.name}: not a regular file")
    return os.fdopen(fd, "rb"), info.st_size


class Fingerprint:
    """A running CRC-32 of a file's bytes from its start, continued with the bytes read next.

    Its text, saved with what was read of the file, tells a file that only grew (the same CRC over what was read
    before) from one that was edited anywhere, even to the same size: an edit within 32 bits always changes the CRC,
    any other goes unnoticed with a chance of 1 in 2^32. CRC-32 rather than a cryptographic digest because every
    refresh of a grown file checks its whole prefix again: 1.7 GB/s here, blake2b 0.8 GB/s. A text saved by
    another kind of fingerprint never matches, so such a file is read again in full once.
    """

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def text(self) -> str:
        return f"crc32:{self.value:08x}"


def prefix_fingerprint(path: Path, length: int) -> Fingerprint:
    """The fingerprint of a file's first `length` bytes (fewer if it is shorter), to be continued."""
    fingerprint = Fingerprint()
    buffer = memoryview(bytearray(BLOCK_BYTES))
    handle, _ = _open_source(path)
    with handle:
        remaining = length
        while remaining > 0:
            count = handle.readinto(buffer[:min(remaining, BLOCK_BYTES)])
            if not count:
                break
            fingerprint.update(buffer[:count])
            remaining -= count
    return fingerprint


def header_columns(header: str) -> list[str]:
    """The field names of a header line (quotes and surrounding spaces removed, lower case)."""
    fields = next(csv.reader([header]), [])
    return [name.strip().strip('"').strip().lower() for name in fields]


def match_columns(header: str, kind: str, file_name: str) -> dict[str, int]:
    """Position of each required column in `header`, matched by name (case-insensitive, order-free)."""
    if not header.strip():
        raise SourceError(f"{file_name}: the file is empty (no header line)")
    names = header_columns(header)
    positions: dict[str, int] = {}
    missing = []
    for column, accepted in COLUMNS[kind].items():
        found = next((names.index(name) for name in accepted if name in names), None)
        if found is None:
            missing.append(" or ".join(repr(n) for n in accepted))
        else:
            positions[column] = found
    if missing:
        raise SourceError(f"{file_name}: no column {', no column '.join(missing)} in the header")
    return positions


def read_chunks(
    path: Path, kind: str, *, start: int = 0, header: str | None = None, lines_before: int = 0,
    block_bytes: int | None = None,
) -> Iterator[Chunk]:
    """Read `path` from byte `start` (0: the whole file, header included) up to the size it has now, in chunks.

    `header` is the header line seen when the file was first read, for a read that starts past it. Raises
    SourceError when the file is missing, unreadable, not a regular file, or lacks a required column.
    """
    handle, size = _open_source(path)
    with handle:
        try:
            handle.seek(start)
            reader = _LineBlocks(handle, size - start, block_bytes or BLOCK_BYTES)
            offset = start
            header_bytes = b""
            if start == 0:
                header_bytes = reader.header_line()
                header = header_bytes.decode("utf-8-sig", errors="replace").rstrip("\r\n")
                offset, lines_before = len(header_bytes), 1
                if header_bytes.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise SourceError(f"{path.name}: not UTF-8 text (UTF-16?)")
            elif header is None:
                raise ValueError("a read past the start of a file needs the header seen at its start")
            columns = match_columns(header, kind, path.name)
            width = len(header_columns(header))
            produced = False
            for body in reader.blocks():
                chunk = _parse_block(body, header, columns, width, offset, lines_before)
                if not produced:
                    chunk = replace(chunk, start=start, raw=header_bytes + body)
                offset, lines_before = chunk.end, chunk.lines_after
                produced = True
                yield chunk
            if not produced:
                yield replace(_parse_block(b"", header, columns, width, offset, lines_before), start=start,
                              raw=header_bytes)
        except OSError as exc:
            raise SourceError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
        except SourceError as exc:
            if str(exc).startswith(path.name):
                raise
            raise SourceError(f"{path.name}: {exc}") from None


@dataclass
class _LineBlocks:
    """Whole lines of a file in blocks of about `block_bytes`; a line over MAX_LINE_BYTES is an error."""

    handle: io.BufferedReader
    remaining: int
    block_bytes: int
    pending: bytes = b""

    def _read(self, count: int) -> bytes:
        data = self.handle.read(min(count, self.remaining)) if self.remaining > 0 else b""
        self.remaining -= len(data)
        return data

    def header_line(self) -> bytes:
        while b"\n" not in self.pending:
            data = self._read(64 * 1024)
            if not data:
                break
            self.pending += data
            if len(self.pending) > MAX_LINE_BYTES and b"\n" not in self.pending:
                raise SourceError("the header line is longer than 1 MiB")
        newline = self.pending.find(b"\n")
        line, self.pending = (self.pending, b"") if newline < 0 else (
            self.pending[: newline + 1], self.pending[newline + 1 :])
        return line

    def blocks(self) -> Iterator[bytes]:
        """Blocks of whole lines until the end (the last one may end without a newline)."""
        while True:
            data = self._read(self.block_bytes)
            block = self.pending + data
            if not data:
                if block:
                    yield block
                return
            cut = _last_line_end(block)
            if cut < 0:
                if len(block) > MAX_LINE_BYTES:
                    raise SourceError("a line is longer than 1 MiB")
                self.pending = block
                continue
            self.pending = block[cut:]
            if len(self.pending) > MAX_LINE_BYTES:
                raise SourceError("a line is longer than 1 MiB")
            yield block[:cut]


def parse_lines(body: bytes, header: str, kind: str, file_name: str) -> Chunk:
    """Parse a block of whole lines (no header line; the last may lack its newline) of a file whose header line
    is `header`; line numbers count from the block's first line. SourceError if a required column is missing."""
    columns = match_columns(header, kind, file_name)
    return _parse_block(body, header, columns, len(header_columns(header)), 0, 0)


def _last_line_end(block: bytes) -> int:
    """The offset just past the last newline that is outside quotes, or -1."""
    cut = block.rfind(b"\n")
    while cut >= 0 and block.count(b'"', 0, cut) % 2:
        cut = block.rfind(b"\n", 0, cut)
    return cut + 1 if cut >= 0 else -1


def _parse_block(body: bytes, header: str, columns: dict[str, int], width: int, offset: int,
                 lines_before: int) -> Chunk:
    """Parse one block of whole lines (the last line may lack its newline) into a Chunk."""
    line_count = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
    end = offset + len(body)
    last_line = lines_before + line_count
    unterminated_from = None
    if body and not body.endswith(b"\n") and body[body.rfind(b"\n") + 1 :].strip():
        unterminated_from = offset + body.rfind(b"\n") + 1
    if not body or body.isspace():
        return Chunk(_empty(columns), np.zeros(0, np.int64), [], header, offset, end, last_line, raw=body)
    parsed = _parse_fast(body, columns, width, line_count)
    if parsed is None:
        parsed = _parse_exact(header, body, columns, lines_before)
        rows, line_numbers, malformed = parsed
    else:
        rows, blank = parsed
        line_numbers = np.arange(lines_before + 1, lines_before + 1 + line_count, dtype=np.int64)[~blank]
        malformed = []
    tail_parsed = len(line_numbers) > 0 and line_numbers[-1] == last_line
    return Chunk(rows, line_numbers, malformed, header, offset, end, last_line,
                 unterminated_from if tail_parsed else None, raw=body)


def _empty(columns: dict[str, int]) -> dict[str, pa.Array]:
    return {name: pa.array([], type=pa.string()) for name in columns}


def _parse_fast(body: bytes, columns: dict[str, int], width: int, line_count: int
                ) -> tuple[dict[str, pa.Array], np.ndarray] | None:
    """Parse with pyarrow when every line is one well-formed row; None when the block needs the exact parser."""
    names = [f"c{i}" for i in range(width)]
    invalid = []

    def on_invalid(row) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=True),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names}, strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if invalid or table.num_rows != line_count:
        return None
    blank = np.ones(table.num_rows, dtype=bool)
    for column in table.columns:
        blank &= pc.equal(pc.binary_length(column), 0).to_numpy()
    keep = pa.array(~blank)
    rows = {name: table.column(position).combine_chunks().filter(keep) for name, position in columns.items()}
    return rows, blank


def _parse_exact(header: str, body: bytes, columns: dict[str, int], lines_before: int
                 ) -> tuple[dict[str, pa.Array], np.ndarray, list[tuple[int, str]]]:
    """Parse with pandas' C parser, which reports each malformed line (for blocks with blank or broken lines)."""
    text = header.encode("utf-8") + b"\n" + body
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = pd.read_csv(
            io.BytesIO(text), dtype=object, keep_default_na=False, na_filter=False, skip_blank_lines=False,
            on_bad_lines="warn", encoding="utf-8", encoding_errors="replace", index_col=False, header=0,
        )
    malformed: list[tuple[int, str]] = []
    for warning in caught:
        for match in _EXPECTED_FIELDS.finditer(str(warning.message)):
            line = int(match.group(1)) - 1 + lines_before
            malformed.append((line, f"wrong number of fields ({match.group(2)})"))
    malformed.sort()
    line_numbers = _line_numbers(len(frame), [line for line, _ in malformed], lines_before)
    blank = (frame.fillna("") == "").all(axis=1).to_numpy()
    rows = {name: pa.array(frame.iloc[:, position].fillna("").astype(object).to_numpy()[~blank].tolist(),
                           type=pa.string())
            for name, position in columns.items()}
    return rows, line_numbers[~blank], malformed


def _line_numbers(row_count: int, skipped_lines: list[int], lines_before: int) -> np.ndarray:
    """File line number of each parsed row, given the lines the parser skipped."""
    total = row_count + len(skipped_lines)
    candidates = np.arange(lines_before + 1, lines_before + 1 + total, dtype=np.int64)
    if skipped_lines:
        candidates = candidates[~np.isin(candidates, np.asarray(skipped_lines, dtype=np.int64))]
    return candidates[:row_count]
