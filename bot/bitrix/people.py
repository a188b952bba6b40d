"""The People port over Bitrix24 REST: `im.user.get` says whether a user is staff, an extranet
(guest) user or an open line's customer (a connector user).

Needed because ONIMCOMMANDADD carries no IS_EXTRANET / IS_CONNECTOR (protocol notes §1.5), and
an extranet user must never rate, even with `B24_SUPERVISOR_IDS=*`. The scope is `im`, which the
bot's webhook has already.
"""

from __future__ import annotations

from typing import Any, Final

import structlog
from cachetools import TTLCache

from bot.bitrix.coalesce import RestCaller
from bot.errors import BitrixError
from bot.models import AuthorKind

log = structlog.get_logger(__name__)

USER_GET: Final = "im.user.get"
# A user's kind changes rarely (an account turned into an extranet one): ten minutes keeps a
# busy supervisor at one lookup per ten minutes and bounds how long a change goes unseen.
CACHE_SECONDS: Final = 600.0
CACHE_USERS: Final = 10_000
# The refusals that are about the user (docs: im-user-get.md): ACCESS_DENIED, the webhook's
# owner may not see them, as with an extranet user outside their groups; USER_NOT_EXISTS, no
# such user. Neither may rate.
ABOUT_THE_USER: Final = frozenset({"ACCESS_DENIED", "USER_NOT_EXISTS"})


class BitrixPeople:
    """Users' kinds through one portal's REST client, remembered for a while."""

    def __init__(self, client: RestCaller) -> None:
        self._client = client
        self._known: TTLCache[int, AuthorKind] = TTLCache(CACHE_USERS, CACHE_SECONDS)

    async def kind(self, user_id: int) -> AuthorKind:
        known = self._known.get(user_id)
        if known is not None:
            return known
        try:
            user = await self._client.call(USER_GET, {"ID": user_id})
        except BitrixError as error:
            if error.code.upper() not in ABOUT_THE_USER:
                # The portal is down or busy (the job tries again later), or the lookup itself
                # is refused (a webhook without the `im` scope): neither says who the user is.
                raise
            log.warning("bitrix.user_unverified", user_id=user_id, code=error.code)
            return "unverified"
        kind = _kind_of(user)
        self._known[user_id] = kind
        return kind


def _kind_of(user: Any) -> AuthorKind:
    if not isinstance(user, dict):
        return "unverified"
    if user.get("connector") is True:
        return "customer"
    if user.get("extranet") is True or user.get("network") is True:
        return "extranet"  # a guest: an extranet account, or another portal's (Bitrix24.Network)
    if user.get("extranet") is False and user.get("bot") is False:
        return "staff"
    return "unverified"  # a bot, or an answer without the flags: not someone who rates
