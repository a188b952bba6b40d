"""Open-line methods: head.vote with every quirk of protocol notes §7, history.get, dialog.get."""

from __future__ import annotations

from typing import Any, Final

from bot.sandbox import php
from bot.sandbox.portal import Portal, RestError, Session
from bot.sandbox.rest import CallContext

# Session::voteAsHead cuts a longer comment to this and appends "..." (§7.3, step 5).
COMMENT_LIMIT: Final = 10_000


# Operator::voteAsHead's refusal on current builds (§00 item 1; the docs' error table).
_NO_RIGHTS: Final = "You cannot open this conversation as you do not have sufficient rights"


async def head_vote(ctx: CallContext, params: dict[str, Any]) -> Any:
    """imopenlines.session.head.vote, as current builds behave (§00 item 1, §7.3).

    Keys are read case-sensitively; when nothing can be stored (no such session, no right to
    vote, no tariff feature) current builds answer 400 ACCESS_DENIED, and a `legacy` portal
    answers `true` all the same; a rating above 5 is stored as 0; a call without COMMENT wipes
    the stored comment, because REST passes `COMMENT ?: ''`.
    """
    session_id = params.get("SESSION_ID")
    if not php.truthy(session_id):
        raise RestError("EMPTY_SESSION_ID", "Session ID can't be empty")
    rating, comment = params.get("RATING"), params.get("COMMENT")
    if not php.truthy(php.trim(rating)) and not php.truthy(php.trim(comment)):
        raise RestError(
            "EMPTY_VOTE_PARAMS",
            "At least one of the parameters RATING or COMMENT must be specified",
        )
    comment_text = str(comment) if php.truthy(comment) else ""
    stored = _vote_as_head(ctx.portal, ctx.user_id, php.intval(session_id), rating, comment_text)
    if not stored and ctx.portal.head_vote == "current":
        raise RestError("ACCESS_DENIED", _NO_RIGHTS)
    return True


def _vote_as_head(
    portal: Portal, user_id: int, session_id: int, rating: Any, comment: str
) -> bool:
    """Session::voteAsHead: whether the vote could be stored."""
    session = portal.sessions.get(session_id)
    if session is None or not portal.can_vote_as_head(user_id, session.line_id):
        return False
    if portal.votes_ignored:
        return True  # the core stored nothing, and head.vote answers true all the same
    if len(comment) > COMMENT_LIMIT:
        comment = comment[:COMMENT_LIMIT] + "..."
    if rating is not None:
        session.vote_head = _stored_rating(rating)
    session.comment_head = comment
    portal.notifications.append(
        {
            "to_user_id": session.operator_id,
            "from_user_id": user_id,
            "session_id": session.id,
            "rating": session.vote_head,
            "comment": session.comment_head,
        }
    )
    return True


def _stored_rating(rating: Any) -> int:
    # `$voteValue == 1 || $voteValue <= 5 ? $voteValue : 0` on the raw request value: 0,
    # negatives and fractions pass (the column keeps the integer part), above 5 becomes 0,
    # and a non-numeric string compares as a string, so it becomes 0.
    if not php.is_numeric(rating):
        return 0
    value = float(rating)
    return int(value) if value == 1 or value <= 5 else 0  # noqa: PLR2004


def _find_session(portal: Portal, params: dict[str, Any]) -> Session:
    session_id, chat_id = params.get("SESSION_ID"), params.get("CHAT_ID")
    if not php.truthy(session_id) and not php.truthy(chat_id):
        raise RestError("MISSING_REQUIRED_PARAM", "Session ID or Chat ID must be provided")
    if php.truthy(session_id):
        session = portal.sessions.get(php.intval(session_id))
        if session is None:
            # A missing session is refused like a hidden one (§00 item 2).
            raise RestError("ACCESS_DENIED", _NO_RIGHTS)
        return session
    session = portal.session_of_chat(php.intval(chat_id))
    if session is None:
        raise RestError("INVALID_SESSION_ID", "Session not found")
    return session


async def history_get(ctx: CallContext, params: dict[str, Any]) -> Any:
    """imopenlines.session.history.get: the session's head vote and whether the caller may vote."""
    portal = ctx.portal
    session = _find_session(portal, params)
    if not portal.can_see_session(ctx.user_id, session):
        raise RestError("ACCESS_DENIED", _NO_RIGHTS)
    can_vote = portal.can_vote_as_head(ctx.user_id, session.line_id)
    messages = {
        str(m.id): {"id": m.id, "chat_id": m.chat_id, "author_id": m.author_id, "text": m.text}
        for m in portal.messages.values()
        if m.chat_id == session.chat_id
    }
    return {
        "chatId": session.chat_id,
        "canJoin": "N",
        "canVoteHead": "Y" if can_vote else "N",
        "sessionId": session.id,
        "sessionVoteHead": session.vote_head,
        "sessionCommentHead": session.comment_head or None,
        "userId": f"chat{session.chat_id}",
        "message": messages,
        "usersMessage": {f"chat{session.chat_id}": sorted(int(k) for k in messages)},
        "users": {},
        "openlines": {"canvoteashead": {str(session.line_id): can_vote}},
    }


async def dialog_get(ctx: CallContext, params: dict[str, Any]) -> Any:
    """imopenlines.dialog.get by CHAT_ID, DIALOG_ID, SESSION_ID or USER_CODE."""
    portal = ctx.portal
    chat = None
    if php.truthy(params.get("CHAT_ID")):
        chat = portal.chats.get(php.intval(params["CHAT_ID"]))
    elif php.truthy(params.get("DIALOG_ID")):
        chat = portal.chats.get(php.intval(str(params["DIALOG_ID"]).removeprefix("chat")))
    elif php.truthy(params.get("SESSION_ID")):
        session = portal.sessions.get(php.intval(params["SESSION_ID"]))
        chat = portal.chats.get(session.chat_id) if session else None
    elif php.truthy(params.get("USER_CODE")):
        code = str(params["USER_CODE"])
        chat = next((c for c in portal.chats.values() if c.entity_id == code), None)
    session = portal.session_of_chat(chat.id) if chat else None
    if chat is None or chat.entity_type != "LINES" or session is None:
        raise RestError("ACCESS_ERROR", "You do not have access to the specified dialog")
    if not portal.can_see_session(ctx.user_id, session):
        raise RestError("ACCESS_ERROR", "You do not have access to the specified dialog")
    return {
        "id": chat.id,
        "name": chat.title,
        "owner": chat.author_id,
        "type": "lines",
        "message_type": "L",
        "entity_type": chat.entity_type,
        "entity_id": chat.entity_id,
        "entity_data_1": chat.entity_data_1,
        "entity_data_2": chat.entity_data_2,
        "entity_data_3": chat.entity_data_3,
        "dialog_id": chat.dialog_id,
        "manager_list": sorted(portal.lines[session.line_id].heads),
    }


async def scope(ctx: CallContext, params: dict[str, Any]) -> Any:
    """scope (common/system/scope.md): the scopes granted to the webhook, `basic` left out;
    with `full` every scope the portal has. An OAuth token's application is not modelled:
    it gets the scopes the sandbox knows."""
    known = {"imbot", "imopenlines", "im", "user", "crm"}
    # PHP truthiness: a form-encoded "false" asks for the full list too (scope.md).
    if php.truthy(params.get("full")) or ctx.scopes is None:
        return sorted(known)
    return sorted(ctx.scopes)


async def profile(ctx: CallContext, _params: dict[str, Any]) -> Any:
    """profile: the user behind the credentials."""
    user = ctx.portal.user(ctx.user_id)
    return {
        "ID": str(user.id),
        "ADMIN": user.is_admin,
        "NAME": user.first_name,
        "LAST_NAME": user.last_name,
        "PERSONAL_GENDER": user.gender,
        "TIME_ZONE": "",
        "TIME_ZONE_OFFSET": 0,
    }


async def user_current(ctx: CallContext, _params: dict[str, Any]) -> Any:
    """user.current (api-reference/user/user-current.md): the user behind the credentials, the
    fields the `user_brief` scope shows."""
    user = ctx.portal.user(ctx.user_id)
    return {
        "ID": str(user.id),
        "ACTIVE": user.active,
        "NAME": user.first_name,
        "LAST_NAME": user.last_name,
        "SECOND_NAME": "",
        "PERSONAL_GENDER": user.gender,
        "WORK_POSITION": user.work_position,
        "UF_DEPARTMENT": [] if user.extranet else [1],
    }
