"""The settings that wire the service to a running sandbox (both halves of the seed)."""

from __future__ import annotations

from bot.sandbox.portal import Portal
from bot.sandbox.telegram.seed import FEED, FORUM, PORTAL_USERS, SUPERVISORS_GROUP
from bot.sandbox.telegram.server import PREFIX
from bot.sandbox.telegram.world import TelegramWorld


def service_env(
    base_url: str, portal: Portal, world: TelegramWorld, *, app_mode: bool = False
) -> dict[str, str]:
    """The service's settings for the sandbox served at `base_url`: its main webhook, user 27
    the one supervisor allowed to rate, its fake Telegram with the seed's groups allowed; with
    `app_mode`, also its local application (`app_env`; the service then needs a
    BOT_SECRET_KEY, which is the service's own, not the sandbox's)."""
    hook = portal.webhooks[0]
    app = app_env(base_url, portal) if app_mode else {}
    return app | {
        "B24_WEBHOOK_URL": f"{base_url}/rest/{hook.user_id}/{hook.code}/",
        "B24_SUPERVISOR_IDS": "27",
        "TELEGRAM_API_URL": f"{base_url}{PREFIX}",
        "TELEGRAM_BOT_TOKEN": world.token,
        "TELEGRAM_ALLOWED_CHAT_IDS": f"{SUPERVISORS_GROUP},{FORUM}",
        "TELEGRAM_USER_MAP": ",".join(f"{tg}:{b24}" for tg, b24 in PORTAL_USERS.items()),
        "TELEGRAM_FEED_CHAT_ID": str(FEED),
    }


def app_env(base_url: str, portal: Portal) -> dict[str, str]:
    """Application mode's settings for the sandbox's local application (create it first:
    `bot.sandbox.oauth.create_app`): its id and secret, and the sandbox as the one OAuth
    server, since it serves `/oauth/token/` itself."""
    app = portal.oauth.app
    if app is None:
        raise ValueError("the sandbox has no local application: create it first")
    return {
        "B24_APP_CLIENT_ID": app.client_id,
        "B24_APP_CLIENT_SECRET": app.client_secret,
        "B24_OAUTH_SERVER": base_url,
    }
