"""`batch`: up to 50 calls in one request, counted once by the rate limit (protocol notes §4.3)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bot.bitrix.envelope import classify_error
from bot.bitrix.form import encode_query, flatten_form
from bot.errors import BitrixError, BitrixMethodError

MAX_BATCH: Final = 50

# `$result[key]` optionally followed by `[field]…`: Bitrix24 substitutes it before reading the
# call's parameters, so it must reach the portal unencoded.
RESULT_REFERENCE: Final = re.compile(r"\$result\[([^\[\]]+)\](?:\[[^\[\]]*\])*")


@dataclass(frozen=True)
class BatchCall:
    """One call inside a batch: a key to find its result by, a method and its parameters."""

    key: str
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class BatchResult:
    """Per-call results and per-call errors, by call key."""

    calls: Mapping[str, BatchCall]
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, BitrixError] = field(default_factory=dict)

    def value(self, key: str) -> Any:
        """The result of one call; its error raised if it failed or was never run."""
        if key in self.errors:
            raise self.errors[key]
        if key in self.results:
            return self.results[key]
        raise BitrixMethodError(self.calls[key].method, "NOT_EXECUTED")


def command_text(call: BatchCall, chunk: Sequence[BatchCall]) -> str:
    """`method?KEY=value&…` as `batch` expects it in `cmd`."""
    earlier = {c.key for c in chunk[: chunk.index(call)]}
    params = {key.upper(): value for key, value in call.params.items()}
    for _, value in flatten_form(params):
        for ref in RESULT_REFERENCE.finditer(value):
            if ref.group(1) not in earlier:
                raise ValueError(
                    f"batch call {call.key!r} refers to {ref.group(1)!r}, which is not an "
                    "earlier call of the same request of 50"
                )
    query = encode_query(params, raw_values=RESULT_REFERENCE)
    return f"{call.method}?{query}" if query else call.method


def read_batch(result: Any, chunk: Sequence[BatchCall], outcome: BatchResult) -> None:
    """Fold one `batch` answer into `outcome`."""
    inner = result if isinstance(result, Mapping) else {}
    # PHP writes an empty table as [] and a table with keys 0..n-1 as a list.
    values = _as_table(inner.get("result"))
    failures = _as_table(inner.get("result_error"))
    for call in chunk:
        if call.key in failures:
            failure = failures[call.key]
            failure = failure if isinstance(failure, Mapping) else {}
            outcome.errors[call.key] = classify_error(
                call.method,
                str(failure.get("error", "UNKNOWN")),
                status=None,
                description=str(failure.get("error_description", "")),
            )
        elif call.key in values:
            outcome.results[call.key] = values[call.key]


def _as_table(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}
