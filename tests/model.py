"""A slow, obviously correct model of SPEC sections 3-5, for one store, by sampling time.

Time is cut into cells; every event (polls, midpoints between polls, segment boundaries, zone transitions, window
ends) must fall on a cell boundary, so that being open and the status are constant within a cell: the model then
reads both at each cell's middle, straight from the SPEC's words, and adds up the cells.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

DEFAULT_ZONE = "America/Chicago"


def zone_of(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo(DEFAULT_ZONE)
    except Exception:
        return ZoneInfo(DEFAULT_ZONE)


def seconds_of(text: str) -> float:
    parts = [float(p) for p in text.split(":")]
    return parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0)


def is_open(local: datetime, hours: list[tuple[int, str, str]]) -> bool:
    """SPEC section 3, literally, for a local wall-clock time."""
    if not hours:
        return True
    weekday = local.weekday()
    tod = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    for day, start_text, end_text in hours:
        start, end = seconds_of(start_text), seconds_of(end_text)
        next_day = (day + 1) % 7
        if end == start:
            if (weekday == day and tod >= start) or (weekday == next_day and tod < start):
                return True
            continue
        if end >= 86399:
            end = 86400
        if end > start:
            if weekday == day and start <= tod < end:
                return True
        elif (weekday == day and tod >= start) or (weekday == next_day and tod < end):
            return True
    return False


def status_at(t: datetime, polls: list[tuple[datetime, bool]], interpolation: str) -> bool:
    """SPEC section 4, literally."""
    if interpolation == "previous":
        before = [p for p in polls if p[0] <= t]
        return max(before)[1] if before else min(polls)[1]
    best = min(polls, key=lambda p: (abs((p[0] - t).total_seconds()), -p[0].timestamp()))
    return best[1]


def model_row(
    polls: list[tuple[datetime, bool]],
    hours: list[tuple[int, str, str]],
    zone: str | None,
    as_of: datetime,
    interpolation: str,
    cell: timedelta,
) -> list[str] | None:
    """The six figures of one store's report row as written, or None when it has no poll at or before as_of."""
    polls = [p for p in polls if p[0] <= as_of]
    if not polls:
        return None
    tz = zone_of(zone)
    seconds = cell.total_seconds()
    sums = {}
    for name, length in (("hour", timedelta(hours=1)), ("day", timedelta(days=1)), ("week", timedelta(days=7))):
        up = down = 0
        t = as_of - length
        while t < as_of:
            middle = t + cell / 2
            local = middle.astimezone(tz).replace(tzinfo=None)
            if is_open(local, hours):
                if status_at(middle, polls, interpolation):
                    up += 1
                else:
                    down += 1
            t += cell
        sums[name] = (up * seconds, down * seconds)
    figures = []
    for index in (0, 1):
        figures.append(_fmt(sums["hour"][index] / 60))
        figures.append(_fmt(sums["day"][index] / 3600))
        figures.append(_fmt(sums["week"][index] / 3600))
    return figures


def _fmt(value: float) -> str:
    return str(Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))

