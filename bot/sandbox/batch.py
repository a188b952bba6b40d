"""The `batch` method (protocol notes §4.3): up to 50 calls, `$result[...]` references, `halt`."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

from bot.bitrix.form import unflatten_form
from bot.sandbox import operating, php
from bot.sandbox.portal import RestError
from bot.sandbox.rest import CallContext, call_method

MAX_BATCH: Final = 50


async def batch(ctx: CallContext, params: dict[str, Any]) -> Any:
    """Run each `cmd` entry in order as the same caller; per-call results and errors."""
    commands = params.get("cmd")
    if isinstance(commands, list):
        commands = {str(i): c for i, c in enumerate(commands)}
    if not isinstance(commands, dict) or not commands:
        raise RestError("ERROR_BATCH_EMPTY", "Batch is empty")
    halt = php.truthy(params.get("halt"))
    inner = dataclasses.replace(ctx, batch_of="batch")
    results: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    # Each call's own `time`, with its method's operating figures (§4.2). [UNCONFIRMED] that
    # result_time carries `operating`: the docs' example shows only start..date_finish.
    times: dict[str, Any] = {}
    for index, (key, command) in enumerate(commands.items()):
        if index >= MAX_BATCH:
            errors[key] = _failure("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
            continue
        method, _, query = str(command).partition("?")
        method = method.lower().removesuffix(".json")
        started = time.monotonic()
        try:
            decoded = unflatten_form(parse_qsl(query, keep_blank_values=True))
            call_params = rewrite_batch_syntax(decoded, {"result": results, "error": errors})
            results[key] = await _run(inner, method, call_params)
            duration = time.monotonic() - started
            times[key] = operating.time_block(ctx.portal, method, ctx.portal.now(), duration)
        except RestError as error:
            errors[key] = _failure(error.code, error.description)
            if error.time is not None:
                times[key] = error.time
            if halt:
                break
    return {
        "result": _php_table(results),
        "result_error": _php_table(errors),
        "result_total": [],
        "result_next": [],
        "result_time": _php_table(times),
    }


async def _run(ctx: CallContext, method: str, params: dict[str, Any]) -> Any:
    if method == "batch":  # nested batch is refused since rest 24.0.0
        raise RestError("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed", 405)
    fault = ctx.portal.take_fault(method, inside_batch=True)
    if fault is not None:
        code = fault.error or "INTERNAL_SERVER_ERROR"
        raise RestError(code, fault.description or code, fault.status or 500)
    return await call_method(ctx, method, params)


# CRestUtil::processBatchElement: `$` and a name of the batch's result tables, in any case,
# then everything up to the next whitespace, whose `[…]` segments are the path.
_BATCH_SYNTAX: Final = re.compile(r"\$(result|next|total|time|error)(\S*)", re.IGNORECASE)
_PATH_SEGMENT: Final = re.compile(r"\[([^\]]+)\]")


def rewrite_batch_syntax(value: Any, tables: Mapping[str, Any]) -> Any:
    """Rewrite batch syntax in every value of a decoded command, as Bitrix24 does (§4.3).

    It runs after the command's query is decoded, so percent-encoding protects nothing: a
    value that is nothing but a reference becomes the referenced value itself, whatever its
    type; inside longer text a string or number replaces the reference and anything else
    leaves it as it was.
    """
    if isinstance(value, dict):
        return {key: rewrite_batch_syntax(item, tables) for key, item in value.items()}
    if not isinstance(value, str):
        return value
    text: Any = value
    for match in _BATCH_SYNTAX.finditer(value):
        path = _PATH_SEGMENT.findall(match.group(2))
        if not path:
            continue
        found: Any = tables.get(match.group(1))  # looked up as typed: `$RESULT` finds nothing
        for step in path:
            if isinstance(found, Mapping) and step in found:
                found = found[step]
            elif isinstance(found, list) and step.isdigit() and int(step) < len(found):
                found = found[int(step)]
            else:
                break
        if match.group(0) == text:
            text = found
        elif isinstance(text, str) and isinstance(found, str | int | float):
            text = text.replace(match.group(0), str(found))
    return text


def _failure(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}


def _php_table(table: dict[str, Any]) -> Any:
    """PHP's json_encode writes an empty array, or one keyed 0..n-1, as a JSON list."""
    if list(table) == [str(i) for i in range(len(table))]:
        return list(table.values())
    return table
