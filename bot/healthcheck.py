"""`python -m bot.healthcheck`: exit 0 while this machine's service answers `/healthz`.

The container's HEALTHCHECK (deploy/Dockerfile). It finds the service where the service itself
listens: BOT_HOST and BOT_PORT read the same way (the environment over `./.env`), so moving the
port moves the probe with it. A wildcard BOT_HOST (0.0.0.0, ::) is probed on loopback.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from bot.config import Settings

PROBE_TIMEOUT: Final = 3.0  # below the HEALTHCHECK's own --timeout
# A wildcard address is listened on by every interface, loopback among them.
_LOOPBACK_FOR: Final = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - binds nothing
# Straight to the service, whatever HTTP_PROXY says: docker passes a host's proxy settings into
# its containers, and urllib would send even a request to 127.0.0.1 through that proxy.
_DIRECT: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def healthz_url(settings: Settings) -> str:
    host = settings.bot_host.strip("[]")
    host = _LOOPBACK_FOR.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.bot_port}/healthz"


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when the service answered 200, else why not, in one line."""
    try:
        with _DIRECT.open(url, timeout=timeout) as answer:
            status: int = answer.status
    except urllib.error.HTTPError as error:
        status = error.code
    except urllib.error.URLError as error:  # refused, unreachable, timed out
        return f"{url}: {error.reason}"
    except OSError as error:  # a connection dropped mid-answer
        return f"{url}: {error}"
    return None if status == HTTPStatus.OK else f"{url}: HTTP {status}"


def main(environ: Mapping[str, str], env_file: Path | None = Path(".env")) -> int:
    try:
        settings = Settings.from_sources(environ, env_file=env_file)
    except ValidationError:
        sys.stdout.write("unhealthy: the settings are invalid, so the service cannot be running\n")
        return 1
    problem = probe(healthz_url(settings))
    if problem is not None:
        sys.stdout.write(f"unhealthy: {problem}\n")  # docker inspect shows it
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
