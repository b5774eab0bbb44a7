"""IANA time zones by name, with SPEC's default zone for a store without a known one."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo

DEFAULT_ZONE = "America/Chicago"


@lru_cache(maxsize=1024)
def lookup_zone(name: str) -> ZoneInfo | None:
    """The zone called `name`, or None when no IANA zone has that name."""
    if not name or name != name.strip():
        return None
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError):
        return None


def zone_or_default(name: str | None) -> ZoneInfo:
    """The store's zone, or the default zone when it has none or an unknown one."""
    return lookup_zone(name or "") or ZoneInfo(DEFAULT_ZONE)
