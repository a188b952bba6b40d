"""The portal's side of `check`: the webhook (reachable, code accepted, scopes), Chatbots 2.0
in fetch mode, and the bot with its commands, registered and ours.

The scopes come from the `scope` method, which "returns ... the permissions granted to the
application or webhook" (common/system/scope.md @22e3a2b9); `app.info` answers a webhook
`ACCESS_DENIED` "Application context required" (app-info.md), and `profile` tells the user, not
the scopes. The bot is looked up the way registration looks it up (registration_v2.find_v2_bot,
registration.find_bot): `imbot.v2.Bot.list` lists only our application's bots, so a bot found
there is ours; `imbot.bot.list` lists every bot of the portal (protocol notes §00 item 8).
"""

from __future__ import annotations

from typing import Final, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr

from bot.bitrix.client import BitrixClient, PortalLimiters, RetryPolicy, WebhookAuth
from bot.bitrix.hints import REQUIRED_SCOPES, WEBHOOK_SCREEN, missing_scopes, refusal_hint
from bot.bitrix.hints import scopes_hint as _scopes_hint
from bot.bitrix.registration import COMMANDS, find_bot
from bot.bitrix.registration_v2 import ListedBot, find_v2_bot, list_v2_commands
from bot.checks.findings import Finding, fail, ok, skip
from bot.config import Settings
from bot.errors import (
    BitrixBadResponse,
    BitrixError,
    BitrixUnavailable,
    BotCodeTaken,
    ChatbotsV2Unavailable,
)

REACHABLE = "portal reachable"
ACCEPTED = "webhook code accepted"
SCOPES = "webhook scopes"
CHATBOTS_V2 = "Chatbots 2.0 (fetch mode)"
BOT = "bot registered and ours"
BOT_COMMANDS = "bot commands"
# A check is a handful of calls: two tries, quickly, then the answer is what it is.
_RETRY = RetryPolicy(attempts=2, deadline=10, initial_wait=0.5, max_wait=1)
_WORKS = "a webhook that works"
_NO_V2: Final = "no v2"
_REREGISTERED = "needs the bot registered again"
_REGISTER = "start the service (it registers the bot at start) or run `python -m bot register`"


def _secret(value: SecretStr | None) -> str:
    assert value is not None  # noqa: S101 - derived with B24_WEBHOOK_URL by Settings
    return value.get_secret_value()


async def check_portal(settings: Settings, session: aiohttp.ClientSession) -> list[Finding]:
    if settings.b24_webhook_url is None:
        fix = (
            f"{WEBHOOK_SCREEN}, create one with the scopes {', '.join(REQUIRED_SCOPES)} and "
            "set B24_WEBHOOK_URL to its URL"
        )
        return [fail("B24_WEBHOOK_URL", "not set: there is no portal to talk to", fix)]
    client = BitrixClient(
        session,
        WebhookAuth(settings.b24_webhook_url),
        PortalLimiters(rate=settings.b24_rate_limit, burst=settings.b24_rate_burst),
        retry=_RETRY,
    )
    findings, blocked = await _check_webhook(client, settings)
    if blocked is not None:
        names = [CHATBOTS_V2] if settings.b24_event_mode == "fetch" else []
        return findings + [skip(name, f"needs {blocked}") for name in [*names, BOT, BOT_COMMANDS]]
    if settings.b24_event_mode == "fetch":
        return findings + await _check_fetch_bot(client, settings)
    return findings + await _check_classic_bot(client, settings)


async def _check_webhook(
    client: BitrixClient, settings: Settings
) -> tuple[list[Finding], str | None]:
    """Reachable, code accepted, scopes: from one `scope` call; and what is missing for the
    bot's lookups, if anything."""
    host = urlsplit(_secret(settings.b24_webhook_url)).netloc  # the host only: no code
    try:
        granted = await client.call("scope")
    except (BitrixUnavailable, BitrixBadResponse) as error:
        shown = error.code if error.status is None else f"HTTP {error.status}"
        fix = refusal_hint(error) or "the portal fails: try again later"
        return [fail(REACHABLE, f"{host} does not answer as Bitrix24 ({shown})", fix)], _WORKS
    except BitrixError as error:
        reached = ok(REACHABLE, f"{host} answers")
        refused = refusal_hint(error)
        if refused is None:  # the webhook works; the lookups may tell more
            failed = fail(SCOPES, f"`scope` failed: {error.code}", "try again later")
            return [reached, failed], None
        return [reached, fail(ACCEPTED, f"Bitrix24 refused it: {error.code}", refused)], _WORKS
    findings = [ok(REACHABLE, f"{host} answers"), ok(ACCEPTED, "Bitrix24 accepts it")]
    scopes = granted if isinstance(granted, list) else []
    missing = missing_scopes(str(scope) for scope in scopes)
    if missing:
        shown = ", ".join(sorted(str(s) for s in scopes)) or "none"
        detail = f"missing {', '.join(missing)} (granted: {shown})"
        blocked = "the imbot scope" if "imbot" in missing else None
        return [*findings, fail(SCOPES, detail, _scopes_hint(missing))], blocked
    return [*findings, ok(SCOPES, ", ".join(REQUIRED_SCOPES) + " granted")], None


async def _check_fetch_bot(client: BitrixClient, settings: Settings) -> list[Finding]:
    try:
        found = await find_v2_bot(client, settings)
    except ChatbotsV2Unavailable as error:
        detail = "imbot.v2.* methods are not found on this portal"
        return [fail(CHATBOTS_V2, detail, str(error)), skip(BOT, "needs Chatbots 2.0")]
    except BitrixError as error:
        return [_refused(BOT, error)]
    findings = [ok(CHATBOTS_V2, "imbot.v2 answers: events can be fetched")]
    if found is None:
        return [*findings, await _not_ours_or_missing(client, settings)]
    if found.event_mode != "fetch":
        detail = f"bot {found.id} is ours, but Bitrix24 pushes its events (classic)"
        fix = "run `python -m bot register` (or restart the service): it re-registers it"
        return [*findings, fail(BOT, detail, fix), skip(BOT_COMMANDS, _REREGISTERED)]
    findings.append(ok(BOT, f"bot {found.id}, fetch mode"))
    return [*findings, await _check_commands(client, found, _secret(settings.b24_bot_token))]


async def _check_classic_bot(client: BitrixClient, settings: Settings) -> list[Finding]:
    """Webhook mode: the classic bot, found in every bot's list, and ours when our CLIENT_ID's
    application lists it in Chatbots 2.0."""
    try:
        bot_id = await find_bot(client, settings.b24_bot_code)
        found = None if bot_id is None else await _our_listing(client, settings, bot_id)
    except BitrixError as error:
        return [_refused(BOT, error)]
    if bot_id is None:
        detail = f"no bot has the code {settings.b24_bot_code!r}"
        return [fail(BOT, detail, _REGISTER), skip(BOT_COMMANDS, "needs the bot")]
    if found == _NO_V2:
        # [UNCONFIRMED] no read-only way to tell ownership without v2: registration learns it
        # from APP_ID_ERROR, and the service then refuses the foreign bot (BotCodeTaken).
        detail = f"bot {bot_id} (ownership shows when the service registers)"
        return [ok(BOT, detail), skip(BOT_COMMANDS, "listing commands needs Chatbots 2.0")]
    if not isinstance(found, tuple):
        taken = BotCodeTaken(settings.b24_bot_code, bot_id)
        return [fail(BOT, f"bot {bot_id} has our code, but another application's", str(taken))]
    listed, token = found
    if listed.event_mode == "fetch":
        detail = f"bot {bot_id} is ours, but registered for fetch mode"
        fix = "restart the service or run `python -m bot register`: it re-registers it"
        return [fail(BOT, detail, fix), skip(BOT_COMMANDS, _REREGISTERED)]
    return [ok(BOT, f"bot {bot_id}, webhook mode"), await _check_commands(client, listed, token)]


async def _our_listing(
    client: BitrixClient, settings: Settings, bot_id: int
) -> tuple[ListedBot, str] | Literal["no v2"] | None:
    """The bot as our application lists it, with the token that listed it ("no v2": the
    portal has no Chatbots 2.0 to ask). A classic bot registered with CLIENT_ID=X is the
    application of botToken X (protocol notes §00 item 9); a fetch-mode bot of ours is
    B24_BOT_TOKEN's."""
    tokens = dict.fromkeys((_secret(settings.b24_client_id), _secret(settings.b24_bot_token)))
    for token in tokens:
        try:
            found = await find_v2_bot(client, settings, token=token)
        except ChatbotsV2Unavailable:
            return _NO_V2
        if found is not None and found.id == bot_id:
            return found, token
    return None


async def _not_ours_or_missing(client: BitrixClient, settings: Settings) -> Finding:
    """Fetch mode, no bot of ours: is the code free, or does some other bot have it?"""
    try:
        other = await find_bot(client, settings.b24_bot_code)
    except BitrixError as error:
        return _refused(BOT, error)
    if other is None:
        return fail(BOT, f"no bot has the code {settings.b24_bot_code!r}", _REGISTER)
    fix = (
        "if it is this service's earlier classic bot, `python -m bot register` replaces it; "
        "if another application's, set B24_BOT_CODE to a code of your own"
    )
    return fail(BOT, f"bot {other} has our code, but is not our fetch-mode bot", fix)


async def _check_commands(client: BitrixClient, bot: ListedBot, token: str) -> Finding:
    try:
        commands = await list_v2_commands(client, bot.id, token)
    except BitrixError as error:
        return _refused(BOT_COMMANDS, error)
    missing = [f"/{name}" for name in COMMANDS if name not in commands]
    narrow = [f"/{name}" for name in COMMANDS if commands.get(name) is False]
    if missing or narrow:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"{', '.join(narrow)} only where the bot is a member"] if narrow else []
        return fail(BOT_COMMANDS, "; ".join(parts), _REGISTER.replace("the bot", "them"))
    shown = ", ".join(f"/{name}" for name in COMMANDS)
    return ok(BOT_COMMANDS, f"{shown}, in every chat")


def _refused(name: str, error: BitrixError) -> Finding:
    hint = refusal_hint(error) or "try again later; if it stays, see the service's log"
    return fail(name, f"{error.method} failed: {error.code}", hint)
