"""The service's background loops besides the workers: keeping the bot registered, and
pruning old de-dup keys. Each is one tracked task of the composition root (bot/app.py)."""

from __future__ import annotations

import asyncio
import time

import structlog

from bot.bitrix.client import BitrixClient
from bot.bitrix.registration_v2 import register_for_mode
from bot.config import Settings
from bot.errors import BitrixError, BotCodeTaken, ChatbotsV2Unavailable
from bot.state import BitrixState
from bot.storage import Storage

log = structlog.get_logger(__name__)


async def keep_pruning(storage: Storage, *, retention: float, every: float) -> None:
    """Forget de-dup keys of jobs finished longer ago than `retention`; a failing storage
    (locked by another process, say) is logged and tried again next time."""
    while True:
        try:
            pruned = await storage.prune(before=time.time() - retention)
        except Exception:
            log.exception("storage.prune_failed")
        else:
            if pruned:
                log.info("storage.pruned", jobs=pruned)
        await asyncio.sleep(every)


async def keep_registered(
    client: BitrixClient, settings: Settings, state: BitrixState, *, backoff: float
) -> None:
    """Register on start, and again whenever the bot is lost (deleted in the portal); while
    the portal is unreachable, keep trying with growing waits. A setting to fix (a code taken
    by another application, no Chatbots 2.0 in fetch mode) stops it for good."""
    while True:
        if not await _register(client, settings, state, backoff=backoff):
            return
        await state.lost.wait()
        state.lost.clear()
        log.warning("bitrix.registering_again", setting="B24_BOT_CODE", code=settings.b24_bot_code)


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
            # The code says what failed; a traceback would not add to it.
            log.error(  # noqa: TRY400
                "bitrix.registration_failed", code=error.code, method=error.method, retry_in_s=wait
            )
        except Exception:  # an answer it cannot read: tried again, never given up for good
            log.exception("bitrix.registration_failed", retry_in_s=wait)
        else:
            state.registered.set()
            return True
        await asyncio.sleep(wait)
        wait = min(wait * 2, backoff)
