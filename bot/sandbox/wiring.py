"""The settings that wire the service to a running sandbox (both halves of the seed)."""

from __future__ import annotations

from bot.sandbox.portal import Portal
from bot.sandbox.telegram.seed import FEED, FORUM, PORTAL_USERS, SUPERVISORS_GROUP
from bot.sandbox.telegram.server import PREFIX
from bot.sandbox.telegram.world import TelegramWorld


def service_env(base_url: str, portal: Portal, world: TelegramWorld) -> dict[str, str]:
    """The service's settings for the sandbox served at `base_url`: its main webhook, user 27
    the one supervisor allowed to rate, its fake Telegram with the seed's groups allowed."""
    hook = portal.webhooks[0]
    return {
        "B24_WEBHOOK_URL": f"{base_url}/rest/{hook.user_id}/{hook.code}/",
        "B24_SUPERVISOR_IDS": "27",
        "TELEGRAM_API_URL": f"{base_url}{PREFIX}",
        "TELEGRAM_BOT_TOKEN": world.token,
        "TELEGRAM_ALLOWED_CHAT_IDS": f"{SUPERVISORS_GROUP},{FORUM}",
        "TELEGRAM_USER_MAP": ",".join(f"{tg}:{b24}" for tg, b24 in PORTAL_USERS.items()),
        "TELEGRAM_FEED_CHAT_ID": str(FEED),
    }
