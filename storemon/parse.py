"""The rules of SPEC section 1 for single columns: store ids, timestamps, statuses, days and times of day.

Each parser takes a column of raw strings (a pyarrow array; a missing field is null) and returns a `Parsed`: the
values, a mask of the good rows, and the trimmed text to explain a bad row with. Everything is vectorised with
pyarrow compute and numpy: a poll file has millions of rows, and only the few bad rows shown are ever described.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND

_TIMESTAMP = (
    r"(?i)^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[T ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?\s*"
    r"(?:UTC|Z|(?P<sign>[+-])(?P<off_hour>\d{2})(?::?(?P<off_minute>\d{2}))?)?$"
)
_TIME_OF_DAY = r"^(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?$"
MAX_SHOWN_VALUE = 40


@dataclass(frozen=True)
class Parsed:
    """One parsed column: `values` (meaningful where `ok`), and `why(i)` saying what is wrong with bad row i."""

    values: np.ndarray
    ok: np.ndarray
    text: pa.Array
    reason: Callable[[str], str]

    def why(self, row: int) -> str:
        return self.reason(self.text[row].as_py() or "")


def shown(value: str) -> str:
    """A bad value as a reason quotes it: its repr, cut to a readable length."""
    return repr(value[:MAX_SHOWN_VALUE])


def _simple_reason(column: str) -> Callable[[str], str]:
    return lambda value: f"empty {column}" if value == "" else f"bad {column} {shown(value)}"


def as_array(values) -> pa.Array:
    """A column as one pyarrow string array (from an array, a chunked array, or any sequence)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(list(values), type=pa.string())
    if values.type != pa.string():
        values = values.cast(pa.string())
    return values


def clean_text(values) -> pa.Array:
    """Strings with surrounding white space trimmed; a missing field becomes ''."""
    return pc.utf8_trim_whitespace(pc.fill_null(as_array(values), ""))


def _groups(text: pa.Array, pattern: str) -> dict[str, pa.Array]:
    """The named groups of `pattern` matched against each string (null where a row does not match)."""
    matched = pc.extract_regex(text, pattern)
    return {matched.type.field(i).name: column for i, column in enumerate(matched.flatten())}


def _integers(column: pa.Array, default: int = 0) -> np.ndarray:
    """Digits to int64 (null or '' gives `default`)."""
    filled = pc.if_else(pc.or_kleene(pc.is_null(column), pc.equal(column, "")), str(default), column)
    return pc.cast(filled, pa.int64()).to_numpy(zero_copy_only=False)


def _fraction_us(column: pa.Array) -> np.ndarray:
    """A fraction of a second's digits to microseconds, truncating finer digits."""
    digits = pc.utf8_rpad(pc.utf8_slice_codeunits(pc.fill_null(column, ""), 0, 6), 6, "0")
    return pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False)


def days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm), vectorised."""
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    year_of_era = y - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _days_in_month(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    lengths = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
    return lengths[np.clip(month, 0, 12)] + ((month == 2) & leap)


def parse_timestamps(values) -> Parsed:
    """ISO-8601 timestamps to integer microseconds since the epoch, UTC.

    Accepted: a date and a time with `T` or a space between (case-insensitive), seconds and a fraction optional
    (finer than a microsecond is truncated), then optionally ` UTC`, `Z` or an offset `+HH`, `+HHMM`, `+HH:MM`
    (converted to UTC); no suffix means UTC. The date must exist; hours 0-23, minutes and seconds 0-59.

    Rows in the platform's own layout (`PLATFORM_LAYOUT`, nearly every row of a real file) are read as fixed-width
    digits straight from the Arrow buffer; the others go through the regular expression, 8x slower.
    """
    text = clean_text(values)
    micros, ok = np.zeros(len(text), np.int64), np.zeros(len(text), bool)
    fixed, chars = _platform_layout(text)
    if len(fixed):
        micros[fixed], ok[fixed] = _utc_micros(*(_layout_number(chars, *field) for field in _LAYOUT_FIELDS),
                                               offset_s=0)
    is_fixed = np.zeros(len(text), bool)
    is_fixed[fixed] = True
    rest = np.flatnonzero(~is_fixed)
    if len(rest):
        found = _groups(text.take(pa.array(rest)), _TIMESTAMP)
        matched = pc.is_valid(found["year"]).to_numpy(zero_copy_only=False)
        off_hour, off_minute = _integers(found["off_hour"]), _integers(found["off_minute"])
        sign = np.where(pc.equal(pc.fill_null(found["sign"], ""), "-").to_numpy(zero_copy_only=False), -1, 1)
        micros[rest], rest_ok = _utc_micros(
            *(_integers(found[name], 1) for name in ("year", "month", "day")),
            *(_integers(found[name]) for name in ("hour", "minute", "second")),
            _fraction_us(found["fraction"]), offset_s=sign * (off_hour * 3600 + off_minute * 60),
        )
        ok[rest] = matched & rest_ok & (off_hour <= 23) & (off_minute <= 59)
        micros[rest] = np.where(ok[rest], micros[rest], 0)
    return Parsed(micros, ok, text, _simple_reason("timestamp_utc"))


PLATFORM_LAYOUT = "0000-00-00 00:00:00.000000 UTC"  # how the platform writes a timestamp; 0 stands for a digit
_LAYOUT_BYTES = np.frombuffer(PLATFORM_LAYOUT.encode(), dtype=np.uint8)
_LAYOUT_DIGITS = np.array([char == "0" for char in PLATFORM_LAYOUT])
# Year, month, day, hour, minute, second, microseconds: where each field starts and ends in the layout.
_LAYOUT_FIELDS = ((0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19), (20, 26))


def _platform_layout(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the rows of `text` written exactly in `PLATFORM_LAYOUT`, and their characters (a row
    each, a column per character, as bytes)."""
    width = len(PLATFORM_LAYOUT)
    data = text.buffers()[2]
    if data is None or not len(text):
        return np.zeros(0, np.int64), np.zeros((0, width), np.uint8)
    lengths = pc.binary_length(text).to_numpy(zero_copy_only=False)
    starts = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset: text.offset + len(text)]
    text_bytes = np.frombuffer(data, dtype=np.uint8)
    if (lengths == width).all():  # the usual block: rows of the layout's width, back to back in the buffer
        candidates = np.arange(len(text))
        chars = text_bytes[starts[0]: starts[0] + width * len(text)].reshape(-1, width)
    else:
        candidates = np.flatnonzero(lengths == width)
        chars = text_bytes[starts[candidates, None] + np.arange(width)]
    fits = ((chars[:, _LAYOUT_DIGITS] - np.uint8(ord("0")) <= 9).all(axis=1)  # below "0" wraps around above 9
            & (chars[:, ~_LAYOUT_DIGITS] == _LAYOUT_BYTES[~_LAYOUT_DIGITS]).all(axis=1))
    return (candidates, chars) if fits.all() else (candidates[fits], chars[fits])


def _layout_number(chars: np.ndarray, first: int, last: int) -> np.ndarray:
    """The number written in columns [first, last) of rows of digits (bytes)."""
    number = np.zeros(len(chars), np.int64)
    for column in range(first, last):
        number = number * 10 + (chars[:, column].astype(np.int64) - ord("0"))
    return number


def _utc_micros(year: np.ndarray, month: np.ndarray, day: np.ndarray, hour: np.ndarray, minute: np.ndarray,
                second: np.ndarray, fraction_us: np.ndarray, offset_s: np.ndarray | int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds since the epoch (UTC) of local date and time fields at `offset_s` east of UTC, and whether
    the date exists and the time is in range (where not, the value is 0)."""
    ok = ((month >= 1) & (month <= 12) & (day >= 1) & (day <= _days_in_month(year, month))
          & (hour <= 23) & (minute <= 59) & (second <= 59))
    seconds = ((days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60 + second
    return np.where(ok, (seconds - offset_s) * US_PER_SECOND + fraction_us, 0), ok


def parse_statuses(values) -> Parsed:
    """`active` / `inactive`, case-insensitive, trimmed. Values are True where active."""
    text = clean_text(values)
    lowered = pc.utf8_lower(text)
    active = pc.equal(lowered, "active").to_numpy(zero_copy_only=False)
    known = active | pc.equal(lowered, "inactive").to_numpy(zero_copy_only=False)
    return Parsed(active, known, text,
                  lambda value: "empty status" if value == "" else f"unknown status {shown(value)}")


MAX_STORE_ID = 255


def parse_store_ids(values) -> Parsed:
    """Opaque store ids, trimmed. Empty ones, ones over 255 characters and ones with control characters are bad.

    Values are the trimmed ids (a pyarrow string array)."""
    text = clean_text(values)
    empty = pc.equal(text, "").to_numpy(zero_copy_only=False)
    too_long = pc.greater(pc.utf8_length(text), MAX_STORE_ID).to_numpy(zero_copy_only=False)
    control = pc.match_substring_regex(text, "[\x00-\x1f\x7f\ufffd]").to_numpy(zero_copy_only=False)

    def reason(value: str) -> str:
        if value == "":
            return "empty store_id"
        if len(value) > MAX_STORE_ID:
            return f"store_id longer than {MAX_STORE_ID} characters"
        if "\ufffd" in value:
            return f"store_id is not valid UTF-8: {value[:MAX_SHOWN_VALUE]!a}"
        return f"store_id has a control character: {value[:MAX_SHOWN_VALUE]!a}"

    return Parsed(text, ~(empty | too_long | control), text, reason)


def parse_days(values) -> Parsed:
    """Day of week, an integer 0 (Monday) to 6 (Sunday)."""
    text = clean_text(values)
    digits = pc.match_substring_regex(text, r"^\+?\d{1,3}$").to_numpy(zero_copy_only=False)
    days = np.full(len(text), -1, dtype=np.int64)
    if digits.any():
        days[digits] = _integers(pc.filter(pc.replace_substring(text, "+", ""), pa.array(digits)))
    ok = (days >= 0) & (days <= 6)

    def reason(value: str) -> str:
        if value == "":
            return "empty day"
        return f"{'day outside 0..6' if value.lstrip('+').isdigit() else 'bad day'} {shown(value)}"

    return Parsed(days, ok, text, reason)


def parse_times_of_day(values, column: str, *, allow_24: bool) -> Parsed:
    """`H:MM`, `HH:MM` or `HH:MM:SS[.fraction]` to microseconds since local midnight.

    `24:00` (or `24:00:00`) is accepted only where `allow_24` (an end time): it is the end of the day.
    """
    text = clean_text(values)
    if not len(text):
        return Parsed(np.zeros(0, np.int64), np.zeros(0, bool), text, _simple_reason(column))
    fields = _groups(text, _TIME_OF_DAY)
    matched = pc.is_valid(fields["hour"]).to_numpy(zero_copy_only=False)
    hour, minute, second = (_integers(fields[name]) for name in ("hour", "minute", "second"))
    micro = _fraction_us(fields["fraction"])
    in_day = matched & (hour <= 23) & (minute <= 59) & (second <= 59)
    end_of_day = matched & (hour == 24) & (minute == 0) & (second == 0) & (micro == 0) & allow_24
    ok = in_day | end_of_day
    micros = np.where(ok, ((hour * 60 + minute) * 60 + second) * US_PER_SECOND + micro, 0)
    return Parsed(micros, ok, text, _simple_reason(column))


EARLIEST_AS_OF = "1900-01-01T00:00:00Z"
LATEST_AS_OF = "2999-12-31T23:59:59Z"


def parse_instant(text: str) -> int:
    """One timestamp by the same rules, in microseconds; ValueError with the reason if it is bad."""
    parsed = parse_timestamps(pa.array([text], type=pa.string()))
    if not parsed.ok[0]:
        raise ValueError(f"not an ISO-8601 date and time: {text!r}")
    return int(parsed.values[0])


def parse_as_of(text: str) -> int:
    """A report's `as_of`: an instant by the same rules, within the years a report can be computed for."""
    micros = parse_instant(text)
    if not parse_instant(EARLIEST_AS_OF) <= micros <= parse_instant(LATEST_AS_OF):
        raise ValueError(f"{text!r} is outside {EARLIEST_AS_OF[:4]}..{LATEST_AS_OF[:4]}")
    return micros


def format_instant(micros: int | None) -> str | None:
    """Microseconds since the epoch as ISO-8601 UTC (`2023-01-25T18:13:22.479220Z`), or None."""
    if micros is None:
        return None
    text = str(np.datetime64(int(micros), "us"))
    return text + "Z"
