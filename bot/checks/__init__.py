"""`python -m bot check`: the configured set-up, checked against the real portal and Telegram.

Each check is a row of a table: ✓ it holds, ✗ it does not (with the fix), – it could not be
checked because an earlier one failed. Nothing here changes the portal, Telegram or the
database: lookups only (registration's own, bot/bitrix/registration*.py). No row holds a
secret: the webhook's code, the handler path's secret and the tokens stay out of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from bot.checks.findings import Finding, ok
from bot.checks.portal import check_portal
from bot.checks.reach import check_public_url
from bot.checks.storage import check_database
from bot.checks.telegram import check_telegram
from bot.config import Settings

_MARKS: Final = {"ok": "✓", "fail": "✗", "skip": "–"}
# A check answers within this, or says the far side does not answer.
TIMEOUT: Final = aiohttp.ClientTimeout(total=15, connect=5)


@dataclass(frozen=True)
class World:
    """How `check` reaches the outside world. Tests hand in a resolver: DNS is an external
    system, and neither a public name nor one that does not resolve can be shown on loopback
    without one. It serves both the "resolves" row and the connections."""

    resolver: AbstractResolver | None = None  # None: the system's (aiohttp's default)
    timeout: aiohttp.ClientTimeout = field(default=TIMEOUT)


async def run_checks(settings: Settings, world: World | None = None) -> list[Finding]:
    """Every check the settings call for, in the order an administrator fixes them."""
    world = world or World()
    resolver = world.resolver or DefaultResolver()
    connector = aiohttp.TCPConnector(resolver=resolver)
    async with aiohttp.ClientSession(connector=connector, timeout=world.timeout) as session:
        findings = await check_portal(settings, session)
        if settings.b24_webhook_url is not None and settings.b24_event_mode == "webhook":
            findings += await check_public_url(settings, session, resolver)
    findings += application_mode(settings)
    findings.append(await check_database(settings))
    findings += await check_telegram(settings, world.timeout)
    return findings


def application_mode(settings: Settings) -> list[Finding]:
    """A row for application mode when it is on (issue 12): the settings checked at start,
    shown so an administrator can compare them with the application's card."""
    app = settings.app
    if app is None:
        return []
    servers = ", ".join(server.authority for server in app.servers)
    detail = f"client {app.client_id}; OAuth servers {servers}; handler {app.callback_url}"
    return [ok("application mode", detail)]


def render(findings: Sequence[Finding]) -> str:
    """The table, one row a check, each fix on its own line below its ✗."""
    width = max((len(f.name) for f in findings), default=0)
    lines = []
    for finding in findings:
        lines.append(f"{_MARKS[finding.status]} {finding.name:<{width}}  {finding.detail}")
        if finding.fix:
            lines.append(f"  {'':<{width}}  fix: {finding.fix}")
    problems = sum(1 for f in findings if f.status == "fail")
    lines.append("")
    lines.append(f"{problems} problem(s) found." if problems else "Everything checked holds.")
    return "\n".join(lines)


def failed(findings: Sequence[Finding]) -> bool:
    return any(f.status == "fail" for f in findings)
