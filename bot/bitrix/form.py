"""PHP-style form encoding, the way Bitrix24 writes and reads it (`http_build_query`, `parse_str`).

Bitrix24 posts every event as `application/x-www-form-urlencoded` with nested keys such as
`data[COMMAND][103][COMMAND_PARAMS]` and every value a string (protocol notes §1.1); batch
commands carry their parameters the same way (§4.3). Unlike the official SDK's parser we keep
numeric segments as dictionary keys: `data[BOT][567]` is a bot id, not index 567 of a list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from bot.errors import BotError

# Deeper nesting than any Bitrix24 event uses is refused rather than built: a hostile body
# could otherwise make us allocate and walk absurd structures.
MAX_DEPTH = 12

Form = dict[str, Any]  # values are str or Form

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


class FormError(BotError):
    """A form body we refuse to decode (absurd nesting, a scalar and a table under one key)."""


def unflatten_form(pairs: Iterable[tuple[str, str]]) -> Form:
    """Nest flat `a[b][c]=v` pairs into dictionaries; later pairs win, like PHP's parse_str.

    `a[]=x` appends under the next free integer key, as PHP does; a key that is not of the
    bracket shape at all (`a]b`) is kept as it is.
    """
    result: Form = {}
    for key, value in pairs:
        path = _split_key(key)
        if len(path) > MAX_DEPTH:
            raise FormError(f"form key nested deeper than {MAX_DEPTH} levels")
        _store(result, path, value)
    return result


def _split_key(key: str) -> list[str | None]:
    match = _KEY.match(key)
    if match is None:
        return [key]
    segments: list[str | None] = [match.group(1)]
    segments += [s or None for s in _SEGMENT.findall(match.group(2))]
    return segments


def _store(table: Form, path: list[str | None], value: str) -> None:
    for depth, segment in enumerate(path):
        key = _next_index(table) if segment is None else segment
        if depth == len(path) - 1:
            table[key] = value
            return
        child = table.get(key)
        if not isinstance(child, dict):
            # PHP replaces a scalar by a table when a deeper key arrives; so do we.
            child = table[key] = {}
        table = child


def _next_index(table: Form) -> str:
    numeric = [int(k) for k in table if k.isdigit()]
    return str(max(numeric) + 1 if numeric else 0)


def flatten_form(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Flatten nested data into `a[b][c]` pairs with string values, as `http_build_query`.

    Lists become integer keys, booleans "1"/"0", None and empty tables are left out (PHP
    drops them too).
    """
    return [(key, form_scalar(value)) for key, value in form_leaves(data)]


def form_leaves(data: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The leaves of nested data under their `a[b][c]` keys, values as they are (no None)."""
    pairs: list[tuple[str, Any]] = []
    for key, value in data.items():
        _flatten(str(key), value, pairs)
    return pairs


def form_scalar(value: Any) -> str:
    """A leaf as PHP writes it in a form: booleans "1"/"0", anything else as text."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _flatten(prefix: str, value: Any, pairs: list[tuple[str, Any]]) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}[{key}]", item, pairs)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _flatten(f"{prefix}[{index}]", item, pairs)
    else:
        pairs.append((prefix, value))


def encode_query(
    data: Mapping[str, Any], *, verbatim: Callable[[Any], str | None] = lambda _: None
) -> str:
    """`http_build_query`: percent-encoded `key=value` pairs joined by `&`.

    A leaf for which `verbatim` returns text is written as that text, unencoded: batch builds
    its `$result[...]` references so (protocol notes §4.3); no string is ever looked into.
    """
    parts = []
    for key, value in form_leaves(data):
        raw = verbatim(value)
        encoded = raw if raw is not None else quote(form_scalar(value), safe="")
        parts.append(f"{quote(key, safe='[]')}={encoded}")
    return "&".join(parts)
