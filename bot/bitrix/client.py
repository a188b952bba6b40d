"""The only code that speaks HTTP to Bitrix24: auth, the envelope, typed errors, both limits
(the leaky bucket and the per-method operating time), bounded retries and `batch`.

Written here rather than taken from a library: the async ones drop the 4xx error body the bot
must interpret, or own their session and print progress bars; the official SDK is synchronous
(ecosystem notes §0-§1). Rate limiting and retries are libraries (aiolimiter, tenacity).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiolimiter import AsyncLimiter
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from bot.bitrix.batch import (
    MAX_BATCH,
    BatchCall,
    BatchResult,
    call_time,
    command_text,
    needs_direct,
    read_batch,
    resolve_references,
    wire_params,
)
from bot.bitrix.envelope import RestResponse, read_envelope
from bot.bitrix.operating import LIMIT, WINDOW, OperatingBudget
from bot.config import is_loopback_host
from bot.errors import BitrixError, BitrixUnavailable
from bot.usage import count_rest_request

log = structlog.get_logger(__name__)
# Fetch mode's poll (bot/bitrix/fetch.py imports this module, so the name is spelled here).
_EVENT_GET: Final = "imbot.v2.event.get"

USER_AGENT: Final = "openline-rating-bot/0.1"
OPERATION_TIME_LIMIT: Final = "OPERATION_TIME_LIMIT"
DEFAULT_TIMEOUT: Final = aiohttp.ClientTimeout(total=30, connect=5)


def _check_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return url
    if parts.scheme != "https" or not parts.hostname:
        # The URL itself is not in the message: it may hold a webhook code.
        raise ValueError("Bitrix24 URLs must be https (plain http only for loopback hosts)")
    return url


class RestAuth(Protocol):
    """How a call is addressed and authorised."""

    @property
    def portal(self) -> str:
        """The portal's host: the key of its rate limit."""
        ...

    def url_for(self, method: str) -> str: ...

    def auth_params(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class WebhookAuth:
    """An incoming webhook `https://portal/rest/<user>/<code>/`: the code is in the path."""

    base_url: SecretStr

    def __post_init__(self) -> None:
        _check_base_url(self.base_url.get_secret_value())

    @property
    def portal(self) -> str:
        return urlsplit(self.base_url.get_secret_value()).netloc

    def url_for(self, method: str) -> str:
        return f"{self.base_url.get_secret_value().rstrip('/')}/{method}"

    def auth_params(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class TokenAuth:
    """An OAuth access token used against a pinned `client_endpoint` (`https://portal/rest/`).

    The endpoint is the one stored when the application was installed, never one taken from
    an incoming event.
    """

    client_endpoint: str
    access_token: SecretStr

    def __post_init__(self) -> None:
        _check_base_url(self.client_endpoint)

    @property
    def portal(self) -> str:
        return urlsplit(self.client_endpoint).netloc

    def url_for(self, method: str) -> str:
        return f"{self.client_endpoint.rstrip('/')}/{method}"

    def auth_params(self) -> dict[str, str]:
        return {"auth": self.access_token.get_secret_value()}


class RestObserver(Protocol):
    """Told about every HTTP request (metrics); `outcome` is "ok" or an error code."""

    def rest_call(self, method: str, outcome: str, waited: float) -> None: ...


class PortalLimiters:
    """One leaky bucket per portal, shared by every call to it (protocol notes §4.1), and one
    operating-time budget per portal (§4.2).

    Bitrix24 counts requests per portal and source address: X requests before blocking,
    draining Y per second. aiolimiter's AsyncLimiter is exactly that bucket.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        operating_limit: float = LIMIT,
        operating_window: float = WINDOW,
    ) -> None:
        self.operating_limit = operating_limit
        self.operating_window = operating_window
        self._budgets: dict[str, OperatingBudget] = {}
        self.rate = rate
        # Headroom: requests let through together may reach the portal later and in another
        # order than they left, which can tip a bucket filled to the brim into a 503. Keeping
        # 100 ms' worth of drain (at least one request) free absorbs that jitter.
        self.capacity = max(1, burst - max(1, math.ceil(rate * 0.1)))
        self._buckets: dict[str, AsyncLimiter] = {}

    def for_portal(self, portal: str) -> AsyncLimiter:
        bucket = self._buckets.get(portal)
        if bucket is None:
            bucket = AsyncLimiter(self.capacity, self.capacity / self.rate)
            self._buckets[portal] = bucket
        return bucket

    def operating_for(self, portal: str) -> OperatingBudget:
        budget = self._budgets.get(portal)
        if budget is None:
            budget = OperatingBudget(limit=self.operating_limit, window=self.operating_window)
            self._budgets[portal] = budget
        return budget


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter, for retryable errors only."""

    attempts: int = 5
    deadline: float = 30.0  # seconds, across all attempts
    initial_wait: float = 0.5
    max_wait: float = 8.0


class BitrixClient:
    """Calls Bitrix24 REST methods for one portal through one shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        auth: RestAuth,
        limiters: PortalLimiters,
        *,
        retry: RetryPolicy | None = None,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        observer: RestObserver | None = None,
    ) -> None:
        self._observer = observer
        self._session = session
        self._auth = auth
        self._limiter = limiters.for_portal(auth.portal)
        self._budget = limiters.operating_for(auth.portal)
        self._retry = retry or RetryPolicy()
        self._timeout = timeout

    def acting_as(self, auth: TokenAuth) -> BitrixClient:
        """A client for the same portal acting under `auth` (a supervisor's own token):
        the same session, the same leaky bucket and operating budget (both limits are per
        portal, §00 item 10), the same retries."""
        if auth.portal != self._auth.portal:
            raise ValueError("a token of another portal")
        sibling = copy.copy(self)
        sibling._auth = auth  # noqa: SLF001 - the copy is ours
        return sibling

    @property
    def auth(self) -> RestAuth:
        """How this client's calls are authorised: the key the coalescer groups calls by."""
        return self._auth

    @property
    def limiter(self) -> AsyncLimiter:
        """The portal's leaky bucket this client waits on."""
        return self._limiter

    @property
    def budget(self) -> OperatingBudget:
        """The portal's operating-time budget this client waits on."""
        return self._budget

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call a method and return its `result`; raise a `BitrixError` subclass on failure."""
        return (await self.call_full(method, params)).result

    async def call_full(
        self, method: str, params: Mapping[str, Any] | None = None
    ) -> RestResponse:
        """Call a method and return the whole envelope (`time`, `total`, `next`)."""
        return await self._with_retries(method, wire_params(method, params or {}))

    async def batch(self, calls: Sequence[BatchCall], *, halt: bool = False) -> BatchResult:
        """Run calls in order, through `batch` 50 per request; per-call results and errors.

        A call with a `$` in its text goes as a request of its own (`needs_direct`), between
        the batch requests of the calls around it. A reference to a call of an earlier request
        is filled in here with that call's value. With `halt`, no call after a failed one is
        made.
        """
        keys = [call.key for call in calls]
        if len(set(keys)) != len(keys):
            raise ValueError("batch call keys must be unique")
        outcome = BatchResult(calls={call.key: call for call in calls})
        chunk: list[BatchCall] = []
        for call in calls:
            if len(chunk) == MAX_BATCH:
                chunk = await self._send_chunk(chunk, outcome, halt=halt)
            if halt and outcome.errors:
                return outcome
            ready = self._resolve(call, outcome, pending=[c.key for c in chunk])
            if ready is not None and needs_direct(ready):
                chunk = await self._send_chunk(chunk, outcome, halt=halt)
                ready = None if halt and outcome.errors else self._resolve(call, outcome)
                if ready is not None:
                    await self._call_direct(ready, outcome)
            elif ready is not None:
                chunk.append(ready)
        await self._send_chunk(chunk, outcome, halt=halt)
        return outcome

    @staticmethod
    def _resolve(
        call: BatchCall, outcome: BatchResult, pending: Sequence[str] = ()
    ) -> BatchCall | None:
        try:
            return resolve_references(call, outcome, pending)
        except BitrixError as error:
            outcome.errors[call.key] = error
            return None

    async def _send_chunk(
        self, chunk: list[BatchCall], outcome: BatchResult, *, halt: bool
    ) -> list[BatchCall]:
        """One `batch` request for the calls of `chunk`; the next, empty chunk."""
        if chunk:
            body = {
                "halt": 1 if halt else 0,
                "cmd": {c.key: command_text(c, chunk) for c in chunk},
            }
            response = await self._with_retries("batch", body, chunk)
            read_batch(response.result, chunk, outcome)
        return []

    async def _call_direct(self, call: BatchCall, outcome: BatchResult) -> None:
        """A call outside batch, its failure kept as its own; a passing failure of the portal
        fails the whole batch, as it would have failed a batch request."""
        try:
            outcome.results[call.key] = await self.call(call.method, call.params)
        except BitrixError as error:
            if error.retryable:
                raise
            outcome.errors[call.key] = error

    async def _with_retries(
        self, method: str, body: dict[str, Any], chunk: Sequence[BatchCall] | None = None
    ) -> RestResponse:
        policy = self._retry
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.deadline),
            wait=wait_exponential_jitter(
                multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.initial_wait
            ),
            retry=retry_if_exception(lambda e: isinstance(e, BitrixError) and e.retryable),
            before_sleep=_log_retry,
            reraise=True,
        )
        response: RestResponse = await retrying(self._post_once, method, body, chunk)
        return response

    async def _post_once(
        self, method: str, body: dict[str, Any], chunk: Sequence[BatchCall] | None
    ) -> RestResponse:
        # A batch is not counted against operating time; each of its calls is (§4.3).
        counted = [call.method for call in chunk] if chunk is not None else [method]
        await self._budget.acquire(counted)
        try:
            response = await self._post_counted(method, body, quiet=_only_polls(counted))
        except BitrixError as error:
            if error.code.upper() == OPERATION_TIME_LIMIT:
                for name in counted:
                    self._budget.block(name, error.answer_time)
            raise
        else:
            self._learn_operating(method, response, chunk)
            return response
        finally:
            self._budget.release(counted)

    def _learn_operating(
        self, method: str, response: RestResponse, chunk: Sequence[BatchCall] | None
    ) -> None:
        if chunk is None:
            self._budget.observe(method, response.time)
            return
        for call in chunk:
            answer_time, code = call_time(response.result, call.key)
            if code is not None and code.upper() == OPERATION_TIME_LIMIT:
                self._budget.block(call.method, answer_time)
            else:
                self._budget.observe(call.method, answer_time)

    async def _post_counted(
        self, method: str, body: dict[str, Any], *, quiet: bool = False
    ) -> RestResponse:
        queued = time.monotonic()
        await self._limiter.acquire()
        count_rest_request()
        started = time.monotonic()
        outcome = "ok"
        try:
            return await self._send(method, body, started, quiet=quiet)
        except BitrixError as error:
            outcome = error.code
            raise
        finally:
            if self._observer is not None:
                self._observer.rest_call(method, outcome, started - queued)

    async def _send(
        self, method: str, body: dict[str, Any], started: float, *, quiet: bool = False
    ) -> RestResponse:
        status: int | None = None
        try:
            async with self._session.post(
                self._auth.url_for(method),
                json={**body, **self._auth.auth_params()},
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                timeout=self._timeout,
            ) as answer:
                status = answer.status
                raw = await answer.read()
                content_type = answer.content_type
            response = read_envelope(method, status, content_type, raw)
        except BitrixError as error:
            _log_call(method, status, started, outcome=error.code)
            raise
        except TimeoutError:
            _log_call(method, status, started, outcome="TIMEOUT")
            # `from None`: a chained aiohttp error may quote the URL, which holds the code.
            raise BitrixUnavailable(method, reason="TIMEOUT") from None
        except aiohttp.ClientError as error:
            _log_call(method, status, started, outcome=type(error).__name__)
            raise BitrixUnavailable(method, reason=type(error).__name__) from None
        operating = response.time.get("operating")
        _log_call(method, status, started, outcome="ok", operating=operating, quiet=quiet)
        return response


def _only_polls(methods: Sequence[str]) -> bool:
    """A request of fetch mode's Event.get alone: an idle service sends one every 2 s."""
    return bool(methods) and all(m.lower() == _EVENT_GET for m in methods)


def _log_call(
    method: str,
    status: int | None,
    started: float,
    *,
    outcome: str,
    operating: Any = None,
    quiet: bool = False,
) -> None:
    # A successful poll is logged at debug; its failures, like every other call, at info.
    emit = log.debug if quiet and outcome == "ok" else log.info
    emit(
        "bitrix.call",
        method=method,
        status=status,
        outcome=outcome,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        # Seconds this method has used of its per-method budget (480 s per 10 min, §4.2).
        operating=operating,
    )


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "bitrix.retry",
        method=error.method if isinstance(error, BitrixError) else None,
        code=error.code if isinstance(error, BitrixError) else None,
        attempt=state.attempt_number,
        wait_s=round(state.upcoming_sleep, 2),
    )
