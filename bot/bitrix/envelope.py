"""The REST envelope, `{"result", "time"}` or `{"error", "error_description"}` (protocol
notes §3.3), and the typed error for each error code (§3.4).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bot.errors import (
    BitrixAccessDenied,
    BitrixAuthError,
    BitrixBadResponse,
    BitrixError,
    BitrixMethodError,
    BitrixMethodNotFound,
    BitrixRateLimited,
    BitrixServerError,
)

# Error codes by class (protocol notes §3.4). Compared upper-cased: Bitrix24 writes some of
# them in lower case (expired_token).
_CODE_CLASSES: Final[Mapping[str, type[BitrixError]]] = {
    "QUERY_LIMIT_EXCEEDED": BitrixRateLimited,
    "OPERATION_TIME_LIMIT": BitrixRateLimited,
    "OVERLOAD_LIMIT": BitrixRateLimited,
    "EXPIRED_TOKEN": BitrixAuthError,
    "INVALID_TOKEN": BitrixAuthError,
    "NO_AUTH_FOUND": BitrixAuthError,
    "ACCESS_DENIED": BitrixAccessDenied,
    "INSUFFICIENT_SCOPE": BitrixAccessDenied,
    "INVALID_CREDENTIALS": BitrixAccessDenied,
    "USER_ACCESS_ERROR": BitrixAccessDenied,
    "WRONG_AUTH_TYPE": BitrixAccessDenied,
    "ERROR_METHOD_NOT_FOUND": BitrixMethodNotFound,
    "INTERNAL_SERVER_ERROR": BitrixServerError,
    "ERROR_UNEXPECTED_ANSWER": BitrixServerError,
}
_STATUS_CLASSES: Final[Mapping[int, type[BitrixError]]] = {
    401: BitrixAuthError,
    403: BitrixAccessDenied,
    404: BitrixMethodNotFound,
    429: BitrixRateLimited,
}


def classify_error(
    method: str, code: str, *, status: int | None, description: str = ""
) -> BitrixError:
    """The typed error for a Bitrix24 error code, falling back on the HTTP status."""
    cls = _CODE_CLASSES.get(code.upper())
    if cls is None and status is not None:
        cls = _STATUS_CLASSES.get(status, BitrixServerError if status >= 500 else None)  # noqa: PLR2004
    return (cls or BitrixMethodError)(method, code, status=status, description=description)


@dataclass(frozen=True)
class RestResponse:
    """A successful REST answer: `result` plus the envelope's extras."""

    result: Any
    time: Mapping[str, Any] = field(default_factory=dict)
    total: int | None = None
    next: int | None = None


def read_envelope(method: str, status: int, content_type: str, raw: bytes) -> RestResponse:
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        # Besides broken JSON (a ValueError): nesting deeper than the decoder's recursion
        # limit, and numbers longer than Python's 4300-digit limit for ints.
        raise BitrixBadResponse(method, status=status, content_type=content_type) from None
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        description = payload.get("error_description")
        error = classify_error(
            method,
            payload["error"],
            status=status,
            description=description if isinstance(description, str) else "",
        )
        if isinstance(payload.get("time"), dict):
            error.answer_time = payload["time"]
        raise error
    if status >= 500:  # noqa: PLR2004
        raise BitrixServerError(method, f"HTTP_{status}", status=status)
    if not isinstance(payload, dict) or "result" not in payload or status >= 300:  # noqa: PLR2004
        raise BitrixBadResponse(method, status=status, content_type=content_type)
    envelope_time = payload.get("time")
    return RestResponse(
        result=payload["result"],
        time=envelope_time if isinstance(envelope_time, dict) else {},
        total=payload.get("total") if isinstance(payload.get("total"), int) else None,
        next=payload.get("next") if isinstance(payload.get("next"), int) else None,
    )
