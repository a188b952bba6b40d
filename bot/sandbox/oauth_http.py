"""The sandbox's OAuth side over HTTP: the portal's consent page `/oauth/authorize/`, the OAuth
server's `/oauth/token/` (both on the sandbox's own host and port), and `/_sandbox/` controls
for tests and the chat page: the application, users' activity, rights to rate, expiry."""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from bot.sandbox import oauth
from bot.sandbox.control import bad_request, read_body
from bot.sandbox.jsonable import answer, jsonable
from bot.sandbox.portal import Portal

# Who is logged in to the portal: the chat page sets this cookie for the person typing.
USER_COOKIE = "sandbox_user"


def mount(app: web.Application, portal: Portal) -> None:
    routes = _Routes(portal)
    app.router.add_get("/oauth/authorize/", routes.authorize)
    app.router.add_route("GET", "/oauth/token/", routes.token)
    app.router.add_route("POST", "/oauth/token/", routes.token)
    app.router.add_get("/_sandbox/oauth", routes.show)
    app.router.add_post("/_sandbox/oauth/app", routes.create_app)
    app.router.add_post("/_sandbox/oauth/expire", routes.expire)
    app.router.add_post("/_sandbox/users/{id}", routes.set_user)
    app.router.add_post("/_sandbox/lines/{id}/heads", routes.set_head)


class _Routes:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        """`?client_id=…&state=…`: a logged-in user's consent, then the redirect to the
        application's handler with code, state, domain, member_id, scope and server_domain.

        The user is the chat page's `sandbox_user` cookie or, for a program, the query's
        `sandbox_user=<id>`: a sandbox-only convenience (a real portal shows its login form).
        """
        who = request.query.get(USER_COOKIE) or request.cookies.get(USER_COOKIE, "")
        if not who.isdigit():
            return _page(401, "Log in first: choose who you are on the chat page.")
        try:
            target = oauth.authorize(
                self.portal,
                request.query.get("client_id", ""),
                request.query.get("state", ""),
                int(who),
                request.host,
            )
        except oauth.OAuthServerError as error:
            return _page(error.status, error.description)
        # Set as built (`scope=imopenlines%2Cuser_brief`, as the docs show it): HTTPFound
        # would re-encode the URL.
        return web.Response(status=302, headers={"Location": target})

    async def token(self, request: web.Request) -> web.Response:
        """`grant_type=authorization_code|refresh_token`, in the query (as the docs show) or a
        form body; every request is recorded as sent."""
        params = dict(request.query.items())
        if request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            form = await request.post()
            params |= {k: v for k, v in form.items() if isinstance(v, str)}
        record = oauth.TokenRequest(request.method, params, 200, None)
        self.portal.oauth.requests.append(record)
        try:
            issued = oauth.token(self.portal, params, request.host, request.scheme)
        except oauth.OAuthServerError as error:
            record.status, record.error = error.status, error.code
            body = {"error": error.code, "error_description": error.description}
            return web.json_response(body, status=error.status)
        return web.json_response(issued)

    async def show(self, _request: web.Request) -> web.Response:
        state = self.portal.oauth
        return answer({"app": jsonable(state.app), "requests": jsonable(state.requests)})

    async def create_app(self, request: web.Request) -> web.Response:
        """`{"handler_url"}`: create, or re-create, the local application."""
        body = await read_body(request)
        with bad_request():
            app = oauth.create_app(self.portal, str(body["handler_url"]))
        return answer(jsonable(app))

    async def expire(self, request: web.Request) -> web.Response:
        """`{"user_id"}`: that user's access tokens expire now."""
        body = await read_body(request)
        with bad_request():
            expired = oauth.expire_access_tokens(self.portal, int(body["user_id"]))
        return answer({"expired": expired})

    async def set_user(self, request: web.Request) -> web.Response:
        """`{"active": false}`: deactivate (dismiss) a user, or bring them back."""
        body = await read_body(request)
        with bad_request():
            user = self.portal.users[int(request.match_info["id"])]
            user.active = _flag(body, "active")
        return answer(jsonable(user))

    async def set_head(self, request: web.Request) -> web.Response:
        """`{"user_id", "may_rate"}`: grant or revoke a user's vote-as-head right on a line."""
        body = await read_body(request)
        with bad_request():
            line = self.portal.lines[int(request.match_info["id"])]
            user_id = int(body["user_id"])
            if _flag(body, "may_rate"):
                line.heads.add(user_id)
            else:
                line.heads.discard(user_id)
        return answer({"line": line.id, "heads": sorted(line.heads)})


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body[name]
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false")
    return value


def _page(status: int, text: str) -> web.Response:
    """A plain page for the browser, as the portal shows one (never a stack trace)."""
    return web.Response(
        status=status,
        text=f"<!doctype html><title>Bitrix24</title><p>{html.escape(text)}</p>",
        content_type="text/html",
    )
