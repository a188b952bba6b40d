"""Helpers for the Telegram core's tests: the real dispatch's Services over the sandbox portal
(votes and people through a REST client on loopback), linked accounts over real SQLite, and
commands as each transport's adapter hands them over."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from bot.bitrix.client import BitrixClient
from bot.bitrix.people import BitrixPeople
from bot.bitrix.votes import BitrixSessionVotes
from bot.config import UserAllowList
from bot.dispatch import Services
from bot.jobs import session_of
from bot.links import StoredLinks
from bot.models import AuthorKind, BitrixRoute, IncomingCommand, TelegramRoute
from bot.storage import Storage, open_storage

SUPERVISORS = UserAllowList(ids=frozenset({27, 301, 1211}))  # 301 extranet, 1211 a customer
TG_GROUP = -1001234
FEED_CHAT = -1009999
BOT_USERNAME = "RatingTestBot"
CODE = re.compile(r"code: ([0-9A-Z]{10})")  # a link code in the English answer


async def linked_storage(tmp_path: Path) -> tuple[Storage, StoredLinks]:
    storage = await open_storage(f"sqlite:///{tmp_path / 'bot.sqlite3'}", session_of=session_of)
    return storage, StoredLinks(storage, key=b"test key", static={7007: 28})


def services(
    make_client: Callable[..., BitrixClient],
    links: StoredLinks | None,
    *,
    feed_chat_id: int | None = None,
    telegram_username: str | None = BOT_USERNAME,
) -> Services:
    client = make_client()
    return Services(
        BitrixSessionVotes(client),
        SUPERVISORS,
        BitrixPeople(client),
        links=links,
        telegram_username=lambda: telegram_username,
        feed_chat_id=feed_chat_id,
    )


def from_telegram(
    text: str,
    *,
    tg_user: int = 5001,
    b24_user: int | None = None,
    chat_id: int = TG_GROUP,
    key: str = "tg:1:0",
    kind: AuthorKind = "unverified",
    follows: bool = False,
) -> IncomingCommand:
    """A Telegram update's command as the adapter enqueues it: the linked user looked up."""
    return IncomingCommand(
        key=key,
        source="telegram",
        author_id=tg_user,
        b24_user_id=b24_user,
        author_kind=kind,
        text=text,
        follows=follows,
        language="en",
        received_at=time.time(),
        route=TelegramRoute(chat_id=chat_id, message_id=10),
    )


def from_bitrix(
    text: str, *, user: int = 27, dialog_id: str | None = None, key: str = "b24:1:0"
) -> IncomingCommand:
    """A Bitrix24 command; by default in the author's private chat with the bot."""
    return IncomingCommand(
        key=key,
        source="bitrix",
        author_id=user,
        text=text,
        language="en",
        received_at=time.time(),
        route=BitrixRoute(dialog_id=dialog_id or str(user), author_dialog_id=str(user)),
    )
