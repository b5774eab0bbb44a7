"""Reading the CSV sources: whole files or the part past what was already read, columns matched by header name.

A source file is read as bytes from an offset to its last complete line, so that a file caught mid-write leaves its
unfinished last line for the next read. Rows come back as strings with their line numbers in the file; the rules
for the values themselves live in `storemon.parse`.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

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

_EXPECTED_FIELDS = re.compile(r"Skipping line (\d+): expected \d+ fields?, saw (\d+)")


class SourceError(Exception):
    """A whole file cannot be used: missing, unreadable, or without a required column."""


@dataclass
class Chunk:
    """Rows read from one file: named columns of raw strings, each row's line number, and the byte range read.

    `unterminated_from` is the byte offset of a last line that has no newline (its row is the last of `rows`),
    or None. Such a line may still be being written: see `hold_back_last_line`.
    """

    rows: pd.DataFrame
    line_numbers: np.ndarray
    malformed: list[tuple[int, str]]
    header: str
    start: int
    end: int
    lines_before: int
    lines_after: int
    unterminated_from: int | None = None
    pending_tail: bool = False

    def hold_back_last_line(self) -> Chunk:
        """This chunk without its unterminated last line, which is left for the next read."""
        return replace(
            self, rows=self.rows.iloc[:-1], line_numbers=self.line_numbers[:-1], end=self.unterminated_from,
            lines_after=self.lines_after - 1, unterminated_from=None, pending_tail=True,
        )


def poll_files(data_dir: Path) -> list[Path]:
    """`store_status.csv` first, then every other `store_status*.csv` beside it in name order."""
    main = data_dir / POLLS_FILE
    drops = sorted(p for p in data_dir.glob("store_status*.csv") if p.name != POLLS_FILE and p.is_file())
    return [main, *drops]


FINGERPRINT_BLOCK = 64 * 1024


def fingerprint(path: Path, length: int) -> str:
    """A digest of the first `length` bytes of a file (their first and last 64 KiB, and the length).

    Tells a file that only grew (same fingerprint over what was read before) from one that was rewritten.
    """
    digest = hashlib.sha256(str(length).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(min(length, FINGERPRINT_BLOCK)))
        tail_start = max(FINGERPRINT_BLOCK, length - FINGERPRINT_BLOCK)
        if tail_start < length:
            handle.seek(tail_start)
            digest.update(handle.read(length - tail_start))
    return digest.hexdigest()


def read_chunk(
    path: Path, kind: str, *, start: int = 0, header: str | None = None, lines_before: int = 0
) -> Chunk:
    """Read `path` from byte `start` (0: the whole file, header included) up to its end.

    `header` is the header line seen when the file was first read, for a read that starts past it.
    Raises SourceError when the file is missing or unreadable or lacks a required column.
    """
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            data = handle.read()
    except FileNotFoundError:
        raise SourceError(f"{path.name}: file is missing") from None
    except OSError as exc:
        raise SourceError(f"{path.name}: cannot read ({exc.strerror or exc})") from None

    if start == 0:
        newline = data.find(b"\n")
        header_bytes = data if newline < 0 else data[: newline + 1]
        header = header_bytes.decode("utf-8-sig", errors="replace").rstrip("\r\n")
        body = b"" if newline < 0 else data[newline + 1 :]
        body_offset = len(header_bytes)
        lines_before = 1
    else:
        if header is None:
            raise ValueError("a read past the start of a file needs the header seen at its start")
        body = data
        body_offset = start

    columns = _match_columns(header, kind, path.name)

    unterminated_from = None
    if body and not body.endswith(b"\n") and body[body.rfind(b"\n") + 1 :].strip():
        unterminated_from = body_offset + body.rfind(b"\n") + 1
    end = body_offset + len(body)
    line_count = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)

    if not body.strip():
        empty = pd.DataFrame({name: pd.Series([], dtype=object) for name in columns})
        return Chunk(empty, np.zeros(0, np.int64), [], header, start, end, lines_before, lines_before + line_count)

    frame, malformed = _parse_csv(header, body, lines_before)
    rows = pd.DataFrame({name: frame.iloc[:, position] for name, position in columns.items()})
    line_numbers = _line_numbers(len(frame), [line for line, _ in malformed], lines_before)
    blank = (frame.fillna("") == "").all(axis=1).to_numpy()
    rows = rows[~blank].reset_index(drop=True)
    line_numbers = line_numbers[~blank]
    last_line = lines_before + line_count
    tail_parsed = len(line_numbers) > 0 and line_numbers[-1] == last_line
    return Chunk(rows, line_numbers, malformed, header, start, end, lines_before, last_line,
                 unterminated_from if tail_parsed else None)


def _match_columns(header: str, kind: str, file_name: str) -> dict[str, int]:
    """Position of each required column in `header`, matched by name (case-insensitive, order-free)."""
    names = [name.strip().strip('"').strip().lower() for name in header.split(",")]
    positions: dict[str, int] = {}
    for column, accepted in COLUMNS[kind].items():
        found = next((names.index(name) for name in accepted if name in names), None)
        if found is None:
            raise SourceError(f"{file_name}: no column {' or '.join(repr(n) for n in accepted)} in the header")
        positions[column] = found
    return positions


def _parse_csv(header: str, body: bytes, lines_before: int) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """Parse CSV bytes (without header) as strings; rows with too many fields are skipped and returned."""
    text = header.encode("utf-8") + b"\n" + body
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = pd.read_csv(
            io.BytesIO(text), dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=False,
            on_bad_lines="warn", encoding="utf-8", encoding_errors="replace", index_col=False,
        )
    malformed: list[tuple[int, str]] = []
    for warning in caught:
        for match in _EXPECTED_FIELDS.finditer(str(warning.message)):
            line = int(match.group(1)) - 1 + lines_before
            malformed.append((line, f"wrong number of fields ({match.group(2)})"))
    malformed.sort()
    return frame, malformed


def _line_numbers(row_count: int, skipped_lines: list[int], lines_before: int) -> np.ndarray:
    """File line number of each parsed row, given the lines the parser skipped."""
    total = row_count + len(skipped_lines)
    candidates = np.arange(lines_before + 1, lines_before + 1 + total, dtype=np.int64)
    if skipped_lines:
        candidates = candidates[~np.isin(candidates, np.asarray(skipped_lines, dtype=np.int64))]
    return candidates[:row_count]
