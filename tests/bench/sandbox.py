"""What the client benchmarks share: the sandbox portal served on loopback, and a run of
calls made a number at a time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from pydantic import SecretStr

from bot.errors import BitrixRateLimited
from bot.sandbox.app import create_sandbox_app
from bot.sandbox.portal import Portal

WEBHOOK_CODE = "benchcode"


@contextlib.asynccontextmanager
async def served(portal: Portal, *, rate: float, burst: int) -> AsyncIterator[SecretStr]:
    """Serve the portal over HTTP on loopback; yields the main webhook's URL."""
    runner = web.AppRunner(create_sandbox_app(portal, rate=rate, burst=burst), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield SecretStr(f"http://127.0.0.1:{port}/rest/1/{WEBHOOK_CODE}/")
    finally:
        await runner.cleanup()


async def run_calls(
    calls: int, concurrency: int, call: Callable[[], Awaitable[object]]
) -> tuple[float, int]:
    """Make `calls` calls, `concurrency` at a time: (seconds elapsed, calls refused with a
    rate-limit error)."""
    refused = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(calls):
        queue.put_nowait(n)

    async def worker() -> None:
        nonlocal refused
        while not queue.empty():
            queue.get_nowait()
            try:
                await call()
            except BitrixRateLimited:
                refused += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started, refused
