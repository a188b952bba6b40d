"""The service's background loops besides the workers: keeping the bot registered, and
pruning old de-dup keys and expired OAuth link attempts. Each is one tracked task of the
composition root (bot/app.py)."""

from __future__ import annotations

import asyncio
import time

import structlog

from bot.bitrix.accounts import SupervisorAccounts
from bot.bitrix.client import BitrixClient
from bot.bitrix.hints import missing_scopes, refusal_hint, scopes_hint
from bot.bitrix.registration_v2 import register_for_mode
from bot.config import Settings
from bot.errors import BitrixError, BotCodeTaken, ChatbotsV2Unavailable
from bot.state import BitrixState
from bot.storage import Storage

log = structlog.get_logger(__name__)


async def keep_pruning(storage: Storage, *, retention: float, every: float) -> None:
    """Forget de-dup keys of jobs finished longer ago than `retention`, and expired OAuth link
    attempts; a failing storage (locked by another process, say) is logged and tried again
    next time."""
    states = storage.oauth_states()
    while True:
        now = time.time()
        try:
            pruned = await storage.prune(before=now - retention)
            purged = await states.purge(now)
        except Exception:
            log.exception("storage.prune_failed")
        else:
            if pruned:
                log.info("storage.pruned", jobs=pruned)
            if purged:
                log.info("oauth.states_purged", states=purged)
        await asyncio.sleep(every)


async def keep_registered(
    client: BitrixClient, settings: Settings, state: BitrixState, *, backoff: float
) -> None:
    """Register on start, and again whenever the bot is lost (deleted in the portal); while
    the portal is unreachable, keep trying with growing waits. A setting to fix (a code taken
    by another application, no Chatbots 2.0 in fetch mode) stops it for good."""
    await log_webhook_hints(client)
    while True:
        if not await _register(client, settings, state, backoff=backoff):
            return
        await state.lost.wait()
        state.lost.clear()
        log.warning("bitrix.registering_again", setting="B24_BOT_CODE", code=settings.b24_bot_code)


async def log_webhook_hints(client: BitrixClient) -> None:
    """At start, what `python -m bot check` would say of the webhook: the code refused (in
    words, not only NO_AUTH_FOUND) or a scope missing. One `scope` call (common/system/
    scope.md: the scopes granted to the webhook); a portal that does not answer is left to
    registration, which retries and logs."""
    try:
        granted = await client.call("scope")
    except BitrixError as error:
        hint = refusal_hint(error)
        if hint is not None and not error.retryable:
            log.error("config.webhook_refused", code=error.code, hint=hint)  # noqa: TRY400
        return
    missing = missing_scopes(granted if isinstance(granted, list) else [])
    if missing:
        log.error("config.webhook_scopes_missing", missing=missing, hint=scopes_hint(missing))


async def _register(
    client: BitrixClient, settings: Settings, state: BitrixState, *, backoff: float
) -> bool:
    """Whether the bot is registered now (False: it cannot be, until a setting changes)."""
    wait = 1.0
    while True:
        try:
            state.registration = await register_for_mode(client, settings)
        except BotCodeTaken as error:
            log.error(  # noqa: TRY400 - retrying cannot help: the operator must choose another code
                "bitrix.bot_code_taken",
                setting="B24_BOT_CODE",
                code=error.code,
                bot_id=error.bot_id,
                hint=str(error),
            )
            owner = "another B24_BOT_TOKEN's" if error.other_token else "another app's"
            state.refused = f"not registered: B24_BOT_CODE {error.code!r} is {owner} bot"
            return False
        except ChatbotsV2Unavailable as error:
            log.error(  # noqa: TRY400 - a setting to fix, as above
                "bitrix.chatbots_v2_unavailable", setting="B24_EVENT_MODE", hint=str(error)
            )
            state.refused = (
                "not registered: this portal has no Chatbots 2.0; set B24_EVENT_MODE=webhook"
            )
            return False
        except BitrixError as error:
            # The code says what failed, the hint what it means; a traceback adds nothing.
            state.problem = refusal_hint(error)
            log.error(  # noqa: TRY400
                "bitrix.registration_failed",
                code=error.code,
                method=error.method,
                retry_in_s=wait,
                hint=state.problem,
            )
        except Exception:  # an answer it cannot read: tried again, never given up for good
            log.exception("bitrix.registration_failed", retry_in_s=wait)
        else:
            state.problem = None
            state.registered.set()
            return True
        await asyncio.sleep(wait)
        wait = min(wait * 2, backoff)


async def keep_tokens_fresh(accounts: SupervisorAccounts, *, every: float = 6 * 3600.0) -> None:
    """Application mode: renew supervisors' pairs whose refresh token nears its end of life
    (bot/bitrix/accounts.py), a few at a time, a few times a day; never each pair on a timer."""
    while True:
        try:
            renewed = await accounts.refresh_ageing()
        except Exception:
            log.exception("oauth.ageing_refresh_failed")
        else:
            if renewed:
                log.info("oauth.ageing_refreshed", renewed=renewed)
        await asyncio.sleep(every)
