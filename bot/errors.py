"""The exception tree. User-facing errors carry a text key and parameters, never raw text.

`bot/texts.py` turns (key, parameters, language) into what a supervisor reads; the single place
that does so for a command is `dispatch.run_command` (a later issue), so no exception's own
message ever reaches a user.
"""

from __future__ import annotations

from typing import ClassVar

Param = str | int


class BotError(Exception):
    """Root of every error this service raises on purpose."""


class UserFacingError(BotError):
    """An error a supervisor is told about, in their language, with a way to fix it."""

    text_key: ClassVar[str]

    def __init__(self, **params: Param) -> None:
        self.params: dict[str, Param] = params
        super().__init__(self.text_key)


class CommandParseError(UserFacingError):
    """The message text is not a valid command; `params` say precisely why."""


class NotACommand(CommandParseError):
    """Text that does not start with `/`."""

    text_key = "parse.not_a_command"


class UnknownCommand(CommandParseError):
    """A `/word` that is not one of our commands. Params: command."""

    text_key = "parse.unknown_command"


class MissingSession(CommandParseError):
    """`/rate` with no session number outside a session's chat."""

    text_key = "parse.missing_session"


class InvalidSession(CommandParseError):
    """A session that is not a positive whole number. Params: token."""

    text_key = "parse.invalid_session"


class SessionOutOfRange(CommandParseError):
    """A session number beyond what Bitrix24 stores (2^31 - 1). Params: token, maximum."""

    text_key = "parse.session_out_of_range"


class RatingOutOfRange(CommandParseError):
    """A rating that is not a whole number from 1 to 5. Params: token, example."""

    text_key = "parse.rating_out_of_range"


class CommentTooLong(CommandParseError):
    """A comment Bitrix24 would silently truncate. Params: length, limit, example."""

    text_key = "parse.comment_too_long"


class RatingOrSession(RatingOutOfRange):
    """In a session's chat, a bare number that is no rating but could be another session.

    Params: token, example (as a rating), session_example (as a session).
    """

    text_key = "parse.rating_or_session"
