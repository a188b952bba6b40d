"""The SessionVotes port over Bitrix24 REST: history.get to read, head.vote to write (§7).

A vote is one `batch` request: vote and read back; a rating alone first reads the stored vote
and sends its comment back through a reference (`BatchRef`), because a rating-only
head.vote wipes the comment (§7.3).

Current builds refuse a vote they cannot store with ACCESS_DENIED (§00 item 1): VoteRefused.
Legacy builds answer true all the same, which only the read-back catches. history.get answers
ACCESS_DENIED for a missing session as for a hidden one (§00 item 2): SessionNotVisible.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.bitrix.batch import BatchCall, BatchRef, BatchResult
from bot.bitrix.coalesce import RestCaller
from bot.errors import (
    BitrixBadResponse,
    BitrixError,
    SessionNotFound,
    SessionNotVisible,
    VoteRefused,
)
from bot.ports import SessionVote, VoteResult

HISTORY: Final = "imopenlines.session.history.get"
VOTE: Final = "imopenlines.session.head.vote"


class _History(BaseModel):
    """The part of history.get's result we read."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    session_id: int = Field(alias="sessionId")
    rating: int = Field(0, alias="sessionVoteHead")
    comment: str = Field("", alias="sessionCommentHead")
    can_vote: str = Field("N", alias="canVoteHead")

    @field_validator("rating", "comment", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any, info: Any) -> Any:
        if value is None or value == "":
            return 0 if info.field_name == "rating" else ""
        return value


class BitrixSessionVotes:
    """Head votes through one portal's REST client."""

    def __init__(self, client: RestCaller) -> None:
        self._client = client

    async def read(self, session_id: int) -> SessionVote:
        try:
            return _parse(await self._client.call(HISTORY, {"SESSION_ID": session_id}), session_id)
        except BitrixError as error:
            raise _session_error(error, session_id) from error

    async def vote(
        self, session_id: int, *, rating: int | None, comment: str | None
    ) -> VoteResult:
        params: dict[str, Any] = {"SESSION_ID": session_id}
        if rating is not None:
            params["RATING"] = rating
            # Rating only: send the stored comment back, or head.vote wipes it.
            params["COMMENT"] = (
                comment if comment is not None else BatchRef("before", ("sessionCommentHead",))
            )
        elif comment is not None:
            params["COMMENT"] = comment  # comment only: the rating is left as it is
        # Only a rating alone needs the stored vote first (for its comment); otherwise the
        # read-back alone verifies the vote: two calls instead of three.
        rating_only = rating is not None and comment is None
        result = await self._vote_batch(session_id, params, with_before=rating_only)
        before = _parse(_value(result, "before", session_id), session_id) if rating_only else None
        _voted(result, session_id)
        after = _parse(_value(result, "after", session_id), session_id)
        if before is not None and after.comment != before.comment:
            # The reference did not carry the comment through intact: write it explicitly.
            params["COMMENT"] = before.comment
            retry = await self._vote_batch(session_id, params, with_before=False)
            _voted(retry, session_id)
            after = _parse(_value(retry, "after", session_id), session_id)
        return VoteResult(before=before, after=after)

    async def _vote_batch(
        self, session_id: int, params: dict[str, Any], *, with_before: bool
    ) -> BatchResult:
        calls = [
            BatchCall("vote", VOTE, params),
            BatchCall("after", HISTORY, {"SESSION_ID": session_id}),
        ]
        if with_before:
            calls.insert(0, BatchCall("before", HISTORY, {"SESSION_ID": session_id}))
        return await self._client.batch(calls, halt=True)


def _value(result: BatchResult, key: str, session_id: int) -> Any:
    try:
        return result.value(key)
    except BitrixError as error:
        raise _session_error(error, session_id) from error


def _voted(result: BatchResult, session_id: int) -> None:
    """head.vote's own answer: ACCESS_DENIED means nothing was stored (§00 item 1)."""
    try:
        result.value("vote")
    except BitrixError as error:
        if error.code == "ACCESS_DENIED":
            raise VoteRefused(session=session_id) from error
        raise


def _session_error(error: BitrixError, session_id: int) -> Exception:
    if error.code in ("INVALID_SESSION_ID", "MISSING_REQUIRED_PARAM"):
        return SessionNotFound(session=session_id)
    if error.code in ("ACCESS_DENIED", "ACCESS_ERROR"):
        return SessionNotVisible(session=session_id)
    return error


def _parse(raw: Any, session_id: int) -> SessionVote:
    try:
        history = _History.model_validate(raw)
    except ValidationError:
        raise BitrixBadResponse(HISTORY, status=200, content_type="unexpected result") from None
    if history.session_id != session_id:
        raise SessionNotFound(session=session_id)
    return SessionVote(
        session_id=session_id,
        rating=history.rating,
        comment=history.comment,
        can_vote=history.can_vote == "Y",
    )
