"""Benchmark: a sustained run that would overrun a method's operating-time budget.

Bitrix24 lets a method run 480 s per 10 minutes (protocol notes §00 item 10, §4.2). Scaled down
100 times (4.8 s per 6 s window, buckets of 0.6 s) and with every call costing 0.02 s, the run
asks for 2.5 budgets' worth of one method, as fast as 20 workers can. The client with its
budget should finish with zero 429 OPERATION_TIME_LIMIT answers, close to the fastest time the
portal allows; the same run without the budget (naive) shows what it prevents. Retries are
off, so every 429 is counted. Run: `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Sequence

import aiohttp

from bot.bitrix.client import BitrixClient, PortalLimiters, RetryPolicy, WebhookAuth
from bot.logs import configure_logging
from bot.sandbox.operating import BUCKETS
from bot.sandbox.seed import seeded_portal
from tests.bench.sandbox import WEBHOOK_CODE, run_calls, served

METHOD = "imopenlines.session.history.get"


async def run(
    calls: int, cost: float, limit: float, window: float, concurrency: int, *, budget: bool
) -> dict[str, float]:
    portal = seeded_portal(webhook_code=WEBHOOK_CODE)
    portal.operating_cost[METHOD] = cost
    portal.operating_limit, portal.operating_window = limit, window
    # The leaky bucket is wide open: only operating time limits this run.
    async with (
        served(portal, rate=10_000, burst=10_000) as url,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http,
    ):
        limiters = PortalLimiters(
            rate=10_000,
            burst=10_000,
            operating_limit=limit if budget else math.inf,
            operating_window=window,
        )
        client = BitrixClient(http, WebhookAuth(url), limiters, retry=RetryPolicy(attempts=1))
        elapsed, refused = await run_calls(
            calls, concurrency, lambda: client.call(METHOD, {"SESSION_ID": 494})
        )
    served_calls = sum(1 for c in portal.calls if c.method == METHOD and c.error is None)
    # The first budget is spent at once; each further one comes back when the buckets that
    # hold the previous one drop out: at best nine buckets later, at worst ten.
    budgets = math.ceil(served_calls * cost / limit - 1e-9)
    fastest = max(budgets - 1, 0) * window * (BUCKETS - 1) / BUCKETS
    return {"elapsed": elapsed, "fastest": fastest, "refused": refused, "served": served_calls}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_operating")
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--cost", type=float, default=0.02, help="operating seconds per call")
    parser.add_argument("--limit", type=float, default=4.8, help="480 s scaled down 100 times")
    parser.add_argument("--window", type=float, default=6.0, help="600 s scaled down 100 times")
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args(argv)
    configure_logging(level="error")  # the naive run's 429s are counted, not logged
    demand = args.calls * args.cost
    print(
        f"{args.calls} calls of {METHOD} costing {args.cost:g} s each: {demand:g} s of operating "
        f"time against a budget of {args.limit:g} s per {args.window:g} s "
        f"({demand / args.limit:.1f} budgets), {args.concurrency} at a time"
    )
    results = {}
    for name, budget in (("with the budget", True), ("naive", False)):
        result = asyncio.run(
            run(args.calls, args.cost, args.limit, args.window, args.concurrency, budget=budget)
        )
        results[name] = result
        print(
            f"{name}: elapsed {result['elapsed']:.2f} s (the portal allows "
            f"{result['fastest']:.2f} s), served {int(result['served'])}, "
            f"429 answers {int(result['refused'])}"
        )
    kept = results["with the budget"]
    fraction = kept["fastest"] / kept["elapsed"] if kept["elapsed"] else 1.0
    print(f"with the budget: {fraction:.1%} of the allowed pace (429s: goal 0)")
    return 0 if kept["refused"] == 0 and kept["served"] == args.calls else 1


if __name__ == "__main__":
    sys.exit(main())
