"""Real aiogram against the sandbox's fake Telegram, over HTTP on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp.test_utils import TestServer

from bot.sandbox.telegram.world import TelegramWorld
from tests.harness import telegram_api_url


def aiogram_bot(sandbox: TestServer, token: str) -> Bot:
    api = TelegramAPIServer.from_base(telegram_api_url(sandbox))
    return Bot(token, session=AiohttpSession(api=api))


@pytest.fixture
async def bot(sandbox: TestServer, telegram_world: TelegramWorld) -> AsyncIterator[Bot]:
    """An aiogram Bot with the seeded world's token, pointed at the fake."""
    tg = aiogram_bot(sandbox, telegram_world.token)
    yield tg
    await tg.session.close()
