"""The service as its own process against the sandbox portal, and the load a benchmark gives it.

The service runs as its own process (its own core); the sandbox portal and the load run in the
benchmark's process. `bench_modes` drives a run; this module holds what it needs:

- the service process (`serve`, `start_service`), in fetch or webhook mode, coalescing or naive;
- the sandbox portal seeded with sessions and supervisors (`bench_portal`);
- commands completed per second inside the default bucket (2/s, 50 burst), with the 503s the
  portal answered and the commands lost (`throughput`);
- webhook mode's event intake: events acknowledged per second and the p99 acknowledgement
  time (`intake`);
- the service's resident memory (peak) (`peak_rss_mb`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.sandbox.portal import Portal, Session, User
from bot.sandbox.seed import seeded_portal

FIRST_SESSION = 10_000
# The load comes from many supervisors, as on a real portal: one person may hold at most 50
# unfinished commands (the per-user share), so one person's thousand would be refused.
SUPERVISORS = 200
FIRST_SUPERVISOR = 20_000


def supervisor(n: int) -> int:
    return FIRST_SUPERVISOR + n % SUPERVISORS


REPOSITORY = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve(naive: bool) -> None:
    """The service process: settings from the environment, tuning by the mode."""
    from bot.app import AccessLogger, Tuning, create_app  # noqa: PLC0415
    from bot.config import Settings  # noqa: PLC0415
    from bot.logs import configure_logging  # noqa: PLC0415

    settings = Settings.from_sources(os.environ, env_file=None)
    configure_logging(level=settings.bot_log_level)
    tuning = Tuning(workers=1, coalesce=False) if naive else Tuning()
    web.run_app(
        create_app(settings, tuning=tuning),
        host=settings.bot_host,
        port=settings.bot_port,
        access_log=None,
        access_log_class=AccessLogger,
        print=None,
    )


async def start_service(
    portal_url: str, event_mode: str, naive: bool, workdir: Path
) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = {
        "B24_WEBHOOK_URL": portal_url,
        "BOT_HOST": "127.0.0.1",
        "BOT_PORT": str(port),
        "BOT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "B24_EVENT_MODE": event_mode,
        "B24_SUPERVISOR_IDS": "*",
        "BOT_DATABASE_URL": f"sqlite:///{workdir / 'bot.sqlite3'}",
        "PYTHONPATH": str(REPOSITORY),
        "BOT_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
    }
    args = ["-m", "tests.bench.bench_service", "serve"] + (["--naive"] if naive else [])
    process = await asyncio.create_subprocess_exec(sys.executable, *args, env=env, cwd=workdir)
    return process, port


async def wait_until(probe: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark's expected state did not come about")
        await asyncio.sleep(0.01)


def bench_portal(sessions: int) -> Portal:
    """A portal with `sessions` sessions of line 1 and SUPERVISORS heads of that line."""
    portal = seeded_portal(webhook_code="benchcode")
    for n in range(sessions):
        portal.sessions[FIRST_SESSION + n] = Session(FIRST_SESSION + n, 1, 1157, 101)
    for n in range(SUPERVISORS):
        portal.users[supervisor(n)] = User(supervisor(n), "Руководитель", str(n))
        portal.lines[1].heads.add(supervisor(n))
    return portal


async def throughput(
    portal: Portal, sender: Any, bot_id: int, commands: int, concurrency: int
) -> dict[str, float]:
    """Send `commands` votes at once; time until every one is stored and answered. The
    sustained rate leaves out the first half, which the bucket's burst of 50 speeds up."""
    gate = asyncio.Semaphore(concurrency)
    replies_before = sum(1 for m in portal.messages.values() if m.author_id == bot_id)

    async def one(n: int) -> None:
        async with gate:
            await sender.send_message(supervisor(n), bot_id, f"/rate {FIRST_SESSION + n} 5 Хорошо")

    def answered(count: int) -> Callable[[], bool]:
        def probe() -> bool:
            replies = sum(1 for m in portal.messages.values() if m.author_id == bot_id)
            return replies - replies_before >= count

        return probe

    started = time.monotonic()
    sending = asyncio.ensure_future(asyncio.gather(*(one(n) for n in range(commands))))
    await wait_until(answered(commands // 2), 3600)
    halfway = time.monotonic()
    await wait_until(answered(commands), 3600)
    finished = time.monotonic()
    await sending
    stored = sum(1 for n in range(commands) if portal.sessions[FIRST_SESSION + n].vote_head == 5)
    return {
        "commands": commands,
        "commands_per_s": commands / (finished - started),
        "sustained_per_s": (commands - commands // 2) / (finished - halfway),
        "refused_503": portal.refused,
        "lost": commands - stored,
    }


async def intake(
    portal: Portal, sender: Any, bot_id: int, offset: int, events: int, concurrency: int
) -> dict[str, float]:
    """Post `events` events as fast as `concurrency` connections allow; time each answer."""
    command = next(c for c in portal.commands.values() if c.command == "rate")
    forms = []
    for n in range(events):
        author = portal.users[supervisor(n)]
        chat = portal.private_chat(author.id, bot_id)
        text = f"/rate {FIRST_SESSION + offset + n} 4"
        message = portal.post(chat.id, author.id, text, via="user")
        forms.append(sender.command_form(message, author, chat, [(command, "", "TEXTAREA")]))
    latencies: list[float] = []
    queue = list(reversed(forms))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        from bot.bitrix.form import flatten_form  # noqa: PLC0415

        async def worker() -> None:
            while queue:
                form = queue.pop()
                sent = time.monotonic()
                async with http.post(command.handler, data=flatten_form(form)) as answer:
                    await answer.read()
                    assert answer.status == 200, answer.status
                latencies.append(time.monotonic() - sent)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "events": events,
        "events_per_s": events / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    """`serve [--naive]`: the service process that `start_service` starts."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_service")
    parser.add_argument("mode", choices=["serve"])
    parser.add_argument("--naive", action="store_true")
    args = parser.parse_args(argv)
    serve(args.naive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
