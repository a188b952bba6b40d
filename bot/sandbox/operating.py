"""The operating-time limit (protocol notes §00 item 10, §4.2), as the sandbox models it.

Every call of a method adds its execution time to that method's account, kept in ten buckets
that together span the window (ten one-minute buckets on a real portal). A method whose live
buckets hold `operating_limit` seconds or more answers 429 OPERATION_TIME_LIMIT until its oldest
bucket drops out; other methods keep working. `batch` itself is not counted, its calls are.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Final

from bot.sandbox.portal import Portal, RestError

BUCKETS: Final = 10
UNCOUNTED: Final = frozenset({"batch"})


def check(portal: Portal, method: str) -> None:
    """Refuse a call of a method whose budget is spent."""
    if method in UNCOUNTED:
        return
    used, _ = figures(portal, method)
    if used >= portal.operating_limit:
        now = portal.now()
        raise RestError(
            "OPERATION_TIME_LIMIT",
            # [UNCONFIRMED] the exact wording; the code and the status are documented.
            "Method is blocked due to operation time limit.",
            429,
            time=time_block(portal, method, now, 0.0),
        )


def charge(portal: Portal, method: str, duration: float) -> None:
    """Count one call: its configured cost, or the time it really took."""
    if method in UNCOUNTED:
        return
    cost = portal.operating_cost.get(method, duration)
    buckets = portal.operating.setdefault(method, {})
    index = _bucket(portal, portal.now())
    buckets[index] = buckets.get(index, 0.0) + cost


def figures(portal: Portal, method: str) -> tuple[float, float]:
    """(seconds used in the window, when the oldest live bucket drops out), as `time` says."""
    current = _bucket(portal, portal.now())
    buckets = portal.operating.get(method, {})
    for index in [i for i in buckets if i <= current - BUCKETS]:
        del buckets[index]
    oldest = min(buckets, default=current)
    return sum(buckets.values()), (oldest + BUCKETS) * _bucket_length(portal)


def time_block(portal: Portal, method: str, finish: float, duration: float) -> dict[str, Any]:
    """The `time` of an answer (§3.3), with the method's operating figures."""
    used, reset_at = figures(portal, method)
    return {
        "start": finish - duration,
        "finish": finish,
        "duration": duration,
        "processing": duration,
        "date_start": _iso(finish - duration),
        "date_finish": _iso(finish),
        # A real portal answers a whole second; a time-scaled sandbox needs the fraction.
        "operating_reset_at": round(reset_at, 3),
        "operating": round(used, 6),
    }


def _bucket_length(portal: Portal) -> float:
    return portal.operating_window / BUCKETS


def _bucket(portal: Portal, when: float) -> int:
    return math.floor(when / _bucket_length(portal))


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="seconds")
