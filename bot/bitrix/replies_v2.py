"""Replies through Chatbots 2.0: imbot.v2.Command.answer or imbot.v2.Chat.Message.send.

The fetch-mode twin of bot/bitrix/replies.py, by the same rules (protocol notes §00 items 6, 7,
9; §0 item 13; the docs' `chat-bots-v2/imbot.v2/commands/command-answer.md`,
`messages/chat-message-send.md`, `chat-message-update.md`, `message-keyboards.md`).

What differs from v1, and why:
- Command.answer answers `{"result": true}` whether it posted or found the command too old
  and posted nothing (the controller maps `Im\\Command::addMessage`'s silent `true` to the same
  answer as a post), so a dropped answer cannot be seen: the window is kept on our side, from
  when the portal queued the event (its `date`), since a fetched event may wait in the queue
  for up to 24 hours (the route's `queued_at`).
- A command id belongs to the bot of its API: a job queued in webhook mode (route api "v1")
  is answered by a message, never by a v2 command answer.
- A post where the bot is no member is 403 `ACCESS_DENIED` (chat-message-send.md), not v1's
  `WRONG_REQUEST`; an edit of a message that is not the bot's (or is gone) is `ACCESS_DENIED`
  too (chat-message-update.md).
- Every call names the bot (`botId`) and carries the `botToken`, which no log line or error
  ever holds. Without a bot id yet (the bot is being registered) a reply waits: a retryable
  error postpones its job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import structlog

from bot.bitrix.coalesce import RestCaller
from bot.bitrix.replies import ANSWER_WINDOW, keyboard_buttons
from bot.errors import BitrixBotNotReady, BitrixError
from bot.models import BitrixRoute, Reply

ANSWER: Final = "imbot.v2.Command.answer"
SEND: Final = "imbot.v2.Chat.Message.send"
UPDATE: Final = "imbot.v2.Chat.Message.update"
# Chat.Message.send into a chat the bot is not a member of (chat-message-send.md).
NOT_A_MEMBER: Final = "ACCESS_DENIED"
# Command.answer refused: the post failed, or the command is not (or no longer) the bot's
# (the v2 controller's `validateCommandOwnership`, §00 item 9): a message still answers.
ANSWER_REFUSED: Final = frozenset({"COMMAND_ANSWER_FAILED", "COMMAND_NOT_FOUND"})

log = structlog.get_logger(__name__)


class BitrixV2Replies:
    """Sends a Reply to where its command came from, never to an open line's customer."""

    def __init__(
        self,
        caller: RestCaller,
        bot_token: str,
        bot_id: Callable[[], int | None],
        *,
        answer_window: float = ANSWER_WINDOW,
    ) -> None:
        self._caller = caller
        self._bot_token = bot_token
        self._bot_id = bot_id
        self._answer_window = answer_window

    async def send(self, route: BitrixRoute, reply: Reply, received_at: float) -> None:
        if not reply.text:
            return  # the core decided to say nothing (a silent job)
        bot_id = self._bot_id()
        if bot_id is None:
            raise BitrixBotNotReady(SEND)
        fields: dict[str, Any] = {"message": reply.text}
        if reply.buttons:
            # Button fields are upper-case in both APIs; BOT_ID next to BUTTONS routes a click
            # to this bot (message-keyboards.md).
            fields["keyboard"] = {"BOT_ID": bot_id, "BUTTONS": keyboard_buttons(reply)}
        if route.openline:
            # Privacy: the supervisor is answered in their private chat with the bot, never in
            # the line, whose connector forwards to the customer (§00 item 7). Nor is a
            # keyboard ever settled there: the bot never leaves one in a line.
            await self._call(SEND, bot_id, dialogId=route.author_dialog_id, fields=fields)
            return
        if reply.settled and route.keyboard_message_id is not None:
            if not await self._settle_keyboard(bot_id, route.keyboard_message_id, reply):
                # The click's command message is the keyboard's, which the portal would not
                # edit (deleted?): an answer to it may post nothing, and its `true` would not
                # tell [UNCONFIRMED], so a new message says it.
                await self._post_message(bot_id, route, fields)
            return
        if self._may_answer(route, received_at) and await self._answer(bot_id, route, fields):
            return
        await self._post_message(bot_id, route, fields)

    def _may_answer(self, route: BitrixRoute, received_at: float) -> bool:
        """A v2 command, answered well within Bitrix24's 10 minutes of its event (§0 item 13):
        counted from when the portal queued it, when it says, else from when it arrived."""
        if route.api != "v2" or route.command_id is None or route.message_id is None:
            return False
        since = min(received_at, route.queued_at or received_at)
        return time.time() - since < self._answer_window

    async def _answer(self, bot_id: int, route: BitrixRoute, fields: dict[str, Any]) -> bool:
        """Command.answer; False when it was refused and a message must answer instead. In a
        chat the bot is not in, Bitrix24 posts it as a system message (command-answer.md)."""
        try:
            answer = await self._call(
                ANSWER,
                bot_id,
                commandId=route.command_id,
                messageId=route.message_id,
                dialogId=route.dialog_id,
                fields=fields,
            )
        except BitrixError as error:
            if error.retryable or error.code not in ANSWER_REFUSED:
                raise
            log.info("reply.answer_refused", code=error.code, command_id=route.command_id)
            return False
        # `{"result": true}` (command-answer.md and the controller today); an earlier page
        # showed a bare `true`, taken alike rather than posting the reply twice.
        if answer is True or (isinstance(answer, dict) and answer.get("result") is True):
            return True
        # Anything else is not taken for a post [UNCONFIRMED whether Bitrix24 answers so].
        log.info("reply.answer_dropped", command_id=route.command_id)
        return False

    async def _post_message(self, bot_id: int, route: BitrixRoute, fields: dict[str, Any]) -> None:
        """A message, in the chat if the bot is in it, else in the author's private chat."""
        dialog_id = route.dialog_id if route.bot_in_chat else route.author_dialog_id
        if dialog_id == route.author_dialog_id:
            await self._call(SEND, bot_id, dialogId=dialog_id, fields=fields)
            return
        # Outside the private chat, never through a connector to a customer (§00 item 7): in
        # a chat without one, the flag changes nothing [UNCONFIRMED].
        try:
            await self._call(
                SEND, bot_id, dialogId=dialog_id, fields=fields | {"skipConnector": "Y"}
            )
        except BitrixError as error:
            if error.code != NOT_A_MEMBER:
                raise
            # The bot is not (or no longer) in the chat (§00 item 6): the supervisor is
            # answered privately rather than not at all.
            log.info("reply.chat_left", code=error.code)
            await self._call(SEND, bot_id, dialogId=route.author_dialog_id, fields=fields)

    async def _settle_keyboard(self, bot_id: int, message_id: int, reply: Reply) -> bool:
        """A click completed what its keyboard offered: the keyboard's message becomes the
        reply, without buttons (`keyboard: "N"` removes them, chat-message-update.md). False
        when Bitrix24 will not edit it (deleted, not the bot's: ACCESS_DENIED)."""
        fields = {"message": reply.text, "keyboard": "N"}
        try:
            await self._call(UPDATE, bot_id, messageId=message_id, fields=fields)
        except BitrixError as error:
            if error.retryable:
                raise
            log.warning("reply.keyboard_not_updated", code=error.code, message_id=message_id)
            return False
        return True

    async def _call(self, method: str, bot_id: int, **params: Any) -> Any:
        return await self._caller.call(
            method, {"botId": bot_id, "botToken": self._bot_token, **params}
        )
