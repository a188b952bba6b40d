"""What keeps the chat page's state bounded however much is posted: the newest messages of
each chat, each cut to its first characters. A message of a megabyte, or ten thousand
messages, are drawn as a page can draw them, and rendered in bounded time (the BB-code
renderer's work grows with the square of a text's length)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Final, Protocol, TypeVar

SHOWN_MESSAGES: Final = 200  # the newest of each chat
SHOWN_TEXT: Final = 2000  # characters of a message


class InChat(Protocol):
    @property
    def chat_id(self) -> int: ...


M = TypeVar("M", bound=InChat)


def newest_per_chat(messages: Iterable[M]) -> list[M]:
    """The newest SHOWN_MESSAGES of each chat, in the order given (oldest first)."""
    seen: Counter[int] = Counter()
    kept = []
    for message in reversed(list(messages)):
        seen[message.chat_id] += 1
        if seen[message.chat_id] <= SHOWN_MESSAGES:
            kept.append(message)
    return kept[::-1]


def cut(text: str) -> str:
    """At most SHOWN_TEXT characters of `text`, saying how many more there were."""
    if len(text) <= SHOWN_TEXT:
        return text
    return f"{text[:SHOWN_TEXT]}… ({len(text) - SHOWN_TEXT} more characters)"
