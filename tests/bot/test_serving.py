"""Serving over loopback: idle and slow connections cannot exhaust the process (issue 8 item 15),
and the server-side error log cannot flood."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from bot.app import AccessLogger, create_app
from bot.config import Settings
from bot.serving import Limits, RateLimited, Served, start_serving
from tests.harness import eventually

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Serve = Callable[[Limits], Awaitable[Served]]


@pytest.fixture
async def serve(settings: Settings) -> AsyncIterator[Serve]:
    """The service (no portal: /healthz and friends) behind the guard, on a free port."""
    started: list[Served] = []

    async def start(limits: Limits) -> Served:
        served = await start_serving(
            create_app(settings),
            host="127.0.0.1",
            port=0,
            limits=limits,
            stop_timeout=2,
            access_log_class=AccessLogger,
        )
        started.append(served)
        return served

    yield start
    for served in started:
        await served.stop()


@pytest.fixture
async def sockets() -> AsyncIterator[list[Connection]]:
    """Raw connections a test opens; all closed after it."""
    opened: list[Connection] = []
    yield opened
    for _, writer in opened:
        writer.close()


async def connect(served: Served, opened: list[Connection]) -> Connection:
    connection = await asyncio.open_connection("127.0.0.1", served.port)
    opened.append(connection)
    return connection


async def healthz(served: Served, session: aiohttp.ClientSession) -> int:
    async with session.get(f"http://127.0.0.1:{served.port}/healthz") as response:
        return response.status


async def test_200_idle_sockets_do_not_stop_healthz(
    serve: Serve, sockets: list[Connection], http: aiohttp.ClientSession
) -> None:
    served = await serve(Limits())
    for _ in range(200):
        await connect(served, sockets)
    assert await healthz(served, http) == 200


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connects and says nothing
        b"GET /healthz HTTP/1.1\r\nHost: bot\r\n",  # half a request head, then silence
        b"POST /b24/events/x HTTP/1.1\r\nHost: bot\r\nContent-Type: application/x-www-",
    ],
)
async def test_a_connection_without_a_whole_request_head_is_closed_after_the_timeout(
    serve: Serve, sockets: list[Connection], http: aiohttp.ClientSession, sent: bytes
) -> None:
    served = await serve(Limits(head_timeout=0.3))
    reader, writer = await connect(served, sockets)
    writer.write(sent)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
    assert await healthz(served, http) == 200  # a whole request in time is served


async def test_a_head_trickled_a_byte_at_a_time_is_still_cut_at_the_timeout(
    serve: Serve, sockets: list[Connection]
) -> None:
    served = await serve(Limits(head_timeout=0.5))
    reader, writer = await connect(served, sockets)
    head = b"GET /healthz HTTP/1.1\r\nHost: bot\r\nX-Slow: " + b"a" * 10_000

    async def trickle() -> None:
        for byte in head:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    sending = asyncio.create_task(trickle())
    try:
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        sending.cancel()


async def test_beyond_the_cap_new_connections_are_refused_while_open_ones_are_served(
    serve: Serve, sockets: list[Connection]
) -> None:
    served = await serve(Limits(max_connections=5))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as kept:
        assert await healthz(served, kept) == 200  # one kept-alive connection
        for _ in range(4):
            await connect(served, sockets)
        server = served.guard.server
        assert server is not None
        await eventually(lambda: len(server.connections) == 5)
        reader, _ = await connect(served, sockets)
        refusal = await asyncio.wait_for(reader.read(), 10)
        assert refusal.startswith(b"HTTP/1.1 503 ")
        assert served.guard.refused == 1
        assert await healthz(served, kept) == 200  # the open connection is still served


async def test_a_peer_that_asks_and_never_reads_is_cut_at_the_write_timeout(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """The attack ("slow read"): pipeline enough requests for the answers to fill the socket
    buffers, then read nothing. The handler waits on the full buffer, outside the head and
    keep-alive timeouts, so the connection (and its place under the cap) was held forever."""
    served = await serve(Limits(write_timeout=0.5))
    peer = socket.socket()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.setblocking(False)  # noqa: FBT003 - the socket API
    try:
        await asyncio.get_running_loop().sock_connect(peer, ("127.0.0.1", served.port))
        requests = b"GET /metrics HTTP/1.1\r\nHost: bot\r\n\r\n" * 3000
        await asyncio.get_running_loop().sock_sendall(peer, requests)
        server = served.guard.server
        assert server is not None
        await eventually(lambda: server.connections)  # accepted: the answers pile up
        await eventually(lambda: not server.connections, within=20)
    finally:
        peer.close()
    assert await healthz(served, http) == 200  # a peer that reads is served


class Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_flood_of_one_log_line_is_cut_to_a_few_per_period() -> None:
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("tests.serving.flood")
    logger.propagate = False
    handler = Collect(records)
    logger.addHandler(handler)
    limiter = RateLimited(burst=3, period=0.2)
    logger.addFilter(limiter)
    try:
        for _ in range(100):
            logger.error("socket.accept() out of system resource")
        logger.error("another kind")
        assert [r.getMessage() for r in records] == [
            "socket.accept() out of system resource",
        ] * 3 + ["another kind"]
        records.clear()
        time.sleep(0.25)  # the period is over
        logger.error("socket.accept() out of system resource")
        assert [r.getMessage() for r in records] == [
            "socket.accept() out of system resource (97 like it dropped)"
        ]
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(limiter)
