"""The rules of SPEC section 1 for single columns: timestamps, statuses, days and times of day.

Each parser takes a pandas Series of raw strings (possibly NaN for a missing field) and returns the parsed values
together with a reason per row that is empty where the row is good. Everything is vectorised: a Loop-sized poll
file has millions of rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

US_PER_SECOND = 1_000_000

_TIMESTAMP_SHAPE = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(UTC|Z|[+-]\d{2}(:?\d{2})?)?$"
_TIME_OF_DAY = r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?$"


def clean_text(values: pd.Series) -> pd.Series:
    """Strings with surrounding spaces trimmed; a missing field becomes ''."""
    return values.fillna("").astype(str).str.strip()


def parse_timestamps(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse ISO-8601 timestamps to integer microseconds since the epoch, UTC.

    Accepted: date and time with `T` or a space between, optional fraction, then optional ` UTC`, `Z` or a
    numeric offset (converted to UTC); no suffix means UTC. Returns (microseconds, reason per row).
    """
    text = clean_text(values)
    shape_ok = text.str.match(_TIMESTAMP_SHAPE, case=False).to_numpy(dtype=bool)
    bare = text.str.replace(r"\s*UTC$", "", regex=True, case=False)
    parsed = pd.to_datetime(bare.where(shape_ok, ""), format="ISO8601", utc=True, errors="coerce")
    ok = shape_ok & parsed.notna().to_numpy(dtype=bool)
    micros = np.zeros(len(text), dtype=np.int64)
    micros[ok] = parsed[ok].astype("datetime64[us, UTC]").dt.tz_convert(None).to_numpy().view(np.int64)
    reasons = np.where(ok, "", np.where(text.to_numpy() == "", "empty timestamp_utc", "bad timestamp_utc"))
    return micros, _with_value(reasons, text)


def parse_statuses(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """`active` / `inactive`, case-insensitive, trimmed. Returns (True where active, reason per row)."""
    text = clean_text(values)
    lowered = text.str.lower()
    active = (lowered == "active").to_numpy(dtype=bool)
    known = active | (lowered == "inactive").to_numpy(dtype=bool)
    reasons = np.where(known, "", np.where(text.to_numpy() == "", "empty status", "unknown status"))
    return active, _with_value(reasons, text)


def parse_store_ids(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Opaque store ids, trimmed; an empty one is a bad row. Returns (ids as objects, reason per row)."""
    text = clean_text(values)
    ids = text.to_numpy(dtype=object)
    reasons = np.where(text.to_numpy() == "", "empty store_id", "")
    return ids, reasons


def parse_days(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Day of week, an integer 0 (Monday) to 6 (Sunday). Returns (days, reason per row)."""
    text = clean_text(values)
    digits = text.str.fullmatch(r"\+?\d{1,3}").to_numpy(dtype=bool)
    days = np.full(len(text), -1, dtype=np.int64)
    days[digits] = text[digits].astype(np.int64).to_numpy()
    ok = (days >= 0) & (days <= 6)
    reasons = np.where(ok, "", np.where(digits, "day outside 0..6", "bad day"))
    return days, _with_value(reasons, text)


def parse_times_of_day(values: pd.Series, column: str, *, allow_24: bool) -> tuple[np.ndarray, np.ndarray]:
    """`HH:MM` or `HH:MM:SS[.fraction]` to microseconds since local midnight.

    `24:00` (or `24:00:00`) is accepted only where `allow_24` (an end time): it is the end of the day.
    Returns (microseconds, reason per row).
    """
    text = clean_text(values)
    parts = text.str.extract(_TIME_OF_DAY)
    matched = parts[0].notna().to_numpy(dtype=bool)
    hour = pd.to_numeric(parts[0], errors="coerce").fillna(-1).to_numpy(dtype=np.int64)
    minute = pd.to_numeric(parts[1], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    second = pd.to_numeric(parts[2], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    fraction = parts[3].fillna("").str.slice(0, 6).str.ljust(6, "0")
    micro = pd.to_numeric(fraction, errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    in_day = matched & (hour <= 23) & (minute <= 59) & (second <= 59)
    end_of_day = matched & (hour == 24) & (minute == 0) & (second == 0) & (micro == 0) & allow_24
    ok = in_day | end_of_day
    micros = ((hour * 60 + minute) * 60 + second) * US_PER_SECOND + micro
    micros = np.where(ok, micros, 0)
    reasons = np.where(ok, "", np.where(text.to_numpy() == "", f"empty {column}", f"bad {column}"))
    return micros, _with_value(reasons, text)


def _with_value(reasons: np.ndarray, text: pd.Series) -> np.ndarray:
    """Append the offending value to each non-empty reason, for the ingest report."""
    bad = reasons != ""
    if not bad.any():
        return reasons.astype(object)
    out = reasons.astype(object)
    shown = text.to_numpy(dtype=object)[bad]
    out[bad] = [f"{reason} {value[:40]!r}" if value else reason for reason, value in zip(out[bad], shown)]
    return out


def parse_instant(text: str) -> int:
    """One timestamp by the same rules (an `as_of`), in microseconds; ValueError with the reason if it is bad."""
    micros, reasons = parse_timestamps(pd.Series([text], dtype=object))
    if reasons[0]:
        raise ValueError(f"not an ISO-8601 date and time: {text!r}")
    return int(micros[0])


def format_instant(micros: int | None) -> str | None:
    """Microseconds since the epoch as ISO-8601 UTC (`2023-01-25T18:13:22.479220Z`), or None."""
    if micros is None:
        return None
    text = str(np.datetime64(int(micros), "us"))
    return text + "Z"
