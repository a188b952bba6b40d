"""`python -m bot.sandbox [--port N]`: a local Bitrix24 portal with seed data."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiohttp import web

from bot.config import OAUTH_CALLBACK_PATH
from bot.sandbox.app import create_sandbox_app
from bot.sandbox.oauth import create_app
from bot.sandbox.seed import add_dialogs, seeded_portal
from bot.sandbox.telegram.seed import seeded_world
from bot.sandbox.wiring import app_env, service_env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot.sandbox",
        description="A local stand-in for a Bitrix24 portal: REST at /rest/, inspection and "
        "an event sender at /_sandbox/; a fake Telegram Bot API at /telegram/, its world at "
        "/_sandbox/telegram/; the chat page at /. Prints the settings for the service.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="listen address [default: %(default)s]"
    )
    parser.add_argument(
        "--port", type=int, default=8090, help="listen port [default: %(default)s]"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=2,  # Bitrix24's own drain rate, requests per second
        help="leaky bucket drain per second [default: %(default)s]",
    )
    parser.add_argument(
        "--burst", type=int, default=50, help="leaky bucket capacity [default: %(default)s]"
    )
    parser.add_argument(
        "--webhook-code",
        help="the main webhook's code (letters and digits) [default: a random one]",
    )
    parser.add_argument(
        "--service-url",
        default="http://127.0.0.1:8080",
        help="the service's BOT_PUBLIC_URL: the local application's handler is its "
        f"{OAUTH_CALLBACK_PATH} [default: %(default)s]",
    )
    parser.add_argument(
        "--head-vote",
        choices=("current", "legacy"),
        default="current",
        help="head.vote that stores nothing: 400 ACCESS_DENIED (current builds) or true "
        "(older builds) [default: %(default)s]",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    portal = seeded_portal(webhook_code=args.webhook_code)
    portal.head_vote = args.head_vote
    add_dialogs(portal)
    world = seeded_world()
    base_url = f"http://{args.host}:{args.port}"
    for name, value in service_env(base_url, portal, world).items():
        print(f"{name}={value}", flush=True)
    print(f"# the chat page: {base_url}/", flush=True)
    app = create_app(portal, args.service_url.rstrip("/") + OAUTH_CALLBACK_PATH)
    print(
        "# application mode (votes cast as the supervisor): to use it, add these and a", flush=True
    )
    print(f"# BOT_SECRET_KEY; the application's handler is {app.handler_url}", flush=True)
    for name, value in app_env(base_url, portal).items():
        print(f"# {name}={value}", flush=True)
    web.run_app(
        create_sandbox_app(portal, rate=args.rate, burst=args.burst, telegram=world),
        host=args.host,
        port=args.port,
        print=None,
        handler_cancellation=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
