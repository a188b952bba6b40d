"""Benchmark: the service against the sandbox portal in one run, coalescing and naive.

The service runs as its own process (its own core); the sandbox portal and the load run in
this one. Three figures per mode:

- commands completed per second per portal inside the default bucket (2/s, 50 burst), with
  the 503s the portal answered and the commands lost;
- event intake: events acknowledged per second and the p99 acknowledgement time;
- the service's resident memory (peak) under that load.

Run: `make bench`. The naive mode runs one command at a time without batching.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.sandbox.app import EVENTS, create_sandbox_app
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
    portal_url: str, naive: bool, workdir: Path
) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = {
        "B24_WEBHOOK_URL": portal_url,
        "BOT_HOST": "127.0.0.1",
        "BOT_PORT": str(port),
        "BOT_PUBLIC_URL": f"http://127.0.0.1:{port}",
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


async def run_mode(naive: bool, commands: int, events: int, concurrency: int) -> dict[str, float]:
    portal = seeded_portal(webhook_code="benchcode")
    for n in range(commands + events):
        portal.sessions[FIRST_SESSION + n] = Session(FIRST_SESSION + n, 1, 1157, 101)
    for n in range(SUPERVISORS):
        portal.users[supervisor(n)] = User(supervisor(n), "Руководитель", str(n))
        portal.lines[1].heads.add(supervisor(n))
    runner = web.AppRunner(create_sandbox_app(portal), access_log=None)  # Bitrix24's bucket
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sandbox_port = runner.addresses[0][1]
    with tempfile.TemporaryDirectory() as workdir:
        process, _ = await start_service(
            f"http://127.0.0.1:{sandbox_port}/rest/1/benchcode/", naive, Path(workdir)
        )
        try:
            await wait_until(lambda: portal.bots and len(portal.commands) == 2, 30)
            await asyncio.sleep(0.5)
            portal.refused = 0
            sender = runner.app[EVENTS]
            bot_id = next(iter(portal.bots))
            figures = await throughput(portal, sender, bot_id, commands, concurrency)
            figures |= await intake(portal, sender, bot_id, commands, events, concurrency)
            figures["rss_mb"] = peak_rss_mb(process.pid)
        finally:
            process.terminate()
            await process.wait()
    await runner.cleanup()
    return figures


async def throughput(
    portal: Portal, sender: Any, bot_id: int, commands: int, concurrency: int
) -> dict[str, float]:
    """Send `commands` votes at once; time until every one is stored and answered."""
    gate = asyncio.Semaphore(concurrency)
    replies_before = sum(1 for m in portal.messages.values() if m.author_id == bot_id)

    async def one(n: int) -> None:
        async with gate:
            await sender.send_message(supervisor(n), bot_id, f"/rate {FIRST_SESSION + n} 5 Хорошо")

    started = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(commands)))

    def done() -> bool:
        replies = sum(1 for m in portal.messages.values() if m.author_id == bot_id)
        return replies - replies_before >= commands

    await wait_until(done, 3600)
    elapsed = time.monotonic() - started
    stored = sum(1 for n in range(commands) if portal.sessions[FIRST_SESSION + n].vote_head == 5)
    return {
        "commands": commands,
        "commands_per_s": commands / elapsed,
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
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_service")
    parser.add_argument("mode", nargs="?", choices=["bench", "serve"], default="bench")
    parser.add_argument("--naive", action="store_true")
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--naive-commands", type=int, default=60)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    if args.mode == "serve":
        serve(args.naive)
        return 0
    rows = []
    for naive, commands in ((False, args.commands), (True, args.naive_commands)):
        figures = asyncio.run(run_mode(naive, commands, args.events, args.concurrency))
        rows.append(("naive" if naive else "coalescing", figures))
    print(
        "mode        commands  cmd/s   503s  lost   events  events/s  p50 ms  p99 ms  peak RSS MB"
    )
    for name, f in rows:
        print(
            f"{name:<11} {int(f['commands']):>8} {f['commands_per_s']:>6.1f} "
            f"{int(f['refused_503']):>6} {int(f['lost']):>5} {int(f['events']):>8} "
            f"{f['events_per_s']:>9.0f} {f['p50_ms']:>7.1f} {f['p99_ms']:>7.1f} "
            f"{f['rss_mb']:>12.1f}"
        )
    print("goals: >= 30 cmd/s with 0 503s and 0 lost; >= 1000 events/s, p99 < 20 ms; RSS < 100 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
