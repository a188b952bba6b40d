"""Replies back by the transport their command came from: the Route union's one switch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from bot.models import BitrixRoute, Reply, Route, TelegramRoute

log = structlog.get_logger(__name__)

BitrixSend = Callable[[BitrixRoute, Reply, float], Awaitable[None]]
TelegramSend = Callable[[TelegramRoute, Reply, float], Awaitable[None]]


class ReplyRouter:
    """The JobRunner's SendReply: each reply goes through its platform's adapter."""

    def __init__(self, bitrix: BitrixSend | None, telegram: TelegramSend | None = None) -> None:
        self._bitrix, self._telegram = bitrix, telegram

    async def send(self, route: Route, reply: Reply, received_at: float) -> None:
        if isinstance(route, BitrixRoute) and self._bitrix is not None:
            await self._bitrix(route, reply, received_at)
        elif isinstance(route, TelegramRoute) and self._telegram is not None:
            await self._telegram(route, reply, received_at)
        else:
            # A job queued while that transport was enabled, and it is not now: the reply
            # cannot go anywhere; the job ends (delivered=False in its log line).
            log.warning("reply.transport_disabled", transport=route.kind)
            raise TransportDisabled(route.kind)


class TransportDisabled(Exception):
    """The reply's transport is not enabled in this process."""
