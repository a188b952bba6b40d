"""im.* methods the bot uses besides imbot.*: im.user.get (docs `api-reference/chats/users/
im-user-get.md`)."""

from __future__ import annotations

from typing import Any

from bot.sandbox import php
from bot.sandbox.portal import RestError
from bot.sandbox.rest import CallContext


async def user_get(ctx: CallContext, params: dict[str, Any]) -> Any:
    """im.user.get {ID}: a user's card with its extranet / connector / bot flags; the caller's
    own card without ID.

    [UNCONFIRMED] who may see whom: here an extranet user is visible only to administrators and
    to users who share a chat with them (Bitrix24 limits extranet users to their groups), and
    ACCESS_DENIED answers everyone else.
    """
    portal = ctx.portal
    user_id = php.intval(params["ID"]) if php.truthy(params.get("ID")) else ctx.user_id
    if user_id in portal.bots:
        return _card(user_id, portal.bots[user_id].name, "", bot=True)
    user = portal.users.get(user_id)
    if user is None:
        raise RestError("USER_NOT_EXISTS", "User not exists")
    caller = portal.users.get(ctx.user_id)
    shares_a_chat = any({user_id, ctx.user_id} <= chat.members for chat in portal.chats.values())
    if user.extranet and not (caller is not None and caller.is_admin) and not shares_a_chat:
        raise RestError("ACCESS_DENIED", "You don't have access to this user")
    card = _card(user.id, user.first_name, user.last_name, extranet=user.extranet)
    return card | {
        "work_position": user.work_position,
        "network": user.network,
        "connector": user.connector,
        "external_auth_id": "imconnector" if user.connector else "default",
    }


def _card(
    user_id: int, first_name: str, last_name: str, *, bot: bool = False, extranet: bool = False
) -> dict[str, Any]:
    return {
        "id": user_id,
        "name": f"{first_name} {last_name}".strip(),
        "first_name": first_name,
        "last_name": last_name,
        "work_position": "",
        "extranet": extranet,
        "network": False,
        "bot": bot,
        "connector": False,
        "external_auth_id": "bot" if bot else "default",
        "status": "online",
    }
