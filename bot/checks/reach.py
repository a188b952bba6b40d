"""Webhook mode's public address in `check`: BOT_PUBLIC_URL is https, resolves, and leads to
this very service, shown by a nonce fetched through it (bot/bitrix/reach.py).

Who answers the nonce: the running service, when one holds BOT_HOST:BOT_PORT; else `check`
serves the probe there itself for the few seconds it takes. Either way the request goes the
way Bitrix24's events go (DNS, TLS, the reverse proxy, the port), and only a process that
knows this configuration's handler secret answers it right. Checking before the first start
is the common case (a fresh .env); checking a running service is the other (`docker compose
exec`, systemd): both are served, and the row says which answered.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver

from bot.bitrix.reach import add_reach_probe, new_nonce, path_secret, reach_proof
from bot.checks.findings import Finding, fail, ok, skip
from bot.config import PUBLIC_URL_HINT, Settings, is_loopback_host

HTTPS = "BOT_PUBLIC_URL is https"
RESOLVES = "BOT_PUBLIC_URL resolves"
REACHES = "BOT_PUBLIC_URL reaches this service"
_PROXY = (
    "make the reverse proxy (or port forwarding) send {url}/b24/events/ to BOT_HOST:BOT_PORT "
    "of this service, and open the port in the firewall (a server that cannot reach its own "
    "public address, behind hairpin NAT, fails here though Bitrix24 may not: try from outside)"
)


async def check_public_url(
    settings: Settings, session: aiohttp.ClientSession, resolver: AbstractResolver
) -> list[Finding]:
    url = settings.public_url
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    findings = [_scheme(settings, parts.scheme, host)]
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            found = await resolver.resolve(host, port)
            addresses = sorted({str(address["host"]) for address in found})
        except OSError:
            fix = f"publish a DNS record for {host} with the address of this server (or its proxy)"
            findings.append(fail(RESOLVES, f"{host} does not resolve", fix))
            return [*findings, skip(REACHES, "needs an address that resolves")]
    findings.append(ok(RESOLVES, f"{host} → {', '.join(addresses)}"))
    return [*findings, await _reaches(settings, session)]


def _scheme(settings: Settings, scheme: str, host: str) -> Finding:
    if settings.public_url_is_local():
        return fail(
            HTTPS, f"{host} is a loopback address, which Bitrix24 cannot reach", PUBLIC_URL_HINT
        )
    if scheme == "https":
        return ok(HTTPS, "https")
    if is_loopback_host(host):
        return ok(HTTPS, "plain http on loopback, beside a portal on loopback (a sandbox)")
    fix = (
        "put a TLS reverse proxy in front of the service (deploy/ has an nginx example) and set "
        f"BOT_PUBLIC_URL=https://{host}"
    )
    return fail(HTTPS, "plain http: Bitrix24 would post events unencrypted", fix)


async def _reaches(settings: Settings, session: aiohttp.ClientSession) -> Finding:
    url, nonce = settings.public_url, new_nonce()
    secret = path_secret(settings)
    async with _serving_if_free(settings, secret) as answering:
        try:
            async with session.get(
                url + settings.b24_handler_path(), params={"nonce": nonce}, allow_redirects=False
            ) as answer:
                status = answer.status
                body = await answer.json(content_type=None) if status == 200 else None  # noqa: PLR2004
        except aiohttp.ClientSSLError as error:
            fix = "install a certificate for the host that a public CA signs (Let's Encrypt)"
            return fail(REACHES, f"TLS fails ({type(error).__name__})", fix)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            # ValueError: a 200 that is no JSON. The error's text may quote the URL (the secret).
            if isinstance(error, ValueError):
                return fail(REACHES, f"{url} answers, but not as this service", _elsewhere())
            detail = f"nothing answers at {url} ({type(error).__name__})"
            return fail(REACHES, detail, _PROXY.format(url=url))
    proof = body.get("proof") if isinstance(body, dict) else None
    if proof != reach_proof(secret, nonce):
        shown = f"HTTP {status}" if status != 200 else "a wrong answer"  # noqa: PLR2004
        return fail(REACHES, f"{url} answers ({shown}), but not as this service", _elsewhere())
    return ok(REACHES, f"a nonce came back through it from {answering}")


def _elsewhere() -> str:
    return (
        "the address leads to another server, or to a service with another B24_WEBHOOK_URL: "
        "point the reverse proxy at this one (BOT_HOST:BOT_PORT)"
    )


@contextlib.asynccontextmanager
async def _serving_if_free(settings: Settings, secret: str) -> AsyncIterator[str]:
    """Serve the probe on BOT_HOST:BOT_PORT while the block runs, unless something holds the
    port already (then it is the running service, or the row says it is not)."""
    app = web.Application()
    add_reach_probe(app, secret)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.bot_host, settings.bot_port)
        try:
            await site.start()
        except OSError:
            yield f"the service running on port {settings.bot_port}"
        else:
            yield f"`check` itself on port {settings.bot_port} (the service is not running)"
    finally:
        await runner.cleanup()
