"""The sandbox's inspection answers: its plain-data state as JSON values."""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

from aiohttp import web

_dumps = functools.partial(json.dumps, ensure_ascii=False)


def jsonable(value: Any) -> Any:
    """Dataclasses, sets and tuples as JSON-friendly values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")
        }
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def answer(data: Any) -> web.Response:
    """An inspection answer, read by people in a terminal too (docs/sandbox.md): JSON with
    Cyrillic as itself, not \\u escapes."""
    return web.json_response(data, dumps=_dumps)
