"""Registering the bot through Chatbots 2.0 (`imbot.v2.*`) in fetch mode, idempotently.

`imbot.v2.Bot.list` lists only our application's bots (`custom<botToken>`, protocol notes §00
item 9), so a bot with our code found there is ours; then `Bot.update` brings it up to date,
else `Bot.register` creates it (eventMode fetch, isSupportOpenline, so a `/rate` typed in an
open-line chat reaches it: §0 item 12). The commands go in one `batch`: `Command.register`
answers an existing command without changing it, and the `Command.update` after it brings
its titles up to date (command-register.md), so a restart adds nothing.

Migration from a classic bot of ours. `chat-bots-v2/migration.md`: "the bot receives events
only in the format of the API version through which it was registered", and "replacing v1
calls with v2 calls does not change an existing bot's event format". A classic bot switched
by `Bot.update {eventMode: fetch}` alone could keep posting v1 events to a handler URL that
nobody serves in fetch mode, and nothing in the Bot object would show it. So a classic bot of
ours is replaced: removed (v2 `Bot.unregister` when it is in our v2 list, i.e. its CLIENT_ID
is our botToken; else v1 `imbot.unregister` with our CLIENT_ID), then registered through v2.
That holds whether or not the portal would have switched it, at a cost: Bitrix24 deletes a
removed bot's private chats (§6.2), so supervisors' earlier dialogs with the bot go.
Switching back to webhook mode mirrors it (`register_for_mode`): a fetch-mode bot of ours is
removed through v2 before the classic registration, so v1 events reach the handler again.

Ownership: a bot with our code that another application owns answers `BOT_CODE_ALREADY_TAKEN`
to our registration and `APP_ID_ERROR` to our v1 removal; it is never touched (BotCodeTaken).
"""

from __future__ import annotations

from typing import Any, Final

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.bitrix.batch import BatchCall, BatchRef
from bot.bitrix.client import BitrixClient
from bot.bitrix.registration import (
    COMMANDS,
    Registration,
    find_bot,
    register_found,
    unregister,
)
from bot.config import Settings
from bot.errors import (
    BitrixBadResponse,
    BitrixError,
    BitrixMethodNotFound,
    BotCodeTaken,
    ChatbotsV2Unavailable,
)

log = structlog.get_logger(__name__)

_PAGE: Final = 50  # Bot.list's default page (bot-list.md)
# An application has at most 100 bots (bot-register.md, BOT_LIMIT_EXCEEDED): more pages than
# that can hold means an answer that never ends, not more bots.
_MAX_PAGES: Final = 3
_OWNERSHIP_ERRORS: Final = frozenset({"BOT_OWNERSHIP_ERROR", "BOT_CODE_ALREADY_TAKEN"})


class ListedBot(BaseModel):
    """A bot of `imbot.v2.Bot.list` (bot-list.md), the fields we read."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    code: str
    event_mode: str = Field(default="", alias="eventMode")


class BotPage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    bots: list[ListedBot] = []
    has_next_page: bool = Field(default=False, alias="hasNextPage")


class ListedCommand(BaseModel):
    """A command of `imbot.v2.Command.list` (command-list.md), the fields we read."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    command: str  # with its slash: "/rate"
    common: bool = False


class CommandPage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    commands: list[ListedCommand] = []


def _token(settings: Settings) -> str:
    assert settings.b24_bot_token is not None  # noqa: S101 - derived with the webhook URL
    return settings.b24_bot_token.get_secret_value()


async def find_v2_bot(
    client: BitrixClient, settings: Settings, *, token: str | None = None
) -> ListedBot | None:
    """Our application's bot with our code (or the application of `token`), or None;
    ChatbotsV2Unavailable without v2."""
    token = token or _token(settings)
    for page_number in range(_MAX_PAGES):
        params = {"botToken": token, "limit": _PAGE, "offset": page_number * _PAGE}
        try:
            raw = await client.call("imbot.v2.Bot.list", params)
        except BitrixMethodNotFound as error:
            raise ChatbotsV2Unavailable from error
        try:
            page = BotPage.model_validate(raw)
        except ValidationError:
            raise BitrixBadResponse("imbot.v2.Bot.list", status=200, content_type="") from None
        for bot in page.bots:
            if bot.code == settings.b24_bot_code:
                return bot
        if not page.has_next_page:
            break
    return None


async def list_v2_commands(client: BitrixClient, bot_id: int, token: str) -> dict[str, bool]:
    """The commands of a bot of `token`'s application: name (no slash) -> common."""
    raw = await client.call("imbot.v2.Command.list", {"botId": bot_id, "botToken": token})
    try:
        page = CommandPage.model_validate(raw)
    except ValidationError:
        raise BitrixBadResponse("imbot.v2.Command.list", status=200, content_type="") from None
    return {c.command.lstrip("/"): c.common for c in page.commands}


def _bot_fields(settings: Settings) -> dict[str, Any]:
    return {
        "eventMode": "fetch",
        "isSupportOpenline": True,
        "properties": {"name": settings.b24_bot_name, "workPosition": "Bot"},
    }


async def register_v2(client: BitrixClient, settings: Settings) -> Registration:
    """Register or update the bot (fetch mode) and its commands: three REST requests."""
    found = await find_v2_bot(client, settings)
    if found is not None and found.event_mode != "fetch":
        # Ours (our token's application) but pushing events: a classic bot, see above.
        await _remove_v2(client, settings, found.id)
        log.info("bitrix.classic_bot_replaced", bot_id=found.id, code=settings.b24_bot_code)
        found = None
    if found is None:
        bot_id = await _register_bot(client, settings)
    else:
        bot_id = found.id
        await _owned_call(
            client,
            settings,
            "imbot.v2.Bot.update",
            {"botId": bot_id, "botToken": _token(settings), "fields": _bot_fields(settings)},
        )
    registration = Registration(bot_id, await _register_commands(client, settings, bot_id))
    log.info(
        "bitrix.registered",
        bot_id=bot_id,
        created=found is None,
        event_mode="fetch",
        commands=registration.command_ids,
    )
    return registration


async def _register_bot(client: BitrixClient, settings: Settings) -> int:
    fields = {"code": settings.b24_bot_code, "type": "bot", **_bot_fields(settings)}
    params = {"fields": {**fields, "botToken": _token(settings)}}
    try:
        result = await client.call("imbot.v2.Bot.register", params)
    except BitrixError as error:
        if error.code != "BOT_CODE_ALREADY_TAKEN":
            raise
        # Not in our v2 list, yet taken: a classic bot of ours registered with a CLIENT_ID
        # other than our botToken, or another application's bot (then BotCodeTaken).
        if await _fetch_bot_of_client_id(client, settings):
            raise BotCodeTaken(settings.b24_bot_code, None, other_token=True) from error
        removed = await unregister(client, settings)
        if removed is None:
            raise BotCodeTaken(settings.b24_bot_code, None) from error
        log.info("bitrix.classic_bot_replaced", bot_id=removed, code=settings.b24_bot_code)
        result = await client.call("imbot.v2.Bot.register", params)
    return _id_in(result, "bot", "imbot.v2.Bot.register")


async def _fetch_bot_of_client_id(client: BitrixClient, settings: Settings) -> bool:
    """Whether the bot with our code is a fetch-mode bot of the CLIENT_ID's application: one
    whose botToken is derived from the webhook while ours is set by B24_BOT_TOKEN, i.e.
    another instance's bot (or an earlier set-up's). v1 `imbot.unregister` with the CLIENT_ID
    would remove it, and its queued events with it: it is not ours to remove."""
    assert settings.b24_client_id is not None  # noqa: S101 - derived with the webhook URL
    client_id = settings.b24_client_id.get_secret_value()
    if client_id == _token(settings):
        return False  # then it would have been in our own list
    found = await find_v2_bot(client, settings, token=client_id)
    return found is not None and found.event_mode == "fetch"


def _id_in(result: Any, key: str, method: str) -> int:
    """`result[key].id` of a v2 answer (`{"bot": {...}}`, `{"command": {...}}`)."""
    item = result.get(key) if isinstance(result, dict) else None
    value = item.get("id") if isinstance(item, dict) else None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    raise BitrixBadResponse(method, status=200, content_type="")


async def _register_commands(
    client: BitrixClient, settings: Settings, bot_id: int
) -> dict[str, int]:
    """`/rate` and `/help` in every chat (common), with ru/en/de titles: one batch request."""
    owner = {"botId": bot_id, "botToken": _token(settings)}
    calls: list[BatchCall] = []
    for name, texts in COMMANDS.items():
        # Y/N rather than JSON booleans: batch carries its calls form-encoded, and the docs
        # accept "Y"/"N" where a client has no booleans (command-register.md, -update.md).
        fields = {
            "common": "Y",
            "hidden": "N",
            "title": {lang: title for lang, (title, _) in texts.items()},
            "params": {lang: hint for lang, (_, hint) in texts.items()},
        }
        calls.append(
            BatchCall(
                f"reg_{name}",
                "imbot.v2.Command.register",
                {**owner, "fields": {"command": name, **fields}},
            )
        )
        calls.append(
            BatchCall(
                f"upd_{name}",
                "imbot.v2.Command.update",
                {
                    **owner,
                    "commandId": BatchRef(f"reg_{name}", ("command", "id")),
                    "fields": fields,
                },
            )
        )
    result = await client.batch(calls, halt=True)
    for call in calls:
        error = result.errors.get(call.key)
        if error is not None and error.code in _OWNERSHIP_ERRORS:
            raise BotCodeTaken(settings.b24_bot_code, bot_id) from error
        result.value(call.key)  # raises the first failure
    return {
        name: _id_in(result.value(f"reg_{name}"), "command", "imbot.v2.Command.register")
        for name in COMMANDS
    }


async def _owned_call(
    client: BitrixClient, settings: Settings, method: str, params: dict[str, Any]
) -> Any:
    try:
        return await client.call(method, params)
    except BitrixError as error:
        if error.code in _OWNERSHIP_ERRORS:
            raise BotCodeTaken(settings.b24_bot_code, params.get("botId")) from error
        raise


async def _remove_v2(client: BitrixClient, settings: Settings, bot_id: int) -> None:
    params = {"botId": bot_id, "botToken": _token(settings)}
    await _owned_call(client, settings, "imbot.v2.Bot.unregister", params)


async def unregister_v2(client: BitrixClient, settings: Settings) -> int | None:
    """Remove our bot however it was registered; its id, or None if there was none."""
    try:
        found = await find_v2_bot(client, settings)
    except ChatbotsV2Unavailable:
        found = None
    if found is None:
        # A classic bot of ours with a CLIENT_ID other than the botToken, or none at all.
        return await unregister(client, settings)
    await _remove_v2(client, settings, found.id)
    log.info("bitrix.unregistered", bot_id=found.id)
    return found.id


async def register_for_mode(client: BitrixClient, settings: Settings) -> Registration:
    """The registration B24_EVENT_MODE asks for: the one entry point for the service."""
    if settings.b24_event_mode == "fetch":
        return await register_v2(client, settings)
    existing = await find_bot(client, settings.b24_bot_code)
    # Only a bot with our code can be a fetch-mode bot of ours: a fresh portal costs nothing.
    if existing is not None and await _retired_fetch_bot(client, settings):
        existing = None
    return await register_found(client, settings, existing)


async def _retired_fetch_bot(client: BitrixClient, settings: Settings) -> bool:
    """Back to webhook mode: a fetch-mode bot of ours would keep queueing v2 events nobody
    fetches, and a classic update cannot change its event format (migration.md). Whether
    there was one, now removed."""
    try:
        found = await find_v2_bot(client, settings)
    except ChatbotsV2Unavailable:
        return False  # a portal without Chatbots 2.0 has only classic bots
    if found is None or found.event_mode != "fetch":
        return False
    await _remove_v2(client, settings, found.id)
    log.info("bitrix.fetch_bot_replaced", bot_id=found.id, code=settings.b24_bot_code)
    return True
