"""Messages the console's widgets and workers exchange."""

from __future__ import annotations

from textual.message import Message

from storemon.fleet import Fleet, StoreDetail
from storemon.service import Change


class ServiceChanged(Message):
    """A report or the data changed (posted from a service thread)."""

    def __init__(self, change: Change) -> None:
        super().__init__()
        self.change = change


class FleetLoaded(Message):
    """A fresh view of every store, loaded by a worker."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__()
        self.fleet = fleet


class DetailLoaded(Message):
    """The detail of the selected store, loaded by a worker."""

    def __init__(self, detail: StoreDetail | None) -> None:
        super().__init__()
        self.detail = detail


class IncidentsLoaded(Message):
    """Incidents for the incidents view, loaded by a worker, in the order it shows them."""

    def __init__(self, incidents: list[dict]) -> None:
        super().__init__()
        self.incidents = incidents
