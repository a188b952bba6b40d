"""`batch`: up to 50 calls in one request, counted once by the rate limit (protocol notes §4.3).

References between calls are values our code builds (`BatchRef`), never text: no string is
ever looked into for `$result[...]`. And since Bitrix24 itself rewrites batch syntax inside
every value of a batch command, a call carrying a `$` in its text is not sent through batch
at all (`needs_direct`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bot.bitrix.envelope import classify_error
from bot.bitrix.form import encode_query, form_leaves
from bot.errors import BitrixError, BitrixMethodError

MAX_BATCH: Final = 50

# What a reference may name: our own call keys and result fields, nothing that could end the
# reference early or start another parameter.
_NAME: Final = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class BatchRef:
    """`$result[key][field]…`: a value taken from an earlier call's result by Bitrix24.

    Only our code builds these; user text is a plain string and stays one.
    """

    key: str
    fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not all(_NAME.fullmatch(name) for name in (self.key, *self.fields)):
            raise ValueError(f"a batch reference names keys and fields in [A-Za-z0-9_]: {self}")

    def render(self) -> str:
        return "$result" + "".join(f"[{name}]" for name in (self.key, *self.fields))

    def pick(self, result: Any) -> Any:
        """The referenced value within the result of call `key`; None where it has no such
        field (the parameter is then left out, as Bitrix24 sends no usable value either)."""
        value = result
        for name in self.fields:
            if isinstance(value, Mapping) and name in value:
                value = value[name]
            elif isinstance(value, list) and name.isdigit() and int(name) < len(value):
                value = value[int(name)]
            else:
                return None
        return value


@dataclass(frozen=True)
class BatchCall:
    """One call inside a batch: a key to find its result by, a method and its parameters."""

    key: str
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def references(self) -> list[BatchRef]:
        return [value for _, value in form_leaves(self.params) if isinstance(value, BatchRef)]

    def with_params(self, params: Mapping[str, Any]) -> BatchCall:
        return BatchCall(self.key, self.method, params)


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


def needs_direct(call: BatchCall) -> bool:
    """Whether the call must go as its own request rather than inside `batch`.

    Bitrix24 decodes each batch command and then rewrites `$result[…]`, `$error[…]`,
    `$total[…]`, `$next[…]`, `$time[…]` (any case, so `$result_error[…]` too) in every value,
    and `$…[…]` in a key (`CRestUtil::processBatchStructure`/`processBatchElement`, rest
    module 2026; the docs show `$result[…]` only): percent-encoding does not protect text.
    So any `$` in a key or a text value keeps the call out of batch: a wider net than the
    platform's pattern, which is built from its result tables and has grown before.
    """
    return any(
        "$" in key or (isinstance(value, str) and "$" in value)
        for key, value in form_leaves(call.params)
    )


def map_references(params: Mapping[str, Any], replace: Callable[[BatchRef], Any]) -> Any:
    """The parameters with every reference replaced by `replace(ref)`."""

    def walk(value: Any) -> Any:
        if isinstance(value, BatchRef):
            return replace(value)
        if isinstance(value, Mapping):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [walk(item) for item in value]
        return value

    return walk(params)


def resolve_references(
    call: BatchCall, outcome: BatchResult, pending: Collection[str] = ()
) -> BatchCall:
    """The call with its references to calls already run replaced by their values.

    References to `pending` calls (earlier in the request being built) stay. Raises
    NOT_EXECUTED when a referenced call failed or never ran, so the call is not made either.
    """

    def value_of(ref: BatchRef) -> Any:
        if ref.key in pending:
            return ref
        if ref.key in outcome.results:
            return ref.pick(outcome.results[ref.key])
        if ref.key in outcome.errors:
            raise BitrixMethodError(call.method, "NOT_EXECUTED")
        raise ValueError(f"batch call {call.key!r} refers to {ref.key!r}, not an earlier call")

    return call.with_params(map_references(call.params, value_of))


def command_text(call: BatchCall, chunk: Sequence[BatchCall]) -> str:
    """`method?KEY=value&…` as `batch` expects it in `cmd`; references rendered as written."""
    earlier = {c.key for c in chunk[: chunk.index(call)]}
    for ref in call.references():
        if ref.key not in earlier:
            # Our own code built this reference: a bug, not bad input.
            raise ValueError(
                f"batch call {call.key!r} refers to {ref.key!r}, which is not an earlier call "
                "of the same request"
            )
    query = encode_query(wire_params(call.method, call.params), verbatim=_rendered)
    return f"{call.method}?{query}" if query else call.method


def wire_params(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters as a method reads them. v1 methods read their keys case-sensitively in
    upper case (protocol notes §3.2); Chatbots 2.0 methods (`imbot.v2.*`, and every `*.v2.*`
    alike) bind their camelCase names (`botId`, `botToken`, `fields`) as documented, so those
    go as given."""
    if ".v2." in method.lower():
        return dict(params)
    return {key.upper(): value for key, value in params.items()}


def _rendered(value: Any) -> str | None:
    return value.render() if isinstance(value, BatchRef) else None


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


def call_time(result: Any, key: str) -> tuple[Mapping[str, Any], str | None]:
    """One call's `time` from a `batch` answer (`result_time`), and its error code if it
    failed: what the operating-time budget learns from it (§4.2, §4.3)."""
    inner = result if isinstance(result, Mapping) else {}
    answer_time = _as_table(inner.get("result_time")).get(key)
    failure = _as_table(inner.get("result_error")).get(key)
    code = failure.get("error") if isinstance(failure, Mapping) else None
    return (
        answer_time if isinstance(answer_time, Mapping) else {},
        str(code) if code is not None else None,
    )
