"""PHP's loose handling of request values, which the quirks of Bitrix24's methods depend on."""

from __future__ import annotations

import re
from typing import Any

_NUMERIC = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


def is_numeric(value: Any) -> bool:
    """PHP is_numeric for request values (strings and JSON numbers)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int | float) or (
        isinstance(value, str) and bool(_NUMERIC.match(value))
    )


def truthy(value: Any) -> bool:
    """PHP truthiness: "", "0", 0, null, empty arrays are false."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, dict | list):
        return bool(value)
    return True


def intval(value: Any) -> int:
    """PHP intval: leading digits of a string, 0 for anything unreadable."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        match = re.match(r"^\s*([+-]?\d+)", value)
        return int(match.group(1)) if match else 0
    return 0


def trim(value: Any) -> str:
    """PHP trim() of a scalar request value."""
    if value is None:
        return ""
    return str(value).strip(" \t\n\r\0\x0b")


def yes(value: Any) -> bool:
    """Bitrix24's Y/N flags."""
    return isinstance(value, str) and value.upper() == "Y"


def as_list(value: Any) -> Any:
    """A form-encoded PHP array keyed 0..n-1 is a list, as PHP's json_encode would write it."""
    if isinstance(value, dict):
        if list(value) == [str(i) for i in range(len(value))]:
            return [as_list(v) for v in value.values()]
        return {k: as_list(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_list(v) for v in value]
    return value
