"""aiogram's handlers: each update's commands stored in the durable queue before the update is
acknowledged (polling: aiogram confirms an offset only after the handler returned, as updates
are handled one by one; webhook: before the 200), so a restart loses none."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from aiogram import Router
from aiogram.types import CallbackQuery, Message, Update

from bot.config import UserAllowList
from bot.intake import admit
from bot.models import IncomingCommand
from bot.state import Core
from bot.telegram.strangers import StrangerGate
from bot.telegram.updates import (
    Chats,
    LinkOf,
    command_of_click,
    commands_of_message,
    migration_hint,
    notice_of_post,
)

log = structlog.get_logger(__name__)


class NotStored(Exception):
    """The commands could not be stored now: the update must come again (webhook: a 503)."""


@dataclass
class UpdateIntake:
    """What the handlers need: the chats, the links, the queue and its limits."""

    chats: Callable[[], Chats | None]  # None until getMe has said who the bot is
    link_of: LinkOf
    supervisors: UserAllowList
    core: Core
    queue_limit: int
    user_share: int
    # Polling: wait (with backoff) until the queue takes the update, rather than let aiogram
    # confirm an update that was not stored; Telegram keeps it meanwhile. Webhook: a 503.
    patient: bool = False
    longest_wait: float = 30.0
    clock: Callable[[], float] = time.time
    strangers: StrangerGate = field(default_factory=StrangerGate)

    async def store(self, commands: list[IncomingCommand], message_key: str) -> None:
        if not commands:
            return
        first = commands[0]
        acting = first.acting_user()
        admitted = admit(
            commands,
            message_key=message_key,
            may_rate=lambda _: acting is not None and self.supervisors.allows(acting),
        )
        wait = 0.1
        while isinstance(fresh := await self._enqueue(admitted), str):
            log.warning("telegram.not_stored", reason=fresh, user_id=first.author_id)
            if fresh == "user_share":
                # One person's flood: the excess is dropped (acknowledged), never delivered
                # again, so nobody else's updates wait behind it (a webhook's 503 would hold
                # Telegram's queue for the whole bot until that person's jobs drained).
                return
            if not self.patient:
                raise NotStored(fresh)
            await asyncio.sleep(wait)
            wait = min(wait * 2, self.longest_wait)
        self.core.runner.wake()
        log.info(
            "telegram.update_accepted",
            key=message_key,
            commands=len(fresh),
            duplicates=len(admitted) - len(fresh),
        )

    async def _enqueue(self, commands: list[IncomingCommand]) -> list[str] | str:
        """The keys stored, or why nothing was: user_share, queue_full, shutting_down,
        storage_error."""
        if not self.core.runner.accepting:
            return "shutting_down"
        try:
            return await self.core.storage.enqueue(
                commands, limit=self.queue_limit, user_limit=self.user_share
            )
        except Exception:
            log.warning("telegram.storage_error", exc_info=True)
            return "storage_error"


def build_router(intake: UpdateIntake) -> Router:
    """The one router: messages, channel posts and button presses."""
    router = Router(name="rating")

    @router.message()
    async def on_message(message: Message, event_update: Update) -> None:
        chats = _known(intake)
        update_id = event_update.update_id
        if message.migrate_to_chat_id is not None:
            migration_hint(message, chats.allowed)
            return
        if message.from_user is None or message.sender_chat is not None:
            await _store_notice(intake, message, update_id, chats)
            return
        commands = commands_of_message(
            message, update_id=update_id, chats=chats, b24_user_id=None, received_at=intake.clock()
        )
        if commands:  # the link is looked up only for a message that holds commands
            b24_user_id = await intake.link_of(message.from_user.id)
            commands = [c.model_copy(update={"b24_user_id": b24_user_id}) for c in commands]
            stranger = b24_user_id is None and message.chat.type == "private"
            if stranger and not intake.strangers.admits(message.from_user.id):
                log.info("telegram.stranger_dropped", user_id=message.from_user.id)
                return
        await intake.store(commands, f"tg:{update_id}")

    @router.channel_post()
    async def on_channel_post(message: Message, event_update: Update) -> None:
        await _store_notice(intake, message, event_update.update_id, _known(intake))

    @router.callback_query()
    async def on_click(query: CallbackQuery) -> None:
        command = command_of_click(
            query,
            chats=_known(intake),
            b24_user_id=await intake.link_of(query.from_user.id),
            received_at=intake.clock(),
        )
        if command is not None:
            await intake.store([command], command.key)

    return router


def _known(intake: UpdateIntake) -> Chats:
    chats = intake.chats()
    if chats is None:  # getMe has not answered yet: `/rate@Bot` cannot be told from others'
        raise NotStored("starting")
    return chats


async def _store_notice(
    intake: UpdateIntake, message: Message, update_id: int, chats: Chats
) -> None:
    """A post with no person behind it: its notice goes through the queue like any answer
    (stored once per update, sent by the workers, 429 and all)."""
    notice = notice_of_post(message, update_id=update_id, chats=chats, received_at=intake.clock())
    if notice is not None:
        await intake.store([notice], f"tg:{update_id}")
