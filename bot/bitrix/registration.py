"""Registering the bot and its commands through the incoming webhook, idempotently (§6, §6.8).

An existing bot with our code is found with imbot.bot.list and updated, never registered
twice. The bot needs OPENLINE=Y and the commands COMMON=Y, or Bitrix24 does not deliver a
`/rate` typed inside an open-line chat (protocol notes §0, items 12-14).

imbot.bot.list lists the bots of every application, without their owner, and imbot.register
answers a taken code with the other application's bot (§00 item 8). So ownership shows only
when we act in our name (CLIENT_ID): such a call on a foreign bot fails APP_ID_ERROR, which
becomes BotCodeTaken; we never adopt, update or remove a bot that is not ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import structlog

from bot.bitrix.batch import BatchCall, BatchRef, BatchResult
from bot.bitrix.client import BitrixClient
from bot.config import Settings
from bot.errors import BitrixError, BotCodeTaken

log = structlog.get_logger(__name__)

# Titles and parameter hints shown in Bitrix24's command list, per interface language.
COMMANDS: Final = {
    "rate": {
        "ru": ("Оценить диалог открытой линии", "сессия оценка комментарий"),
        "en": ("Rate an open-line dialog", "session rating comment"),
        "de": ("Dialog der offenen Kanäle bewerten", "Sitzung Bewertung Kommentar"),
    },
    "help": {
        "ru": ("Справка по оценке диалогов", ""),
        "en": ("How to rate dialogs", ""),
        "de": ("Hilfe zur Bewertung von Dialogen", ""),
    },
}


@dataclass(frozen=True)
class Registration:
    bot_id: int
    command_ids: dict[str, int]


def handler_url(settings: Settings) -> str:
    return settings.public_url + settings.b24_handler_path()


def _client_id(settings: Settings) -> str:
    assert settings.b24_client_id is not None  # noqa: S101 - derived in webhook mode
    return settings.b24_client_id.get_secret_value()


async def find_bot(client: BitrixClient, code: str) -> int | None:
    bots = await client.call("imbot.bot.list")
    for bot in bots.values() if isinstance(bots, dict) else bots or []:
        if isinstance(bot, dict) and bot.get("CODE") == code:
            return int(bot["ID"])
    return None


async def register(client: BitrixClient, settings: Settings) -> Registration:
    """Register or update the bot and its commands: two REST requests."""
    return await register_found(client, settings, await find_bot(client, settings.b24_bot_code))


async def register_found(
    client: BitrixClient, settings: Settings, existing: int | None
) -> Registration:
    """`register` with imbot.bot.list already read: `existing` is the bot with our code."""
    url, client_id = handler_url(settings), _client_id(settings)
    bot_fields: dict[str, Any] = {
        "EVENT_HANDLER": url,
        "OPENLINE": "Y",
        "PROPERTIES": {"NAME": settings.b24_bot_name, "COLOR": "AQUA", "WORK_POSITION": "Bot"},
    }
    calls: list[BatchCall] = []
    if existing is None:
        bot_ref: BatchRef | int = BatchRef("bot")
        calls.append(
            BatchCall(
                "bot",
                "imbot.register",
                {
                    "CODE": settings.b24_bot_code,
                    "TYPE": "B",
                    "CLIENT_ID": client_id,
                    **bot_fields,
                },
            )
        )
    else:
        bot_ref = existing
        calls.append(
            BatchCall(
                "bot",
                "imbot.update",
                {
                    "BOT_ID": existing,
                    "FIELDS": bot_fields,
                    "CLIENT_ID": client_id,
                },
            )
        )
    for name, titles in COMMANDS.items():
        fields = {
            "EVENT_COMMAND_ADD": url,
            "COMMON": "Y",
            "HIDDEN": "N",
            "LANG": [
                {"LANGUAGE_ID": lang, "TITLE": t, "PARAMS": p} for lang, (t, p) in titles.items()
            ],
        }
        # Registering an existing command answers its id; the update then brings its URL and
        # titles up to date, so a restart never adds a second command.
        calls.append(
            BatchCall(
                f"reg_{name}",
                "imbot.command.register",
                {
                    "BOT_ID": bot_ref,
                    "COMMAND": name,
                    "CLIENT_ID": client_id,
                    **fields,
                },
            )
        )
        calls.append(
            BatchCall(
                f"upd_{name}",
                "imbot.command.update",
                {
                    "COMMAND_ID": BatchRef(f"reg_{name}"),
                    "FIELDS": fields,
                    "CLIENT_ID": client_id,
                },
            )
        )
    result = await client.batch(calls, halt=True)
    _check_ownership(result, settings.b24_bot_code, existing)
    for call in calls:
        result.value(call.key)  # raises the first failure
    bot_id = existing if existing is not None else int(result.value("bot"))
    registration = Registration(bot_id, {n: int(result.value(f"reg_{n}")) for n in COMMANDS})
    log.info(
        "bitrix.registered",
        bot_id=bot_id,
        created=existing is None,
        commands=registration.command_ids,
    )
    return registration


def _check_ownership(result: BatchResult, code: str, existing: int | None) -> None:
    """APP_ID_ERROR on the bot or its first command: the bot with our code is not ours."""
    for key, error in result.errors.items():
        if error.code == "APP_ID_ERROR" and (key == "bot" or key.startswith("reg_")):
            registered = result.results.get("bot")
            bot_id = existing if existing is not None else _as_id(registered)
            raise BotCodeTaken(code, bot_id) from error


def _as_id(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


async def unregister(client: BitrixClient, settings: Settings) -> int | None:
    """Remove the bot (its commands go with it); the removed bot's id, or None if absent."""
    bot_id = await find_bot(client, settings.b24_bot_code)
    if bot_id is not None:
        try:
            await client.call(
                "imbot.unregister", {"BOT_ID": bot_id, "CLIENT_ID": _client_id(settings)}
            )
        except BitrixError as error:
            if error.code == "APP_ID_ERROR":
                raise BotCodeTaken(settings.b24_bot_code, bot_id) from error
            raise
        log.info("bitrix.unregistered", bot_id=bot_id)
    return bot_id
