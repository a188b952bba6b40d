"""structlog set-up: one pipeline for our logs and for the stdlib loggers of aiohttp and aiogram.

Every record, ours or a library's, passes `redact_secrets` just before it is rendered, so a
webhook code, an OAuth token or a bot token cannot reach the output whatever logged it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import IO, Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from bot.config import LogFormat, LogLevel

MASK = "***"
# Configured secrets shorter than this are not masked as literals: they would mask ordinary
# words, and a real token or webhook code is far longer.
_MIN_LITERAL = 6

# Keys whose values are secrets wherever they appear in an event (compared case-insensitively).
SECRET_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "application_token",
        "client_secret",
        "b24_app_client_secret",
        "bot_secret_key",
        "authorization_code",
        "password",
        "token",
        "secret",
        "webhook_url",
        "b24_webhook_url",
        "telegram_bot_token",
        "telegram_webhook_secret",
    }
)

# Secrets inside free text: a webhook code in a URL path, `key=value` / `"key": "value"` pairs
# (query strings, PHP form bodies such as auth[access_token]=…, JSON, reprs), Telegram tokens.
_WEBHOOK_CODE = re.compile(r"(/rest/[0-9]+/)[^/\s?#\"'<>]+")
_SECRET_PAIR = re.compile(
    r"(?i)((?:access_token|refresh_token|application_token|client_secret|auth|password)"
    r"(?:\]|%5D)?[\"']?\s*(?:[:=]|%3D)\s*[\"']?)([^\s\"'&,;}\]\[<>]+)"
)
_TELEGRAM_TOKEN = re.compile(r"(?<![0-9])[0-9]{5,12}:[A-Za-z0-9_-]{30,}")
# An OAuth authorization code (and its state) in a URL's query: the callback's and the token
# request's. Only in a query: `code` elsewhere is a Bitrix24 error code, which logs must show.
_QUERY_CODE = re.compile(r"(?i)([?&](?:code|state)=)([^&\s#\"'<>]+)")


class SecretRedactor:
    """A structlog processor that masks secrets anywhere in an event dict.

    Besides the patterns above it masks any literal it was given (the configured webhook URL,
    bot token, handler-path secret, …), so a secret of a shape we did not foresee is caught too.
    """

    def __init__(self, literals: Iterable[str] = ()) -> None:
        long_enough = {s for s in literals if len(s) >= _MIN_LITERAL}
        self._literals = sorted(long_enough, key=len, reverse=True)

    def __call__(self, _logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        return {key: self._clean(key, value) for key, value in event.items()}

    def redact_text(self, text: str) -> str:
        for literal in self._literals:
            text = text.replace(literal, MASK)
        text = _WEBHOOK_CODE.sub(rf"\g<1>{MASK}", text)
        text = _SECRET_PAIR.sub(rf"\g<1>{MASK}", text)
        text = _QUERY_CODE.sub(rf"\g<1>{MASK}", text)
        return _TELEGRAM_TOKEN.sub(MASK, text)

    def _clean(self, key: object, value: Any) -> Any:
        if isinstance(key, str) and key.lower() in SECRET_KEYS and value not in (None, ""):
            return MASK
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, Mapping):
            # The parameters of a token request: there `code` is the authorization code.
            grant = "grant_type" in value
            return {
                k: MASK if grant and k == "code" else self._clean(k, v) for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(None, item) for item in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        # Anything else (exceptions, URLs, models) is rendered by repr later: clean that text.
        return self.redact_text(repr(value))


def configure_logging(
    *,
    level: LogLevel = "info",
    fmt: LogFormat | None = None,
    secrets: Iterable[str] = (),
    stream: IO[str] | None = None,
    cache: bool = False,
) -> None:
    """Configure structlog and the stdlib root logger; safe to call again (tests do)."""
    out = stream if stream is not None else sys.stdout
    if fmt is None:
        fmt = "console" if out.isatty() else "json"
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if fmt == "json":
        exceptions: Processor = structlog.processors.dict_tracebacks
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        exceptions = structlog.processors.format_exc_info
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exceptions,
            SecretRedactor(secrets),
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.set_name("bot")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "bot"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache,
    )
