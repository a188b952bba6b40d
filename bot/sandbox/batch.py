"""The `batch` method (protocol notes §4.3): up to 50 calls, `$result[...]` references, `halt`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, quote

from bot.bitrix.batch import RESULT_REFERENCE
from bot.bitrix.form import unflatten_form
from bot.sandbox import php
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
    for index, (key, command) in enumerate(commands.items()):
        if index >= MAX_BATCH:
            errors[key] = _failure("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
            continue
        method, _, query = str(command).partition("?")
        method = method.lower().removesuffix(".json")
        try:
            call_params = unflatten_form(
                parse_qsl(_substitute(query, results), keep_blank_values=True)
            )
            results[key] = await _run(inner, method, call_params)
        except RestError as error:
            errors[key] = _failure(error.code, error.description)
            if halt:
                break
    return {
        "result": _php_table(results),
        "result_error": _php_table(errors),
        "result_total": [],
        "result_next": [],
        "result_time": [],
    }


async def _run(ctx: CallContext, method: str, params: dict[str, Any]) -> Any:
    if method == "batch":  # nested batch is refused since rest 24.0.0
        raise RestError("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed", 405)
    return await call_method(ctx, method, params)


def _substitute(query: str, results: Mapping[str, Any]) -> str:
    """Replace `$result[key][field]…` by the (url-encoded) value from an earlier call."""

    def value_of(match: Any) -> str:
        path = [match.group(1), *[p.strip("[]") for p in match.group(0).split("]")[1:] if p]]
        value: Any = results
        for step in path:
            if isinstance(value, Mapping):
                value = value.get(step)
            elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            else:
                value = None
        return "" if value is None else quote(str(value), safe="")

    return RESULT_REFERENCE.sub(value_of, query)


def _failure(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}


def _php_table(table: dict[str, Any]) -> Any:
    """PHP's json_encode writes an empty array, or one keyed 0..n-1, as a JSON list."""
    if list(table) == [str(i) for i in range(len(table))]:
        return list(table.values())
    return table
