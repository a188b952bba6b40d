"""A fetch-mode bot's event queue: `imbot.v2.Event.get` reads it (protocol notes §00 item 9).

Passing `offset` acknowledges (drops) every event whose id is below it; unacknowledged events
are kept for 24 hours by the portal's clock, then dropped whether fetched or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

RETENTION: Final = 24 * 3600.0
MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 100


@dataclass(frozen=True)
class QueuedEvent:
    event_id: int
    type: str
    queued_at: float  # the portal's clock
    data: dict[str, Any]

    def as_fetched(self) -> dict[str, Any]:
        """`{eventId, type, date, data}` as `result.events[]` carries it (event-get.md)."""
        date = datetime.fromtimestamp(self.queued_at, UTC).isoformat(timespec="seconds")
        return {"eventId": self.event_id, "type": self.type, "date": date, "data": self.data}


@dataclass(frozen=True)
class Page:
    events: list[QueuedEvent]
    next_offset: int
    has_more: bool


@dataclass
class EventQueue:
    events: list[QueuedEvent] = field(default_factory=list)
    acknowledged: int = 0  # the highest offset a fetch has passed: every id below it is gone

    def push(self, event: QueuedEvent) -> None:
        self.events.append(event)

    def fetch(self, offset: int | None, limit: int, now: float) -> Page:
        """Acknowledge below `offset`, forget what is older than RETENTION, return a page."""
        if offset is not None:
            self.acknowledged = max(self.acknowledged, offset)
        self.events = [
            e
            for e in self.events
            if e.event_id >= self.acknowledged and now - e.queued_at <= RETENTION
        ]
        page = self.events[:limit]
        # An empty page answers the cursor already acknowledged [UNCONFIRMED: the docs show
        # only a non-empty page].
        next_offset = page[-1].event_id + 1 if page else self.acknowledged
        return Page(page, next_offset, len(self.events) > len(page))
