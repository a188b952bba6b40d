"""`python -m bot`: the command line. The only place that reads the environment."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from aiohttp import web
from pydantic import ValidationError

from bot.app import AccessLogger, create_app
from bot.config import (
    SECRET_SETTINGS,
    Settings,
    UserAllowList,
    describe_settings_error,
    env_name,
)
from bot.logs import configure_logging

EXIT_BAD_SETTINGS = 2

_ABOUT = """\
Open-line rating bot: supervisors rate Bitrix24 Open Lines sessions with a chat command,
/rate 494 5 Молодец, and get an answer at once: saved, or exactly what was wrong."""


def settings_help() -> str:
    """The settings table for --help, built from the Settings model itself."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = (
            "not set"
            if name in SECRET_SETTINGS
            else shown_default(field.get_default(call_default_factory=True, validated_data={}))
        )
        rows.append(f"  {env_name(name):<26} {field.description} [default: {default}]")
    return "settings (environment variables, or KEY=value lines in ./.env):\n" + "\n".join(rows)


def shown_default(value: object) -> str:
    if value is None:
        return "not set"
    if isinstance(value, UserAllowList):
        return "nobody" if value == UserAllowList() else str(value)
    if isinstance(value, frozenset | dict) and not value:
        return "none"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description=_ABOUT,
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", title="subcommands", metavar="COMMAND")
    commands.add_parser("serve", help="run the service (the default when no subcommand is given)")
    return parser


def serve(settings: Settings) -> None:
    configure_logging(
        level=settings.bot_log_level,
        fmt=settings.bot_log_format,
        secrets=secret_literals(settings),
        cache=True,
    )
    web.run_app(
        create_app(settings),
        host=settings.bot_host,
        port=settings.bot_port,
        access_log_class=AccessLogger,
        print=None,
    )


def secret_literals(settings: Settings) -> list[str]:
    """The configured secrets, for the log redactor to mask wherever they turn up."""
    secrets = [settings.b24_webhook_url, settings.telegram_bot_token]
    secrets += [settings.telegram_webhook_secret, settings.b24_client_id]
    return [s.get_secret_value() for s in secrets if s is not None]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_sources(os.environ)
    except ValidationError as error:
        print(describe_settings_error(error), file=sys.stderr)
        return EXIT_BAD_SETTINGS
    if args.command in (None, "serve"):
        serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
