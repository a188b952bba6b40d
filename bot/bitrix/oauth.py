"""The OAuth 2.0 client of application mode (issue 12): a code for a pair, a refresh token for a
new pair, both at a pinned OAuth server only (settings/oauth/index.md, auto-renewal.md;
protocol notes §5).

Nothing here stores, retries or decides: the caller (the link flow, the token store) does. Two
rules are kept here because no caller may forget them:

- The client secret and a code go only to a server of B24_OAUTH_SERVER. A callback's
  `server_domain` comes from a browser, so it only *selects* among the pinned servers; one that
  names none is refused before any request is made.
- Neither a code nor a refresh token is sent twice. A code lives 30 s and is single-use, and
  refresh tokens may be single-use (§5: "28 days or until first use" in the older docs; after a
  refresh the old pair is dead). A request whose answer was lost may have spent either, so it
  raises `OAuthOutcomeUnknown` instead of trying again.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import structlog
from pydantic import BaseModel, ConfigDict, SecretStr

from bot.config import PinnedServer, is_loopback_host
from bot.errors import (
    OAuthBadAnswer,
    OAuthError,
    OAuthInvalidClient,
    OAuthInvalidGrant,
    OAuthInvalidRequest,
    OAuthInvalidScope,
    OAuthOutcomeUnknown,
    OAuthPaymentRequired,
    OAuthRefused,
    OAuthServerNotPinned,
    OAuthUnavailable,
)

log = structlog.get_logger(__name__)

TOKEN_PATH: Final = "/oauth/token/"  # noqa: S105 - a path, not a secret
# A token request is one small answer; the code it carries is dead after 30 s anyway.
DEFAULT_TIMEOUT: Final = aiohttp.ClientTimeout(total=15, connect=5)
_MAX_ANSWER: Final = 64 * 1024  # a token answer is a few hundred bytes
_MAX_TOKEN: Final = 512
_DIGITS: Final = re.compile(r"[0-9]{1,12}")
_ERRORS: Final[Mapping[str, type[OAuthError]]] = {
    "invalid_grant": OAuthInvalidGrant,
    "invalid_client": OAuthInvalidClient,
    "invalid_request": OAuthInvalidRequest,
    "invalid_scope": OAuthInvalidScope,
    "insufficient_scope": OAuthInvalidScope,
    "PAYMENT_REQUIRED": OAuthPaymentRequired,
}


class TokenGrant(BaseModel):
    """A pair the OAuth server issued, parsed once at the boundary.

    `server` is the pinned server's base URL the pair came from: its refresh goes there too.
    `user_id` is the portal user the pair acts as, when the answer names one (the docs'
    examples omit it; protocol notes §5 lists it): the link flow confirms it with user.current.
    """

    model_config = ConfigDict(frozen=True)

    access_token: SecretStr
    refresh_token: SecretStr
    expires_at: datetime
    member_id: str
    user_id: int | None
    client_endpoint: str
    scope: frozenset[str]
    server: str


class OAuthClient:
    """Exchanges codes and refresh tokens at the pinned servers, for one application."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        client_id: str,
        client_secret: SecretStr,
        servers: Sequence[PinnedServer],
        *,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    ) -> None:
        self._session = session
        self._client_id = client_id
        self._client_secret = client_secret
        self._servers = tuple(servers)
        self._timeout = timeout

    def server_named(self, server_domain: str) -> PinnedServer:
        """The pinned server a callback's `server_domain` names; else OAuthServerNotPinned."""
        for server in self._servers:
            if server.is_named_by(server_domain):
                return server
        raise OAuthServerNotPinned

    async def exchange_code(self, code: str, server_domain: str) -> TokenGrant:
        """The first pair for a code from a callback. Never retried: the code is single-use."""
        server = self.server_named(server_domain)  # before anything is sent
        params = {"grant_type": "authorization_code", "code": code}
        return await self._ask(server, params)

    async def refresh(self, refresh_token: SecretStr, server: str) -> TokenGrant:
        """A new pair for a stored refresh token, at the server (base URL) its pair came from.

        Never retried here: on `OAuthOutcomeUnknown` the old refresh token may already be spent
        (§5), so the caller decides what to do, rather than a loop spending it twice.
        """
        pinned = next((s for s in self._servers if s.base_url == server), None)
        if pinned is None:  # a pair from a server no longer pinned: not sent anywhere
            raise OAuthServerNotPinned
        params = {"grant_type": "refresh_token", "refresh_token": refresh_token.get_secret_value()}
        return await self._ask(pinned, params)

    async def _ask(self, server: PinnedServer, params: dict[str, str]) -> TokenGrant:
        # GET with the secret in the query, as the docs show the request (index.md,
        # auto-renewal.md): that is the interface oauth.bitrix.info documents. The URL is
        # therefore a secret: no log line of ours prints it (only the server and the outcome),
        # and errors are raised `from None`, since an aiohttp error may quote the URL.
        query = {
            **params,
            "client_id": self._client_id,
            "client_secret": self._client_secret.get_secret_value(),
        }
        grant_type = params["grant_type"]
        started = time.monotonic()
        status: int | None = None
        try:
            async with self._session.get(
                server.base_url + TOKEN_PATH,
                params=query,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,  # a redirect would carry the secret to another URL
            ) as answer:
                status = answer.status
                raw = await _read_bounded(answer)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            # No connection was made (DNS, refused, connect timeout): nothing was delivered.
            _log_ask(server, grant_type, status, started, "UNREACHABLE")
            raise OAuthUnavailable("UNREACHABLE") from None
        except (TimeoutError, aiohttp.ClientError) as error:
            outcome = "TIMEOUT" if isinstance(error, TimeoutError) else type(error).__name__
            _log_ask(server, grant_type, status, started, outcome)
            raise OAuthOutcomeUnknown(outcome, status=status) from None
        try:
            grant = parse_token_answer(status, raw, server=server.base_url)
        except OAuthError as error:
            _log_ask(server, grant_type, status, started, error.code)
            raise
        _log_ask(server, grant_type, status, started, "ok", user_id=grant.user_id)
        return grant


async def _read_bounded(answer: aiohttp.ClientResponse) -> bytes:
    """The body, or its first `_MAX_ANSWER` + 1 bytes: enough to tell it is too long."""
    raw = bytearray()
    async for chunk in answer.content.iter_chunked(8192):
        raw += chunk
        if len(raw) > _MAX_ANSWER:
            break
    return bytes(raw)


def parse_token_answer(status: int, raw: bytes, *, server: str) -> TokenGrant:
    """The OAuth server's answer as a TokenGrant, or the typed error it stands for.

    Total: whatever the bytes, the result is a TokenGrant or an OAuthError.
    """
    if len(raw) > _MAX_ANSWER:
        raise OAuthBadAnswer(status=status, reason="answer too long")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = None
    if not isinstance(body, dict):
        if status >= 500:  # noqa: PLR2004 - a gateway's page: the request may have run
            raise OAuthOutcomeUnknown("SERVER_ERROR", status=status)
        raise OAuthBadAnswer(status=status, reason="not a JSON object")
    error = body.get("error")
    if error is not None:
        code = error if isinstance(error, str) and error else "UNKNOWN"
        description = body.get("error_description")
        kind = _ERRORS.get(code, OAuthRefused)
        raise kind(
            code[:100],
            status=status,
            description=description[:500] if isinstance(description, str) else "",
        )
    if status >= 500:  # noqa: PLR2004
        raise OAuthOutcomeUnknown("SERVER_ERROR", status=status)
    return _grant(body, status, server)


def _grant(body: dict[str, Any], status: int, server: str) -> TokenGrant:
    def bad(reason: str) -> OAuthBadAnswer:
        return OAuthBadAnswer(status=status, reason=reason)

    access, refresh = body.get("access_token"), body.get("refresh_token")
    if not _is_token(access) or not _is_token(refresh):
        raise bad("no access_token or refresh_token")
    member_id = body.get("member_id")
    if not isinstance(member_id, str) or not member_id or len(member_id) > _MAX_TOKEN:
        raise bad("no member_id")
    endpoint = body.get("client_endpoint")
    if not isinstance(endpoint, str) or not _is_rest_endpoint(endpoint):
        raise bad("no https client_endpoint")
    scope = body.get("scope", "")
    if not isinstance(scope, str):
        raise bad("scope is not a string")
    return TokenGrant(
        access_token=SecretStr(str(access)),
        refresh_token=SecretStr(str(refresh)),
        expires_at=_expires_at(body, bad),
        member_id=member_id,
        user_id=_user_id(body.get("user_id"), bad),
        client_endpoint=endpoint,
        scope=frozenset(s.strip() for s in scope.split(",") if s.strip()),
        server=server,
    )


def _is_token(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_TOKEN and value.isprintable()


def _is_rest_endpoint(url: str) -> bool:
    """`https://<portal>/rest/`: the access token is sent there, so plain http only on
    loopback (the sandbox), as for the webhook URL."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if not host or parts.username or parts.password or parts.query or parts.fragment:
        return False
    secure = parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))
    return secure and parts.path.endswith("/rest/")


# Beyond any real expiry (an access token lives an hour): a wilder value is garbage.
_LATEST: Final = datetime(9999, 1, 1, tzinfo=UTC).timestamp()


def _expires_at(body: dict[str, Any], bad: Any) -> datetime:
    """`expires` (unix time) when given, else now + `expires_in` (3600 in the docs)."""
    expires, expires_in = _number(body.get("expires")), _number(body.get("expires_in"))
    if expires is not None and 0 < expires < _LATEST:
        return datetime.fromtimestamp(expires, UTC)
    if expires_in is not None and 0 < expires_in < _LATEST - time.time():
        return datetime.fromtimestamp(time.time() + expires_in, UTC)
    raise bad("no expires or expires_in")


def _number(value: object) -> float | None:
    """A JSON number, or digits in a string (PHP may send either); None for anything else."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53:
        return float(value)
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _user_id(value: object, bad: Any) -> int | None:
    if value is None:
        return None
    number = _number(value)
    if number is None or not number.is_integer() or not 0 < number < 2**31:
        raise bad("user_id is not a user id")
    return int(number)


def _log_ask(
    server: PinnedServer,
    grant_type: str,
    status: int | None,
    started: float,
    outcome: str,
    *,
    user_id: int | None = None,
) -> None:
    # The server's base URL only: the request's URL holds the secret and the code.
    log.info(
        "oauth.token_request",
        server=server.base_url,
        grant_type=grant_type,
        status=status,
        outcome=outcome,
        user_id=user_id,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )
