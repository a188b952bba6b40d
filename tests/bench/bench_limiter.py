"""Benchmark: many REST calls through the client's leaky bucket against the sandbox portal.

Both buckets are Bitrix24's (capacity 50) with the drain sped up 50 times (2/s -> 100/s) so a
run takes seconds. Reports the achieved rate as a fraction of what the portal allows, and the
number of 503 answers (retries are off, so every 503 is counted). Run: `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import aiohttp

from bot.bitrix.client import BitrixClient, PortalLimiters, RetryPolicy, WebhookAuth
from bot.logs import configure_logging
from bot.sandbox.seed import seeded_portal
from tests.bench.sandbox import WEBHOOK_CODE, run_calls, served


async def run(calls: int, rate: float, burst: int, concurrency: int) -> dict[str, float]:
    portal = seeded_portal(webhook_code=WEBHOOK_CODE)
    async with (
        served(portal, rate=rate, burst=burst) as url,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http,
    ):
        client = BitrixClient(
            http,
            WebhookAuth(url),
            PortalLimiters(rate=rate, burst=burst),
            retry=RetryPolicy(attempts=1),
        )
        elapsed, refused = await run_calls(calls, concurrency, lambda: client.call("profile"))
    allowed = max(calls - burst, 0) / rate  # the portal lets `burst` through, then `rate` per s
    return {
        "elapsed": elapsed,
        "allowed": allowed,
        "refused": refused,
        "served": len(portal.calls),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_limiter")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args(argv)
    configure_logging(level="warning")
    result = asyncio.run(run(args.calls, args.rate, args.burst, args.concurrency))
    fraction = result["allowed"] / result["elapsed"]
    print(
        f"calls: {args.calls} through a bucket of {args.burst} draining {args.rate:g}/s, "
        f"{args.concurrency} at a time"
    )
    print(
        f"elapsed: {result['elapsed']:.2f} s (the portal allows it in {result['allowed']:.2f} s)"
    )
    print(f"achieved rate: {fraction:.1%} of the allowed rate (goal >= 95%)")
    print(f"503 answers: {int(result['refused'])} (goal 0); served: {int(result['served'])}")
    return 0 if fraction >= 0.95 and result["refused"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
