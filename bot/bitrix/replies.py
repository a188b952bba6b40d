"""Replies back into Bitrix24: imbot.command.answer or imbot.message.add (protocol notes §6)."""

from __future__ import annotations

import time
from typing import Any, Final

import structlog

from bot.bitrix.coalesce import RestCaller
from bot.errors import BitrixError
from bot.models import BitrixRoute, Reply

# Bitrix24 silently drops a command answer after 10 minutes (§0 item 13); anything later than
# this goes as a plain message instead.
ANSWER_WINDOW: Final = 300.0
# imbot.message.add into a chat the bot is not a member of (§00 item 6).
NOT_A_MEMBER: Final = "WRONG_REQUEST"

log = structlog.get_logger(__name__)


class BitrixReplies:
    """Sends a Reply to where its command came from, never to an open line's customer."""

    def __init__(
        self, client: RestCaller, client_id: str, *, answer_window: float = ANSWER_WINDOW
    ) -> None:
        self._client = client
        self._client_id = client_id
        self._answer_window = answer_window

    async def send(self, route: BitrixRoute, reply: Reply, received_at: float) -> None:
        if not reply.text:
            return  # the core decided to say nothing (a silent job)
        keyboard = route.keyboard_message_id
        if keyboard and reply.settled and await self._settle_keyboard(keyboard, route, reply):
            return
        params: dict[str, Any] = {"MESSAGE": reply.text, "CLIENT_ID": self._client_id}
        if reply.buttons:
            params["KEYBOARD"] = {"BUTTONS": keyboard_buttons(reply)}
        fresh = time.time() - received_at < self._answer_window
        if route.openline:
            # Privacy: in an open-line chat the connector forwards messages to the customer
            # (§6.7, §8), and whether a command answer is forwarded too is unconfirmed; so the
            # supervisor is answered in their private chat with the bot, never in the line.
            params["DIALOG_ID"] = route.author_dialog_id
            await self._client.call("imbot.message.add", params)
        elif route.api == "v1" and route.command_id and route.message_id and fresh:
            # A v2 route (a job queued in fetch mode before the switch back to webhook mode)
            # names a command of the replaced bot: it is answered by a message.
            answer = {"COMMAND_ID": route.command_id, "MESSAGE_ID": route.message_id}
            posted = await self._client.call("imbot.command.answer", params | answer)
            if posted is True:
                # `true` instead of a message id: Bitrix24 found the command too old and
                # posted nothing (§0 item 13), though it was fresh by our clock.
                log.info("reply.answer_dropped", command_id=route.command_id)
                await self._post_message(route, params)
        else:
            await self._post_message(route, params)

    async def _post_message(self, route: BitrixRoute, params: dict[str, Any]) -> None:
        """Too late for a command answer: a message, in the chat if the bot is in it."""
        params["DIALOG_ID"] = route.dialog_id if route.bot_in_chat else route.author_dialog_id
        if params["DIALOG_ID"] == route.author_dialog_id:
            await self._client.call("imbot.message.add", params)
            return
        # Outside the private chat, never through a connector to a customer (§00 item 7): in
        # a chat without one, the flag changes nothing [UNCONFIRMED].
        try:
            await self._client.call("imbot.message.add", params | {"SKIP_CONNECTOR": "Y"})
        except BitrixError as error:
            if error.code != NOT_A_MEMBER:
                raise
            # The bot has left the chat since the command came (§00 item 6): the supervisor
            # is answered privately rather than not at all.
            log.info("reply.chat_left", code=error.code)
            params["DIALOG_ID"] = route.author_dialog_id
            await self._client.call("imbot.message.add", params)

    async def _settle_keyboard(self, message_id: int, route: BitrixRoute, reply: Reply) -> bool:
        """A click completed what its keyboard offered: the keyboard's message becomes the
        reply, without buttons (§6.7: an `N` KEYBOARD clears them). False when Bitrix24 will
        not edit it (deleted, older than three days), or for a click in an open line, where
        the bot never leaves a keyboard: then the reply goes the usual way."""
        if route.openline:
            return False
        params = {
            "MESSAGE_ID": message_id,
            "MESSAGE": reply.text,
            "KEYBOARD": "N",
            "CLIENT_ID": self._client_id,
        }
        if route.dialog_id != route.author_dialog_id:
            params["SKIP_CONNECTOR"] = "Y"  # as for a new message outside the private chat
        try:
            await self._client.call("imbot.message.update", params)
        except BitrixError as error:
            if error.retryable:
                raise
            log.warning("reply.keyboard_not_updated", code=error.code, message_id=message_id)
            return False
        return True


def keyboard_buttons(reply: Reply) -> list[dict[str, str]]:
    """The reply's buttons as Bitrix24 takes them, in v1 and v2 alike (§6.9): each sends
    `/<command> <params>` to the bot, inline, or opens its `LINK` (keyboards.md)."""
    return [
        {"TEXT": b.text, "LINK": b.url, "DISPLAY": "LINE"}
        if b.url is not None
        else {"TEXT": b.text, "COMMAND": b.command, "COMMAND_PARAMS": b.params, "DISPLAY": "LINE"}
        for b in reply.buttons
    ]
