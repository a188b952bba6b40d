"""The sandbox's OAuth side: a local application, the portal's consent page and the OAuth
server's token endpoint (settings/oauth/index.md, auto-renewal.md, error-codes.md; protocol
notes §5). Plain state and rules here; `oauth_http.py` serves them.

What a real pair of servers does that the sandbox keeps: a code lives 30 s by the portal's
clock, is single-use and bound to the application; an access token lives 3600 s; a refresh
token is single-use, and using it kills the old pair (§5, designed for as the strict case); a
re-created application gets a new id and secret, and the old ones answer `invalid_client`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

if TYPE_CHECKING:
    from bot.sandbox.portal import Portal

CODE_LIFETIME: Final = 30.0  # settings/oauth/index.md
ACCESS_LIFETIME: Final = 3600  # auto-renewal.md: "lifespan - 1 hour"
APP_SCOPES: Final = ("imopenlines", "user_brief")  # issue 12: what the application asks for


class OAuthServerError(Exception):
    """An OAuth error answer: `{"error", "error_description"}` with a status."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(code)
        self.code, self.description, self.status = code, description, status


@dataclass
class LocalApp:
    """A local application as the portal's card shows it (local-integrations/local-apps.md)."""

    client_id: str
    client_secret: str
    handler_url: str  # "Your handler path": where the consent page sends the browser
    scopes: tuple[str, ...] = APP_SCOPES


@dataclass
class IssuedCode:
    client_id: str
    user_id: int
    issued_at: float


@dataclass
class Grant:
    """One issued pair; the pair dies when its refresh token is used."""

    client_id: str
    user_id: int
    access_token: str
    refresh_token: str
    expires_at: float
    scopes: tuple[str, ...]


@dataclass
class TokenRequest:
    """One request the token endpoint received, as it was sent (tests assert on these)."""

    method: str
    params: dict[str, str]
    status: int
    error: str | None


@dataclass
class OAuthState:
    app: LocalApp | None = None
    codes: dict[str, IssuedCode] = field(default_factory=dict)
    by_access: dict[str, Grant] = field(default_factory=dict)
    by_refresh: dict[str, Grant] = field(default_factory=dict)
    requests: list[TokenRequest] = field(default_factory=list)


def create_app(portal: Portal, handler_url: str) -> LocalApp:
    """Create (or re-create) the local application: a new client id and secret. The old ones,
    and codes issued for them, stop working; pairs issued to it no longer authenticate."""
    state = portal.oauth
    state.app = LocalApp(
        client_id=f"local.{secrets.token_hex(7)}.{secrets.randbelow(10**8):08d}",
        client_secret=secrets.token_urlsafe(37)[:50],
        handler_url=handler_url,
    )
    state.codes.clear()
    return state.app


def authorize(portal: Portal, client_id: str, state: str, user_id: int, host: str) -> str:
    """The consent page for a logged-in user: the URL the portal redirects the browser to.

    `host` is the portal's address as the browser reached it (the redirect's `domain`), and the
    OAuth server's too: in the sandbox both are served by one server.
    """
    app = portal.oauth.app
    if app is None or app.client_id != client_id:
        raise OAuthServerError("APP_NOT_INSTALLED", "The application is not installed", 404)
    user = portal.users.get(user_id)
    if user is None or not user.active or user.connector:
        raise OAuthServerError("NOT_LOGGED_IN", "No such active user to log in as", 403)
    code = secrets.token_hex(16)
    portal.oauth.codes[code] = IssuedCode(client_id, user_id, portal.now())
    query = {
        "code": code,
        "state": state,
        "domain": host,
        "member_id": portal.member_id,
        "scope": ",".join(app.scopes),
        "server_domain": host,
    }
    separator = "&" if "?" in app.handler_url else "?"
    return f"{app.handler_url}{separator}{urlencode(query)}"


def token(portal: Portal, params: dict[str, str], host: str, scheme: str) -> dict[str, Any]:
    """The token endpoint: `authorization_code` or `refresh_token`, as auto-renewal.md shows.

    Statuses follow RFC 6749, section 5.2 (401 for invalid_client, else 400): error-codes.md gives
    codes only [UNCONFIRMED which statuses oauth.bitrix.info answers with].
    """
    grant_type = params.get("grant_type", "")
    if grant_type not in ("authorization_code", "refresh_token"):
        raise OAuthServerError("invalid_request", "Unsupported grant_type")
    app = portal.oauth.app
    if not params.get("client_id") or not params.get("client_secret"):
        raise OAuthServerError("invalid_request", "client_id and client_secret are required")
    if (
        app is None
        or params["client_id"] != app.client_id
        or not secrets.compare_digest(params["client_secret"], app.client_secret)
    ):
        raise OAuthServerError("invalid_client", "Invalid client", 401)
    if grant_type == "authorization_code":
        user_id = _spend_code(portal, app, params.get("code", ""))
    else:
        user_id = _spend_refresh_token(portal, app, params.get("refresh_token", ""))
    return _issue(portal, app, user_id, host, scheme)


def _spend_code(portal: Portal, app: LocalApp, code: str) -> int:
    if not code:
        raise OAuthServerError("invalid_request", "code is required")
    issued = portal.oauth.codes.pop(code, None)  # single-use, whatever follows
    if issued is None or issued.client_id != app.client_id:
        raise OAuthServerError("invalid_grant", "Invalid authorization code")
    if portal.now() - issued.issued_at > CODE_LIFETIME:
        raise OAuthServerError("invalid_grant", "Authorization code has expired")
    return issued.user_id


def _spend_refresh_token(portal: Portal, app: LocalApp, refresh_token: str) -> int:
    if not refresh_token:
        raise OAuthServerError("invalid_request", "refresh_token is required")
    grant = portal.oauth.by_refresh.get(refresh_token)
    if grant is None or grant.client_id != app.client_id:
        raise OAuthServerError("invalid_grant", "Invalid refresh token")
    # Single-use: the old refresh token and the access token issued with it die now (§5).
    revoke(portal, grant)
    return grant.user_id


def revoke(portal: Portal, grant: Grant) -> None:
    portal.oauth.by_refresh.pop(grant.refresh_token, None)
    portal.oauth.by_access.pop(grant.access_token, None)


def _issue(portal: Portal, app: LocalApp, user_id: int, host: str, scheme: str) -> dict[str, Any]:
    grant = Grant(
        client_id=app.client_id,
        user_id=user_id,
        access_token=secrets.token_hex(16),
        refresh_token=secrets.token_hex(16),
        expires_at=portal.now() + ACCESS_LIFETIME,
        scopes=app.scopes,
    )
    portal.oauth.by_access[grant.access_token] = grant
    portal.oauth.by_refresh[grant.refresh_token] = grant
    return {
        "access_token": grant.access_token,
        "expires": int(grant.expires_at),
        "expires_in": ACCESS_LIFETIME,
        "scope": ",".join(grant.scopes),
        "domain": host,  # the OAuth server's, not the portal's (§5)
        "server_endpoint": f"{scheme}://{host}/rest/",
        "status": "L",  # a local application (simple-way.md's `status`)
        "client_endpoint": f"{scheme}://{host}/rest/",
        "member_id": portal.member_id,
        "user_id": user_id,
        "refresh_token": grant.refresh_token,
    }


def expire_access_tokens(portal: Portal, user_id: int) -> int:
    """Make every access token of `user_id` expired now (their refresh tokens stay good)."""
    grants = [g for g in portal.oauth.by_access.values() if g.user_id == user_id]
    for grant in grants:
        grant.expires_at = portal.now() - 1
    return len(grants)


def grant_of(portal: Portal, access_token: str) -> Grant | None:
    return portal.oauth.by_access.get(access_token)


def token_auth_error(portal: Portal, grant: Grant) -> tuple[str, str] | None:
    """Why REST refuses a pair's access token, in `Bitrix\\Rest\\OAuth\\Auth::onRestCheckAuth`'s
    order (rest/lib/oauth/auth.php in a 2026 mirror of the modules); None when it is good.
    Each is a 401 (OAuthException's default status)."""
    app = portal.oauth.app
    if app is None or app.client_id != grant.client_id:
        return "APPLICATION_NOT_FOUND", "Application not found"
    if grant.expires_at <= portal.now():
        return "expired_token", "The access token provided has expired"
    user = portal.users.get(grant.user_id)
    if user is None or not user.active:
        # CRestUtil::makeAuth cannot log the user in [UNCONFIRMED that a deactivated user is
        # the cause; the code and text are the source's].
        return "authorization_error", "Unable to authorize user"
    return None
