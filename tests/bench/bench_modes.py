"""Benchmark: fetch mode and webhook mode side by side in one run (issue 9, item 8).

Each mode gets a fresh sandbox portal with Bitrix24's default bucket (2 requests/s, burst 50)
and the service, in its own process, at its default settings (coalescing on). Phases, in order:

1. idle: nobody types for `--idle` seconds; the service's REST requests per second (HTTP
   requests the portal received, a `batch` counted once, 503s included) against its share
   of the budget (fetch: B24_POLL_BUDGET 0.25 x 2/s = 0.5/s; webhook: none);
2. latency: `--typed` commands typed one at a time at random moments (gaps of 0.5-4 s) on an
   otherwise idle portal; p50 / p95 from the message to the bot's answer, both timestamps
   taken by the portal (B24_ANSWER_TARGET: p95 <= 3 s);
3. load: `--commands` commands from 200 supervisors at once; commands per second (overall,
   and sustained: the second half, past the bucket's burst), the 503s of the whole run and
   the commands lost; in fetch mode how each Event.get travelled (alone, alone inside a
   batch, or sharing a batch with other calls);
4. webhook mode only: event intake over `--concurrency` connections; then the peak RSS.

A last row runs the naive service (one worker, no batching; webhook mode) through the load and
intake phases only, for comparison. Prints a Markdown table. Run: `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.sandbox.app import EVENTS, create_sandbox_app
from bot.sandbox.portal import Call, Portal
from tests.bench.bench_service import (
    FIRST_SESSION,
    bench_portal,
    intake,
    peak_rss_mb,
    start_service,
    supervisor,
    throughput,
    wait_until,
)

EVENT_GET = "imbot.v2.event.get"
GAPS = (0.5, 4.0)  # seconds between two commands typed at random moments
BUDGET = {"fetch": 0.25 * 2, "webhook": 0.0}  # idle requests/s allowed: B24_POLL_BUDGET x rate
ANSWERED_WITHIN = 60.0  # a typed command not answered by then counts as lost


@dataclass(frozen=True)
class Plan:
    """What one run measures: the phases' sizes."""

    idle: float
    typed: int
    commands: int
    naive_commands: int
    events: int
    concurrency: int
    seed: int


def requests_made(portal: Portal, since: int) -> int:
    """HTTP requests the portal served after call number `since` (calls inside a batch are
    part of their batch's request)."""
    return sum(1 for call in portal.calls[since:] if call.batch_of is None)


async def idle_rate(portal: Portal, seconds: float) -> float:
    """Requests per second while nobody types (503s count: each was a request)."""
    since, refused = len(portal.calls), portal.refused
    await asyncio.sleep(seconds)
    return (requests_made(portal, since) + portal.refused - refused) / seconds


async def typed_latencies(
    portal: Portal, sender: Any, bot_id: int, first_session: int, plan: Plan
) -> tuple[list[float], int]:
    """Commands typed one at a time at random moments, each by its own supervisor (so in its
    own private chat): the seconds from each message to the bot's first message after it in
    that chat, by the portal's clock; and how many were not answered."""
    gaps = random.Random(plan.seed)  # noqa: S311 - spacing, not secrecy
    typed = []
    for n in range(plan.typed):
        await asyncio.sleep(gaps.uniform(*GAPS))
        text = f"/rate {first_session + n} 5 Хорошо"
        await sender.send_message(supervisor(n), bot_id, text)
        typed.append(portal.private_chat(supervisor(n), bot_id).id)

    def answer_at(chat_id: int) -> float | None:
        posted = [m.posted_at for m in portal.messages.values() if m.chat_id == chat_id]
        replies = [
            m.posted_at
            for m in portal.messages.values()
            if m.chat_id == chat_id and m.author_id == bot_id
        ]
        return min(replies) - min(posted) if replies else None

    with contextlib.suppress(TimeoutError):  # the unanswered are reported as lost
        await wait_until(lambda: all(answer_at(c) is not None for c in typed), ANSWERED_WITHIN)
    answered = [a for a in (answer_at(c) for c in typed) if a is not None]
    return answered, len(typed) - len(answered)


def event_get_travel(calls: Sequence[Call]) -> dict[str, int]:
    """How each Event.get went to the portal: as its own request, alone inside a batch, or in
    a batch shared with other calls (read from each batch request's `cmd`)."""
    travel = {"alone": 0, "batch_alone": 0, "shared": 0}
    for call in calls:
        if call.batch_of is not None:
            continue
        if call.method == EVENT_GET:
            travel["alone"] += 1
        elif call.method == "batch":
            commands = [str(c).partition("?")[0].lower() for c in _batch_commands(call)]
            polls = commands.count(EVENT_GET)
            key = "batch_alone" if len(commands) == polls else "shared"
            travel[key] += polls
    return travel


def _batch_commands(call: Call) -> list[Any]:
    commands = call.params.get("cmd")
    if isinstance(commands, dict):
        return list(commands.values())
    return list(commands) if isinstance(commands, list) else []


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def run_mode(mode: str, naive: bool, plan: Plan) -> dict[str, Any]:
    commands = plan.naive_commands if naive else plan.commands
    portal = bench_portal(commands + plan.events + plan.typed)
    runner = web.AppRunner(create_sandbox_app(portal), access_log=None)  # Bitrix24's bucket
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/rest/1/benchcode/"
    figures: dict[str, Any] = {"mode": f"{mode} naive" if naive else mode}
    with tempfile.TemporaryDirectory() as workdir:
        process, _ = await start_service(url, mode, naive, Path(workdir))
        try:
            await wait_until(lambda: portal.bots and len(portal.commands) == 2, 30)
            await asyncio.sleep(3)  # the start's own calls (lookups, registration) settle
            portal.refused = 0
            sender = runner.app[EVENTS]
            bot_id = next(iter(portal.bots))
            if not naive:
                figures["idle_rps"] = await idle_rate(portal, plan.idle)
                latencies, unanswered = await typed_latencies(
                    portal, sender, bot_id, FIRST_SESSION + commands + plan.events, plan
                )
                figures |= {"p50_s": percentile(latencies, 0.5), "unanswered": unanswered}
                figures["p95_s"] = percentile(latencies, 0.95)
            load_from = len(portal.calls)
            figures |= await throughput(portal, sender, bot_id, commands, plan.concurrency)
            figures["lost"] += figures.get("unanswered", 0)
            figures["event_get"] = event_get_travel(portal.calls[load_from:])
            figures["refused_503"] = portal.refused  # the whole run, not only the load
            if mode == "webhook":
                figures |= await intake(
                    portal, sender, bot_id, commands, plan.events, plan.concurrency
                )
            figures["rss_mb"] = peak_rss_mb(process.pid)
        finally:
            process.terminate()
            await process.wait()
    await runner.cleanup()
    return figures


HEADER = (
    "| mode | answer p50 | answer p95 | idle requests/s (budget) | commands | commands/s "
    "| sustained/s "
    "| 503s | lost | Event.get under load: alone / alone in batch / shared batch "
    "| events/s | p50 ack | p99 ack | peak RSS |"
)


def row(f: dict[str, Any]) -> str:
    def cell(key: str, form: str) -> str:
        value = f.get(key)
        return "" if value is None or value != value else form.format(value)  # noqa: PLR0124

    travel = f["event_get"]
    polls = f"{travel['alone']} / {travel['batch_alone']} / {travel['shared']}"
    budget = BUDGET[f["mode"].split()[0]]
    idle = f"{f['idle_rps']:.2f} (≤ {budget:g})" if "idle_rps" in f else ""
    return (
        f"| {f['mode']} | {cell('p50_s', '{:.2f} s')} | {cell('p95_s', '{:.2f} s')} | {idle} "
        f"| {f['commands']:,} | {f['commands_per_s']:.1f} | {f['sustained_per_s']:.1f} "
        f"| {f['refused_503']} | {f['lost']} "
        f"| {polls if f['mode'].startswith('fetch') else ''} | {cell('events_per_s', '{:,.0f}')} "
        f"| {cell('p50_ms', '{:.1f} ms')} | {cell('p99_ms', '{:.1f} ms')} "
        f"| {f['rss_mb']:.0f} MB |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_modes")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of the idle phase")
    parser.add_argument("--typed", type=int, default=40, help="commands typed one at a time")
    parser.add_argument("--commands", type=int, default=1000, help="commands of the load phase")
    parser.add_argument("--naive-commands", type=int, default=30, help="0: no naive row")
    parser.add_argument("--events", type=int, default=3000, help="webhook intake events")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=9, help="of the typed commands' gaps")
    args = parser.parse_args(argv)
    plan = Plan(
        args.idle, args.typed, args.commands, args.naive_commands, args.events,
        args.concurrency, args.seed,
    )  # fmt: skip
    runs = [("fetch", False), ("webhook", False)]
    runs += [("webhook", True)] if plan.naive_commands else []
    rows = []
    for mode, naive in runs:
        rows.append(asyncio.run(run_mode(mode, naive, plan)))
        print(row(rows[-1]), file=sys.stderr, flush=True)  # progress, a run takes minutes
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for figures in rows:
        print(row(figures))
    print(
        "goals: answer p95 <= 3 s; idle requests within the budget; >= 30 commands/s "
        "sustained with 0 503s and 0 lost; >= 1,000 events/s, p99 < 20 ms; RSS < 100 MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
