"""What a Bitrix24 refusal of the incoming webhook means, in words an administrator acts on.

One source for `python -m bot check` and for the service's log lines at start, so both say
the same. Texts name settings and Bitrix24's own screens, never the webhook URL or its code.

The codes are the REST API's system errors (`_includes/system-errors.md` @05e4d575): a wrong
webhook code or user id is `INVALID_CREDENTIALS` "No active webhook with the specified user
identifier and secret code was found" on current builds, `NO_AUTH_FOUND` "Wrong authorization
data" on older ones and in the protocol notes' table (§3.4): both mean the same to us.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from bot.errors import (
    BitrixAuthError,
    BitrixBadResponse,
    BitrixError,
    BitrixMethodNotFound,
    BitrixUnavailable,
)

# The scopes the service needs (protocol notes §6.8): bots, open-line sessions, chats.
REQUIRED_SCOPES: Final = ("imbot", "imopenlines", "im")

# Where Bitrix24 shows inbound webhooks (local-integrations/local-webhooks.md @05e4d575).
WEBHOOK_SCREEN: Final = (
    "in Bitrix24 open Applications > Developer resources > Common use cases > Other > "
    "Inbound webhook"
)
_WRONG_CODE: Final = frozenset({"NO_AUTH_FOUND", "INVALID_CREDENTIALS", "EXPIRED_TOKEN"})


def _wrong_code(error: BitrixError) -> bool:
    code = error.code.upper()
    return code in _WRONG_CODE or (isinstance(error, BitrixAuthError) and code != "ACCESS_DENIED")


def _no_rest(error: BitrixError) -> bool:
    return error.code.upper() == "ACCESS_DENIED" and error.status == 401  # noqa: PLR2004


def _no_scope(error: BitrixError) -> bool:
    # ERROR_METHOD_NOT_FOUND also answers a method outside the granted scopes (§3.4); an
    # imbot.v2 method not found is a portal without (that revision of) Chatbots 2.0 instead.
    method = error.method.lower()
    return error.code.upper() == "INSUFFICIENT_SCOPE" or (
        isinstance(error, BitrixMethodNotFound)
        and method.startswith("im")
        and not method.startswith("imbot.v2.")
    )


def _not_rest(error: BitrixError) -> bool:
    return isinstance(error, BitrixBadResponse) and (error.status or 0) < 500  # noqa: PLR2004


# (what the refusal is, what it means): the first that matches speaks.
_RULES: Final[tuple[tuple[Callable[[BitrixError], bool], str], ...]] = (
    (
        _wrong_code,
        (
            "Bitrix24 does not accept the webhook code in B24_WEBHOOK_URL: no active webhook has "
            "this user id and code (a typo, or the webhook was deleted, expired or given a new "
            f"code); {WEBHOOK_SCREEN} and copy its URL again"
        ),
    ),
    (
        _no_rest,
        (
            "Bitrix24 refuses REST calls on this portal's plan ('REST is available only by "
            "subscription'): the REST API needs a commercial plan or a trial"
        ),
    ),
    (_no_scope, ""),  # scopes_hint, below
    (
        lambda error: error.code.upper() == "PORTAL_DELETED",
        "Bitrix24 says the portal was deleted or its public part is closed",
    ),
    (
        lambda error: isinstance(error, BitrixUnavailable),
        (
            "the portal in B24_WEBHOOK_URL cannot be reached: check its address and this "
            "machine's DNS, firewall and proxy"
        ),
    ),
    (
        _not_rest,
        (
            "the address in B24_WEBHOOK_URL answers, but not as Bitrix24's REST API: copy the "
            "webhook URL exactly as Bitrix24 shows it, ending in /rest/<user id>/<code>/"
        ),
    ),
)


def refusal_hint(error: BitrixError) -> str | None:
    """What a failed call through B24_WEBHOOK_URL says about the webhook, or None when it
    says nothing about it (a method's own refusal, a passing failure of the portal)."""
    for matches, hint in _RULES:
        if matches(error):
            return hint or scopes_hint(REQUIRED_SCOPES)
    return None


def missing_scopes(granted: Iterable[str]) -> list[str]:
    have = {scope.lower() for scope in granted}
    return [scope for scope in REQUIRED_SCOPES if scope not in have]


def scopes_hint(missing: Iterable[str]) -> str:
    names = ", ".join(missing)
    return (
        f"the inbound webhook lacks the scopes {names}: {WEBHOOK_SCREEN}, edit the webhook as "
        f"the employee who created it, tick {', '.join(REQUIRED_SCOPES)} and save (an "
        "administrator editing another's webhook gives it a new code: then copy the URL again)"
    )
