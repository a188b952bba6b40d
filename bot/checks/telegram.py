"""Telegram in `check` (when TELEGRAM_BOT_TOKEN is set): the token (getMe), the webhook state
against TELEGRAM_MODE (getWebhookInfo), and every allowed chat and the feed chat (getChat).

Rows never show the token, nor a webhook URL Telegram reports (its path may hold a secret,
another deployment's): its host at most; nor a chat's title (anyone may name a group).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramUnauthorizedError,
)
from aiogram.types import User, WebhookInfo

from bot.checks.findings import Finding, fail, ok
from bot.config import Settings
from bot.telegram.side import WEBHOOK_PATH

TOKEN = "Telegram token"  # noqa: S105 - a row name
WEBHOOK = "Telegram webhook state"
ALLOWED = "TELEGRAM_ALLOWED_CHAT_IDS"


async def check_telegram(settings: Settings, limit: aiohttp.ClientTimeout) -> list[Finding]:
    if settings.telegram_bot_token is None:
        return []
    api = TelegramAPIServer.from_base(settings.telegram_api_url)
    bot = Bot(
        settings.telegram_bot_token.get_secret_value(),
        session=AiohttpSession(api=api, timeout=limit.total or 15),
    )
    try:
        try:
            me = await bot.get_me()
        except TelegramAPIError as error:
            return [_token_refused(settings, error)]
        findings = [ok(TOKEN, f"the bot @{me.username}")]
        findings.append(_webhook_state(settings, await _webhook_info(bot)))
        findings += [await _chat(bot, me, chat_id, ALLOWED) for chat_id in _allowed(settings)]
        if not settings.telegram_allowed_chat_ids:
            fix = "set it to the ids of the supervisors' groups, comma-separated (-100… ids)"
            findings.append(fail(ALLOWED, "empty: no chat may send commands", fix))
        if settings.telegram_feed_chat_id is not None:
            feed = settings.telegram_feed_chat_id
            findings.append(await _chat(bot, me, feed, "TELEGRAM_FEED_CHAT_ID"))
        return findings
    finally:
        await bot.session.close()


def _allowed(settings: Settings) -> list[int]:
    return sorted(settings.telegram_allowed_chat_ids)


def _token_refused(settings: Settings, error: TelegramAPIError) -> Finding:
    if isinstance(error, TelegramUnauthorizedError):
        fix = "copy the token again from @BotFather (/mybots → API Token) into TELEGRAM_BOT_TOKEN"
        return fail(TOKEN, "Telegram does not know this token (401 Unauthorized)", fix)
    host = urlsplit(settings.telegram_api_url).netloc
    fix = "check TELEGRAM_API_URL and that this machine may reach it (firewall, proxy)"
    if isinstance(error, TelegramNetworkError):
        return fail(TOKEN, f"{host} does not answer", fix)
    return fail(TOKEN, f"getMe failed at {host} ({type(error).__name__})", fix)


async def _webhook_info(bot: Bot) -> WebhookInfo | str:
    try:
        return await bot.get_webhook_info()
    except TelegramAPIError as error:
        return type(error).__name__


def _webhook_state(settings: Settings, info: WebhookInfo | str) -> Finding:
    if isinstance(info, str):
        return fail(WEBHOOK, f"getWebhookInfo failed ({info})", "try again later")
    set_to = urlsplit(info.url).netloc
    if settings.telegram_mode == "polling":
        if not info.url:
            return ok(WEBHOOK, "no webhook set: polling gets the updates")
        fix = (
            "if this token is another deployment's, give this one a bot of its own; else start "
            "the service: in polling mode it removes the webhook"
        )
        return fail(WEBHOOK, f"a webhook to {set_to} is set, while TELEGRAM_MODE=polling", fix)
    expected = settings.public_url + WEBHOOK_PATH
    if info.url != expected:
        found = f"set to {set_to}" if info.url else "not set"
        fix = f"start the service: in webhook mode it sets the webhook to {expected}"
        return fail(WEBHOOK, f"{found}, not to this service's BOT_PUBLIC_URL", fix)
    if info.last_error_message:
        fix = "BOT_PUBLIC_URL must be reachable from the internet, over https with a valid "
        fix += "certificate"
        return fail(WEBHOOK, "set, but Telegram reports failed deliveries", fix)
    return ok(WEBHOOK, f"set to {expected}, no failed deliveries")


async def _chat(bot: Bot, me: User, chat_id: int, setting: str) -> Finding:
    name = f"{setting} {chat_id}"
    add = f"add @{me.username} to the chat, or correct the id in {setting}"
    try:
        chat = await bot.get_chat(chat_id)
    except TelegramMigrateToChat as moved:
        new_id = moved.migrate_to_chat_id
        fix = f"the group became a supergroup: put its new id {new_id} in {setting}"
        return fail(name, "moved", fix)
    except TelegramForbiddenError:
        return fail(name, "the bot is no longer in this chat", add)
    except TelegramAPIError as error:
        return fail(name, f"Telegram does not show it to the bot ({type(error).__name__})", add)
    return ok(name, f"reachable ({chat.type})")
