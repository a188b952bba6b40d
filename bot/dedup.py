"""Remembering which deliveries were already accepted, so none is run twice.

In memory for now, behind a small interface; durable storage replaces it in a later issue.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

DEFAULT_RETENTION: Final = 24 * 3600.0


class SeenKeys:
    """Keys seen within the retention period; the oldest are pruned first."""

    def __init__(
        self, *, retention: float = DEFAULT_RETENTION, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._retention = retention
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def claim(self, keys: Iterable[str]) -> list[str]:
        """Mark the keys seen; return the ones that were new. No await: atomic in asyncio."""
        now = self._clock()
        self._prune(now)
        fresh = [key for key in dict.fromkeys(keys) if key not in self._seen]
        for key in fresh:
            self._seen[key] = now
        return fresh

    def release(self, keys: Iterable[str]) -> None:
        """Forget keys whose work was refused after all, so a resend is not mistaken."""
        for key in keys:
            self._seen.pop(key, None)

    def _prune(self, now: float) -> None:
        while self._seen:
            key, seen_at = next(iter(self._seen.items()))
            if now - seen_at <= self._retention:
                break
            del self._seen[key]
