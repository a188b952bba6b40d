"""The reach probe: whether BOT_PUBLIC_URL leads to this very service (`python -m bot check`).

`GET <BOT_PUBLIC_URL>/b24/events/<secret>?nonce=<random>` answers `{"proof": HMAC(secret,
nonce)}`. Only a service configured with the same B24_WEBHOOK_URL knows the secret, so a right
proof shows that Bitrix24's events, posted to the same URL, would reach a service of this
configuration, through whatever DNS, TLS and reverse proxy stand in front of it. The URL is the
event handler's own (architecture: "one handler URL for all Bitrix24 bot events"), so the
external contract gains no endpoint; only the method differs, and nothing is revealed to
someone who does not already know the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final

from aiohttp import web

from bot.config import Settings

REACH_SECRET: Final = web.AppKey("b24_reach_secret", str)
_NONCE: Final = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def path_secret(settings: Settings) -> str:
    """The secret segment of the event handler's path (Settings.b24_handler_path)."""
    return settings.b24_handler_path().rsplit("/", 1)[-1]


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def reach_proof(secret: str, nonce: str) -> str:
    return hmac.new(secret.encode(), b"reach\0" + nonce.encode(), hashlib.sha256).hexdigest()


def add_reach_probe(app: web.Application, secret: str) -> None:
    """Answer the probe at the event handler's path (webhook mode)."""
    app[REACH_SECRET] = secret
    app.router.add_get("/b24/events/{secret}", answer_reach_probe, allow_head=False)


async def answer_reach_probe(request: web.Request) -> web.Response:
    expected = request.app[REACH_SECRET]
    if not secrets.compare_digest(request.match_info["secret"].encode(), expected.encode()):
        raise web.HTTPNotFound
    nonce = request.query.get("nonce", "")
    if not _NONCE.match(nonce):
        return web.json_response({"status": "rejected", "reason": "nonce"}, status=400)
    return web.json_response({"proof": reach_proof(expected, nonce)})
