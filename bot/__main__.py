"""`python -m bot`: the command line. The only place that reads the environment."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import aiohttp
from pydantic import ValidationError

from bot.app import AccessLogger, create_app
from bot.audit import parse_since, read_audit, write_audit
from bot.bitrix.client import BitrixClient, PortalLimiters, WebhookAuth
from bot.bitrix.registration_v2 import register_for_mode, unregister_v2
from bot.checks import failed, render, run_checks
from bot.config import (
    PUBLIC_URL_HINT,
    SECRET_SETTINGS,
    Settings,
    UserAllowList,
    describe_settings_error,
    env_name,
    shown_derived_default,
)
from bot.errors import (
    BitrixError,
    BotCodeTaken,
    CannotListen,
    ChatbotsV2Unavailable,
    StorageMissing,
)
from bot.logs import configure_logging
from bot.serving import Limits, rate_limit_server_errors, serve_until_signalled, start_serving

EXIT_BAD_SETTINGS = 2

_ABOUT = """\
Open-line rating bot: supervisors rate Bitrix24 Open Lines sessions with a chat command,
/rate 494 5 Молодец, and get an answer at once: saved, or exactly what was wrong."""


def settings_help() -> str:
    """The settings table for --help, built from the Settings model itself: each default as
    the code has it (a derived one in the words its field gives, a secret never shown)."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = shown_derived_default(field)
        if default is None:
            value = field.get_default(call_default_factory=True, validated_data={})
            default = "not set" if name in SECRET_SETTINGS else shown_default(value)
        rows.append(f"  {env_name(name):<26} {field.description} [default: {default}]")
    return "settings (environment variables, or KEY=value lines in ./.env):\n" + "\n".join(rows)


def shown_default(value: object) -> str:
    """A default as one writes it in the setting: `2`, not `2.0`; `not set`, `none`."""
    if value is None:
        return "not set"
    if isinstance(value, UserAllowList):
        return "none: nobody may rate" if value == UserAllowList() else str(value)
    if isinstance(value, frozenset | dict) and not value:
        return "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_SUBCOMMANDS: Final = {
    "serve": "run the service (the default when no subcommand is given)",
    "register": "register the bot and its commands in Bitrix24, or update them",
    "unregister": "remove the bot and its commands from Bitrix24",
    "check": "check the set-up against the portal and Telegram: a table of what holds and how "
    "to fix what does not (exit status 1 if anything fails); changes nothing",
}
_TRY: Final = (
    "what `make run` runs: serve, or with no B24_WEBHOOK_URL and no TELEGRAM_BOT_TOKEN "
    "configured, the sandbox portal with its chat page and the service wired to it"
)
_AUDIT: Final = "print the audit log of commands (who, what, when, outcome), or export CSV"
_SETTINGS_POINTER: Final = "settings: `python -m bot --help` lists them with their defaults."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        usage="%(prog)s [-h] [COMMAND] ...",
        description=_ABOUT,
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", title="subcommands", metavar="COMMAND")
    for name, about in _SUBCOMMANDS.items():
        commands.add_parser(name, help=about, description=about, epilog=_SETTINGS_POINTER)
    trial = commands.add_parser(
        "try",
        help=_TRY,
        description=_TRY,
        epilog=_SETTINGS_POINTER,
    )
    trial.add_argument(
        "--sandbox-port", type=int, default=8090, help="the sandbox's port [default: %(default)s]"
    )
    trial.add_argument(
        "--app",
        action="store_true",
        help="the sandbox in application mode: its local application, and votes cast as each "
        "supervisor once they allowed the bot (`make run APP=1`) [default: off: the webhook "
        "owner votes]",
    )
    audit = commands.add_parser(
        "audit",
        help=_AUDIT,
        description=_AUDIT + ", from the database at BOT_DATABASE_URL (read-only)",
        epilog=_SETTINGS_POINTER,
    )
    audit.add_argument(
        "--since",
        metavar="DATE",
        help="only entries from this date (YYYY-MM-DD, UTC) on [default: all entries]",
    )
    audit.add_argument(
        "--csv",
        metavar="FILE",
        help="write CSV to FILE ('-' for stdout) [default: a table on stdout]",
    )
    audit.add_argument(
        "--excel",
        action="store_true",
        help="with --csv: a CSV that Excel in a Russian locale opens as it is (BOM, ';') "
        "[default: off: UTF-8 without a BOM, ',']",
    )
    return parser


def serve(settings: Settings, *, announce: str = "") -> int:
    """Serve until stopped; `announce` is printed once the service listens. Exit 1 when it
    cannot listen (the port taken), saying so in one sentence."""
    configure_logging(
        level=settings.bot_log_level,
        fmt=settings.bot_log_format,
        secrets=secret_literals(settings),
        cache=True,
    )
    rate_limit_server_errors()
    try:
        asyncio.run(run_service(settings, announce))
    except CannotListen as error:
        print(error, file=sys.stderr)
        return 1
    return 0


async def run_service(settings: Settings, announce: str = "") -> None:
    served = await start_serving(
        create_app(settings),
        host=settings.bot_host,
        port=settings.bot_port,
        limits=Limits(),
        stop_timeout=settings.bot_shutdown_timeout,
        access_log_class=AccessLogger,
    )
    if announce:
        print(announce, flush=True)
    await serve_until_signalled(served, stop_timeout=settings.bot_shutdown_timeout)


def try_out(settings: Settings, sandbox_port: int, *, app: bool = False) -> int:
    """`try`: the configured portal, or with none, the sandbox (never from `serve`); `app`:
    the sandbox in application mode."""
    from bot import trial  # noqa: PLC0415 - the sandbox is loaded for `try` alone

    if not trial.is_configured(settings):
        if reasons := trial.real_set_up(os.environ):
            print(trial.refusal(reasons), file=sys.stderr)
            return EXIT_BAD_SETTINGS
        handler = trial.callback_url(settings) if app else None
        try:
            sandbox = trial.start_sandbox(sandbox_port, app_handler=handler)
        except trial.SandboxUnavailable as error:
            print(error, file=sys.stderr)
            return 1
        given = settings.model_fields_set
        settings = trial.sandboxed_settings(os.environ, sandbox)
        return serve(settings, announce=trial.banner(sandbox, settings, given))
    if app and settings.app is None:
        print(trial.APP_NEEDS_SETTINGS, file=sys.stderr)
        return EXIT_BAD_SETTINGS
    return serve(settings)


def invocation() -> str:
    """This command line as it can be run again from here: `.venv/bin/python -m bot` in a
    checkout that `make run` set up (a bare `python` there lacks the dependencies)."""
    python = Path(sys.executable)
    shown = python.relative_to(Path.cwd()) if python.is_relative_to(Path.cwd()) else python
    return f"{shlex.quote(str(shown))} -m bot"


def secret_literals(settings: Settings) -> list[str]:
    """The configured secrets, for the log redactor to mask wherever they turn up."""
    secrets = [settings.b24_webhook_url, settings.telegram_bot_token]
    secrets += [settings.telegram_webhook_secret, settings.b24_client_id, settings.b24_bot_token]
    secrets += [settings.b24_app_client_secret, settings.bot_secret_key]
    literals = [s.get_secret_value() for s in secrets if s is not None]
    if settings.b24_webhook_url is not None:
        literals.append(settings.b24_handler_path().rsplit("/", 1)[-1])
    return literals


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_sources(os.environ)
    except ValidationError as error:
        print(describe_settings_error(error, program=invocation()), file=sys.stderr)
        return EXIT_BAD_SETTINGS
    if args.command == "try":
        return try_out(settings, args.sandbox_port, app=args.app)
    if args.command in (None, "serve"):
        return serve(settings)
    configure_logging(
        level=settings.bot_log_level,
        fmt=settings.bot_log_format,
        secrets=secret_literals(settings),
    )
    if args.command == "audit":
        return audit(settings, args)
    if args.command == "check":
        return check(settings)
    return asyncio.run(manage_bot(settings, args.command))


def check(settings: Settings) -> int:
    """`check`: every row of the set-up, ✓ or ✗ with its fix; 1 if any failed."""
    # The rows say what the log lines would: only errors past them reach stderr.
    configure_logging(level="critical", secrets=secret_literals(settings), stream=sys.stderr)
    findings = asyncio.run(run_checks(settings))
    print(render(findings))
    return 1 if failed(findings) else 0


def audit(settings: Settings, args: argparse.Namespace) -> int:
    """`audit`: the audit log from an existing database, which it only reads."""
    try:
        since = parse_since(args.since)
    except ValueError:
        print(f"--since takes a date such as 2026-11-27, not {args.since!r}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    if args.excel and args.csv is None:
        print("--excel shapes a CSV: give it with --csv FILE", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    try:
        entries = asyncio.run(read_audit(settings, since=since))
    except StorageMissing as missing:
        print(
            f"There is no bot database at {missing.path} (BOT_DATABASE_URL): nothing to audit.",
            file=sys.stderr,
        )
        return EXIT_BAD_SETTINGS
    write_audit(entries, csv_path=args.csv, out=sys.stdout, excel=args.excel)
    print(f"{len(entries)} entries", file=sys.stderr)
    return 0


async def manage_bot(settings: Settings, command: str) -> int:
    """`register` / `unregister`: one-off calls through B24_WEBHOOK_URL."""
    if settings.b24_webhook_url is None:
        print("B24_WEBHOOK_URL is not set: there is no portal to talk to.", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    async with aiohttp.ClientSession() as session:
        client = BitrixClient(
            session,
            WebhookAuth(settings.b24_webhook_url),
            PortalLimiters(rate=settings.b24_rate_limit, burst=settings.b24_rate_burst),
        )
        try:
            if command == "register":
                registration = await register_for_mode(client, settings)
                print(registered_text(settings, registration.bot_id, registration.command_ids))
            else:
                # Our bot goes however it was registered (fetch or webhook mode).
                removed = await unregister_v2(client, settings)
                print(f"Removed bot {removed}." if removed else "No bot to remove.")
        except BitrixError as error:
            # The code and method only: no URL, no secret.
            print(f"Bitrix24 refused: {error.code} in {error.method}.", file=sys.stderr)
            return 1
        except (BotCodeTaken, ChatbotsV2Unavailable) as error:
            print(error, file=sys.stderr)  # names the settings to change; holds no secret
            return 1
    return 0


def registered_text(settings: Settings, bot_id: int, commands: Iterable[str]) -> str:
    names = ", ".join("/" + c for c in commands)
    if settings.b24_event_mode == "fetch":
        where = "events are pulled (fetch mode); no public URL needed"
    else:
        where = f"events go to {settings.public_url}/b24/events/… (webhook mode)"
    text = f"Registered bot {bot_id} with commands {names}; {where}."
    if settings.public_url_is_local():
        text += f"\nWarning: Bitrix24 cannot reach a loopback address: {PUBLIC_URL_HINT}."
    return text


if __name__ == "__main__":
    sys.exit(main())
