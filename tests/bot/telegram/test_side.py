"""The Telegram side is there only with a bot token."""

from __future__ import annotations

from aiohttp import web

from bot.config import Settings
from bot.state import SETTINGS
from bot.telegram.side import TELEGRAM, WEBHOOK_PATH, install_telegram


def test_without_a_bot_token_nothing_is_added() -> None:
    app = web.Application()
    app[SETTINGS] = Settings.from_sources(
        {"TELEGRAM_MODE": "webhook", "TELEGRAM_WEBHOOK_SECRET": "s3cret-s3cret"}, env_file=None
    )
    install_telegram(app)
    assert TELEGRAM not in app
    assert [r.canonical for r in app.router.resources()] == []
    assert len(app.cleanup_ctx) == 0


def test_with_a_token_in_webhook_mode_the_webhook_is_served() -> None:
    app = web.Application()
    app[SETTINGS] = Settings.from_sources(
        {
            "TELEGRAM_BOT_TOKEN": "4242:TEST-token",
            "B24_WEBHOOK_URL": "https://corp.bitrix24.ru/rest/1/abc/",
            "TELEGRAM_MODE": "webhook",
            "TELEGRAM_WEBHOOK_SECRET": "s3cret-s3cret",
        },
        env_file=None,
    )
    install_telegram(app)
    assert app[TELEGRAM].status() == {"mode": "webhook", "state": "starting", "detail": None}
    assert [r.canonical for r in app.router.resources()] == [WEBHOOK_PATH]
