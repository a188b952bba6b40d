"""Replies back into Telegram: sendMessage, editMessageText, answerCallbackQuery.

Everything goes as plain text, with no parse_mode: Telegram then reads no markup at all, so a
comment like `<b>`, `&amp;`, `<a href=…>` or `*bold*` is shown exactly as typed. The core's texts
use Bitrix24's `[b]` sparingly; those tags are dropped here (a user's own `[b]` reaches us with
a word joiner after its `[`, bot/markup.py, so it never matches and stays as typed).

Bidi controls are stripped: the embeddings, overrides and isolates (U+202A-U+202E,
U+2066-U+2069) a user's text may hold. bot/markup.py closes the ones a user opened where their
text ends, which keeps the bot's own words in order where the client implements UAX #9 fully;
but inside the quote an override still reverses what the user wrote, so a comment can be made
to read "Session 495: ★☆☆☆☆" beside the bot's real words, and not every Telegram client is
known to handle isolates [UNCONFIRMED]. Stripped, no control can flip anything on any client;
the bot's texts use none, and Bitrix24 stores the comment exactly as typed. Strong
right-to-left letters and the marks (U+200E, U+200F, U+061C) stay: they are text, and cannot
reorder the left-to-right words around them.

Failures become TelegramApiError: 429 is retryable with Telegram's `retry_after`, honoured by
the durable queue (bot/jobs.py); network and server errors are retryable; 403 (the bot was
removed from the chat, or the user blocked it) is logged and not retried.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import structlog
from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters

from bot.errors import TelegramApiError
from bot.models import Reply, TelegramRoute

log = structlog.get_logger(__name__)

MAX_MESSAGE: Final = 4096  # characters of a message's text (Bot API sendMessage)
MAX_ALERT: Final = 200  # characters of a callback query's answer (answerCallbackQuery)
MAX_CALLBACK_DATA: Final = 64  # bytes of a button's callback_data (InlineKeyboardButton)
_OUR_TAGS: Final = re.compile(r"\[/?b\]", re.IGNORECASE)
_BIDI_CONTROLS: Final = re.compile("[\u202a-\u202e\u2066-\u2069]")

T = TypeVar("T")


def plain(text: str) -> str:
    """A core text as Telegram shows it: our `[b]` tags and every bidi control dropped, cut to
    one message."""
    text = _BIDI_CONTROLS.sub("", _OUR_TAGS.sub("", text))
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """The reply's buttons in one row; a button whose command would not fit is left out."""
    buttons = []
    for button in reply.buttons:
        if button.url is not None:
            buttons.append(InlineKeyboardButton(text=button.text, url=button.url))
            continue
        data = f"/{button.command} {button.params}".strip()
        if len(data.encode()) > MAX_CALLBACK_DATA:
            log.warning("telegram.button_too_long", command=button.command)
            continue
        buttons.append(InlineKeyboardButton(text=button.text, callback_data=data))
    return InlineKeyboardMarkup(inline_keyboard=[buttons]) if buttons else None


class RateHold:
    """The chats Telegram told to wait (429 `retry_after`), and until when. A reply to such a
    chat is postponed by the queue without a request: in a 429 storm each waiting reply would
    otherwise ask again, every `retry_after`, and be refused again. [UNCONFIRMED] whether a
    429 holds one chat or the whole bot; the hold is per chat, where group limits apply."""

    def __init__(self, longest: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._longest = longest  # the queue's longest wait: whatever a server asks, no more
        self._clock = clock
        self._until: dict[int, float] = {}

    def check(self, chat_id: int) -> None:
        left = self._until.get(chat_id, 0.0) - self._clock()
        if left > 0:
            raise TelegramApiError(
                "sendMessage", "too_many_requests", retryable=True, retry_after=left
            )

    def hold(self, chat_id: int, seconds: float) -> None:
        now = self._clock()
        self._until = {chat: until for chat, until in self._until.items() if until > now}
        until = now + min(seconds, self._longest)
        self._until[chat_id] = max(self._until.get(chat_id, 0.0), until)


class TelegramReplies:
    """Sends a Reply to the chat its command came from, as a reply to the command."""

    def __init__(self, bot: Bot, longest_hold: float = 300.0, timeout: int = 10) -> None:
        self._bot = bot
        self.held = RateHold(longest_hold)
        # A Bot API that does not answer (packets dropped, a proxy hanging) would hold a worker
        # for aiogram's 60 s a reply, every worker in the end, Bitrix24's commands waiting
        # behind them: a reply gives up after `timeout` seconds and is tried again later.
        self._timeout = timeout

    async def send(self, route: TelegramRoute, reply: Reply, received_at: float) -> None:  # noqa: ARG002 - Telegram has no answer window
        self.held.check(route.chat_id)
        try:
            await self._send(route, reply)
        except TelegramApiError as error:
            if error.retry_after is not None:
                self.held.hold(route.chat_id, error.retry_after)
            raise

    async def _send(self, route: TelegramRoute, reply: Reply) -> None:
        text = plain(reply.text)
        if route.callback_query_id is not None:
            await self._settle_click(route, reply, text)
            return
        if text:
            await self._post(route, text, keyboard(reply))

    async def _settle_click(self, route: TelegramRoute, reply: Reply, text: str) -> None:
        """A press is answered (the button stops spinning); a completed vote replaces the
        keyboard's message; anything else (a refusal to someone who may not rate) is shown to
        the presser alone, as an alert, when it fits one."""
        query_id = route.callback_query_id
        assert query_id is not None  # noqa: S101 - checked by send
        alert = bool(text) and not reply.settled and len(text) <= MAX_ALERT
        await self._answer_callback(query_id, text if alert else None)
        if not text or alert:
            return
        if reply.settled and route.keyboard_message_id is not None:
            edited = await _call(
                "editMessageText",
                lambda: self._bot.edit_message_text(
                    text=text,
                    chat_id=route.chat_id,
                    message_id=route.keyboard_message_id,
                    request_timeout=self._timeout,
                ),
                bad_request_ok=True,
            )
            if edited is not None:
                return
        await self._post(route, text, keyboard(reply))

    async def _answer_callback(self, query_id: str, text: str | None) -> None:
        # A query older than Telegram keeps (about 15 s [UNCONFIRMED]) answers 400: the vote's
        # message still goes; nothing is lost by not stopping a spinner that has stopped.
        await _call(
            "answerCallbackQuery",
            lambda: self._bot.answer_callback_query(
                query_id, text=text, show_alert=bool(text), request_timeout=self._timeout
            ),
            bad_request_ok=True,
        )

    async def _post(
        self, route: TelegramRoute, text: str, markup: InlineKeyboardMarkup | None
    ) -> None:
        answer_to = None
        if route.message_id is not None:
            # The command's message may be deleted by now: the answer goes all the same.
            answer_to = ReplyParameters(
                message_id=route.message_id, allow_sending_without_reply=True
            )
        await _call(
            "sendMessage",
            lambda: self._bot.send_message(
                chat_id=route.chat_id,
                text=text,
                message_thread_id=route.thread_id,
                reply_parameters=answer_to,
                reply_markup=markup,
                parse_mode=None,  # plain text: nothing a user wrote is markup
                request_timeout=self._timeout,
            ),
        )


async def _call(
    method: str, request: Callable[[], Awaitable[T]], *, bad_request_ok: bool = False
) -> T | None:
    """One Bot API call, its failures as TelegramApiError; a 400 is None when `bad_request_ok`."""
    try:
        return await request()
    except TelegramRetryAfter as error:
        log.warning("telegram.rate_limited", method=method, retry_after_s=error.retry_after)
        raise TelegramApiError(
            method, "too_many_requests", retryable=True, retry_after=float(error.retry_after)
        ) from None
    except TelegramForbiddenError as error:
        # Removed from the group, or blocked by the user: trying again changes nothing.
        log.warning("telegram.forbidden", method=method, description=error.message[:200])
        raise TelegramApiError(method, "forbidden", retryable=False) from None
    except (TelegramNetworkError, TelegramServerError) as error:
        raise TelegramApiError(
            method, type(error).__name__, retryable=True, description=error.message[:200]
        ) from None
    except TelegramBadRequest as error:
        if bad_request_ok:
            log.info("telegram.bad_request", method=method, description=error.message[:200])
            return None
        raise TelegramApiError(
            method, "bad_request", retryable=False, description=error.message[:200]
        ) from None
    except TelegramAPIError as error:
        raise TelegramApiError(
            method, type(error).__name__, retryable=False, description=error.message[:200]
        ) from None
