"""The exception tree. User-facing errors carry a text key and parameters, never raw text.

`bot/texts.py` turns (key, parameters, language) into what a supervisor reads; the single place
that does so for a command is `dispatch.run_command` (a later issue), so no exception's own
message ever reaches a user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

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


class HiddenCharacters(CommandParseError):
    """Invisible characters (bidi controls, joiners) inside a command's name, session or
    rating, where they hide what the text says. Params: token, codes (`U+2066`)."""

    text_key = "parse.hidden_characters"


class BitrixError(BotError):
    """A Bitrix24 REST call failed. Carries no secret: no URL, no token, no webhook code.

    `description` is Bitrix24's own `error_description`: for logs only, never for users
    ("not intended to be shown to the end user in its raw form", protocol notes §8).
    """

    _retryable: ClassVar[bool] = False

    def __init__(
        self,
        method: str,
        code: str,
        *,
        status: int | None = None,
        description: str = "",
    ) -> None:
        self.method = method
        self.code = code
        self.status = status
        self.description = description
        # The error answer's `time`, when it has one: a 429 OPERATION_TIME_LIMIT says there
        # when the method may run again (`operating_reset_at`, §4.2).
        self.answer_time: Mapping[str, Any] = {}
        where = f"HTTP {status}" if status is not None else "in batch"
        super().__init__(f"{method}: {code} ({where})")

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed if made again later."""
        return self._retryable


class BitrixRateLimited(BitrixError):
    """QUERY_LIMIT_EXCEEDED (503), OPERATION_TIME_LIMIT (429), OVERLOAD_LIMIT (503)."""

    _retryable = True


class BitrixAuthError(BitrixError):
    """expired_token, invalid_token, NO_AUTH_FOUND (401): the credentials do not work."""


class BitrixAccessDenied(BitrixError):
    """ACCESS_DENIED, insufficient_scope, … (403): the credentials lack a right or a scope."""


class BitrixMethodNotFound(BitrixError):
    """ERROR_METHOD_NOT_FOUND (404): an unknown method, or one outside the granted scopes."""


class BitrixServerError(BitrixError):
    """A 5xx answer or INTERNAL_SERVER_ERROR: the portal failed, try again later."""

    _retryable = True


class BitrixMethodError(BitrixError):
    """A method's own refusal (usually HTTP 400: EMPTY_SESSION_ID, BOT_ID_ERROR, …)."""


class BitrixBadResponse(BitrixError):
    """An answer that is not the REST envelope: an HTML error page, broken JSON, …"""

    def __init__(self, method: str, *, status: int, content_type: str) -> None:
        super().__init__(method, "BAD_RESPONSE", status=status, description=content_type)

    @property
    def retryable(self) -> bool:
        # A proxy's HTML page for a 502/504 passes; a 200 with HTML will not get better.
        return self.status is not None and self.status >= 500  # noqa: PLR2004


class BitrixUnavailable(BitrixError):
    """The portal could not be reached or did not answer in time (no HTTP status)."""

    _retryable = True

    def __init__(self, method: str, *, reason: str) -> None:
        super().__init__(method, reason)


class BitrixBotNotReady(BitrixError):
    """No bot id to call with yet: the bot is not (re-)registered in the portal. Retryable, so a
    reply waits in its job for the registration instead of being lost."""

    _retryable = True

    def __init__(self, method: str) -> None:
        super().__init__(method, "BOT_NOT_READY")


class BitrixRequestFailed(BitrixError):
    """Our side failed while building or sending a request, or reading its answer (a bug, or
    an answer no code path expected): the calls in it fail with this, and it is not retried,
    since the same request would fail the same way."""

    def __init__(self, method: str, *, reason: str) -> None:
        super().__init__(method, "REQUEST_FAILED", description=reason)


class BotCodeTaken(BotError):
    """Our bot code belongs to a bot of another application (protocol notes §00 item 8).

    Bitrix24 lists every bot of the portal and answers a registration of a taken code with
    that bot, so only an update in our name (APP_ID_ERROR) tells it is not ours. For the
    operator, in the log and on the command line; never a supervisor's reply.
    """

    def __init__(self, code: str, bot_id: int | None, *, other_token: bool = False) -> None:
        self.code = code
        self.bot_id = bot_id
        self.other_token = other_token
        which = f"bot {bot_id}" if bot_id is not None else "a bot"
        if other_token:
            # Our CLIENT_ID's fetch-mode bot, registered under another botToken: most likely
            # another instance of this service with its own B24_BOT_TOKEN.
            super().__init__(
                f"The bot code {code!r} is taken: a fetch-mode bot registered with another "
                "B24_BOT_TOKEN has it (another instance of this service?). Give every instance "
                "the same B24_BOT_TOKEN, or set B24_BOT_CODE to another code."
            )
            return
        super().__init__(
            f"The bot code {code!r} is taken: {which} of another application has it. Set "
            "B24_BOT_CODE to a code of our own (or remove that bot in Bitrix24)."
        )


class ChatbotsV2Unavailable(BotError):
    """B24_EVENT_MODE=fetch on a portal without Chatbots 2.0 (`imbot.v2.*` not found).

    Like BotCodeTaken, a setting to fix: retrying cannot help. For the operator, in the log
    and on the command line; never a supervisor's reply.
    """

    def __init__(self) -> None:
        super().__init__(
            "This Bitrix24 portal has no Chatbots 2.0 (imbot.v2.* methods are not found), so "
            "events cannot be fetched. Set B24_EVENT_MODE=webhook and BOT_PUBLIC_URL to a "
            "public https:// address of this service, by which Bitrix24 can post events."
        )


class OAuthError(BotError):
    """The OAuth server (settings/oauth/) refused a code or a refresh token, or could not be
    asked. Carries no secret: no URL (the secret rides in its query), no code, no token.

    `code` is the OAuth server's `error` (or one of ours for a failure without an answer);
    `description` its `error_description`, for logs only, never for users.
    """

    _retryable: ClassVar[bool] = False

    def __init__(self, code: str, *, status: int | None = None, description: str = "") -> None:
        self.code = code
        self.status = status
        self.description = description
        where = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"oauth: {code} ({where})")

    @property
    def retryable(self) -> bool:
        """Whether asking again later may succeed (never with the same single-use code)."""
        return self._retryable


class OAuthServerNotPinned(OAuthError):
    """A callback named an OAuth server that is not in B24_OAUTH_SERVER: refused before any
    request, so the secret and the code never reach a host taken from a request."""

    def __init__(self) -> None:
        super().__init__("SERVER_NOT_PINNED")


class OAuthInvalidGrant(OAuthError):
    """invalid_grant: the code (30 s, single use) or the refresh token is expired, used or
    unknown. The supervisor links again."""


class OAuthInvalidClient(OAuthError):
    """invalid_client: a wrong client secret, or the application was deleted or re-created.
    Every supervisor links again (after the operator updates the settings)."""


class OAuthInvalidRequest(OAuthError):
    """invalid_request: the request was malformed (a bug of ours, or a code that is empty)."""


class OAuthInvalidScope(OAuthError):
    """invalid_scope / insufficient_scope: more rights than the application's card grants."""


class OAuthPaymentRequired(OAuthError):
    """PAYMENT_REQUIRED: the application's trial or paid period is over."""


class OAuthRefused(OAuthError):
    """Any other `error` the OAuth server answered with."""


class OAuthBadAnswer(OAuthError):
    """An answer that is neither a token pair nor an OAuth error (HTML, broken JSON, missing
    fields). Not retryable: the request reached the server, and a single-use code or refresh
    token may be spent."""

    def __init__(self, *, status: int, reason: str) -> None:
        super().__init__("BAD_ANSWER", status=status, description=reason)


class OAuthUnavailable(OAuthError):
    """The OAuth server could not be reached: nothing was delivered, asking again is safe."""

    _retryable = True

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class OAuthOutcomeUnknown(OAuthError):
    """The request was sent but its answer was lost (a timeout, a dropped connection, a
    gateway's 5xx). The server may have used the code or the refresh token and issued a pair
    we never saw; since refresh tokens may be single-use (protocol notes §5), this is never
    retried blindly: the caller decides (re-read the stored pair, or ask the user to link)."""

    _retryable = True

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason, status=status)


class NotSupervisor(UserFacingError):
    """In webhook mode only B24_SUPERVISOR_IDS may rate. Params: user_id."""

    text_key = "rate.not_supervisor"


class NotStaff(UserFacingError):
    """An extranet user (or a customer, who never gets this far) may never rate, even with
    B24_SUPERVISOR_IDS=*."""

    text_key = "rate.not_staff"


class NotLinked(UserFacingError):
    """A Telegram user not linked to a Bitrix24 user: the reply says how to link."""

    text_key = "link.not_linked"


class LinkCodeInvalid(UserFacingError):
    """A link code that is wrong, used or expired."""

    text_key = "link.code_invalid"


class LinkAttemptsExceeded(UserFacingError):
    """Too many wrong link codes from one Telegram user lately. Params: minutes."""

    text_key = "link.too_many_attempts"


class LinkSetByAdmin(UserFacingError):
    """A link from TELEGRAM_USER_MAP: only the administrator changes it."""

    text_key = "link.static"


class SessionNotFound(UserFacingError):
    """No such session. Params: session."""

    text_key = "rate.session_not_found"


class SessionNotVisible(UserFacingError):
    """history.get answered ACCESS_DENIED: no such session, or the account behind the webhook
    may not open it. Current builds answer both the same way (§00 item 2). Params: session."""

    text_key = "rate.session_not_visible"


class VoteNotSaved(UserFacingError):
    """Bitrix24 answered true, but the read-back shows the vote was not stored (§7.3).

    Params: session, rating, comment (what is stored now, rendered).
    """

    text_key = "rate.not_saved"


class VoteNotAllowed(VoteNotSaved):
    """Not stored, and the session's line does not let the webhook's owner vote as head."""

    text_key = "rate.not_allowed"


class VoteRefused(VoteNotSaved):
    """head.vote answered ACCESS_DENIED (current builds, §00 item 1): nothing was stored, for
    a cause Bitrix24 does not name (no such session, no right to rate on the line or to view
    its history, a plan without the feature). Params: session."""

    text_key = "rate.refused"


class StorageMissing(BotError):
    """There is no database of this service where BOT_DATABASE_URL points, and none may be
    created there (`python -m bot audit` reads an existing one only)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"no bot database at {path}")


class SecretKeyUnusable(BotError, ValueError):
    """BOT_SECRET_KEY / BOT_SECRET_KEY_FILE cannot be the key that seals stored tokens
    (neither set, both set, a file that cannot be read, too short). The message names the
    setting and what to do, never the key; a ValueError too, so a settings validator may
    raise it."""


class SealUnreadable(BotError):
    """A sealed token does not open (bot/secretbox.py). The message names neither the token
    nor the key."""


class SealKeyChanged(SealUnreadable):
    """Sealed under another key (its key id is not the current key's): BOT_SECRET_KEY was
    changed, and the token cannot be read until it is restored or the user links again."""


class SealTampered(SealUnreadable):
    """Sealed under the current key, yet it does not open: its bytes were changed, or it
    was copied from another row or field."""


class CannotListen(BotError):
    """The service cannot listen on BOT_HOST:BOT_PORT (the port is taken, or needs rights)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host, self.port, self.reason = host, port, reason
        super().__init__(
            f"The service cannot listen on {host}:{port} ({reason}): stop what uses that port, "
            "or choose another with BOT_PORT (in the environment or ./.env; "
            "`BOT_PORT=8081 make run`)."
        )


class TelegramApiError(BotError):
    """A Telegram Bot API call failed. Carries no secret: the token is in aiogram's URL only.

    `retry_after` is Telegram's own wait for a 429 (`parameters.retry_after`), in seconds: the
    durable queue waits at least that long before the reply is tried again (bot/jobs.py).
    """

    def __init__(
        self,
        method: str,
        code: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        description: str = "",
    ) -> None:
        self.method = method
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        self.description = description  # Telegram's own text: for logs only, never for users
        super().__init__(f"{method}: {code}")
