"""run_command(): parse -> authorise -> handler -> reply, and the ONE place that maps every
exception to what the user is told."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import structlog

from bot.commands import (
    HelpCommand,
    LinkCommand,
    LogoutCommand,
    RateCommand,
    RatePrompt,
    UnlinkCommand,
    parse_command,
)
from bot.config import UserAllowList
from bot.errors import (
    BitrixError,
    BitrixRateLimited,
    BitrixServerError,
    BitrixUnavailable,
    CommandParseError,
    NotLinked,
    NotStaff,
    NotSupervisor,
    RelinkNeeded,
    UnknownCommand,
    UserFacingError,
)
from bot.models import (
    SILENT,
    BitrixRoute,
    IncomingCommand,
    Notice,
    Reply,
    ReplyButton,
    Route,
    TooManyCommands,
)
from bot.ports import Links, OwnAccounts, People, SessionVotes
from bot.storage import Decided
from bot.texts import Lang, render
from handlers.feed import feed_job
from handlers.help import help_reply
from handlers.link import link, unlink
from handlers.rate import prompt, rate

log = structlog.get_logger(__name__)

SendReply = Callable[[Route, Reply, float], Awaitable[None]]


def command_fields(incoming: IncomingCommand) -> dict[str, Any]:
    """command, session_id and rating of a command's text, for logs and the audit."""
    try:
        command = parse_command(incoming.text, chat_session_id=incoming.chat_session_id)
    except CommandParseError:
        return {"command": None, "session_id": None, "rating": None}
    if isinstance(command, HelpCommand | LinkCommand | UnlinkCommand | LogoutCommand):
        return {"command": _NAMES[type(command)], "session_id": None, "rating": None}
    rating = command.rating if isinstance(command, RateCommand) else None
    return {"command": "rate", "session_id": command.session_id, "rating": rating}


_NAMES: dict[type, str] = {
    HelpCommand: "help",
    LinkCommand: "link",
    UnlinkCommand: "unlink",
    LogoutCommand: "logout",
}
# A refusal of a vote cast under the supervisor's own token is about them, not the bot's
# account (application mode, issue 12).
_OWN_WORDS: dict[str, str] = {
    key: f"{key}.own"
    for key in ("rate.refused", "rate.session_not_visible", "rate.not_allowed", "rate.not_saved")
}


@dataclass(frozen=True)
class Services:
    """What the use-cases need, built once in the composition root."""

    votes: SessionVotes
    supervisors: UserAllowList
    people: People
    # Telegram (issue 10); None: Telegram is off, `/link` and `/unlink` are unknown commands.
    links: Links | None = None
    # getMe's username, for the deep link; None: not known (yet: Telegram answers after start)
    telegram_username: Callable[[], str | None] = lambda: None
    feed_chat_id: int | None = None  # TELEGRAM_FEED_CHAT_ID
    # Application mode (issue 12): votes cast with each supervisor's own token; None: every
    # vote is the webhook owner's.
    accounts: OwnAccounts | None = None


@dataclass(frozen=True)
class Handled:
    """A command's reply, and its outcome in a word for the log line, the audit and metrics:
    saved, prompted, help, a parse error's key, a refusal's name, bitrix_error:<code>, crashed."""

    reply: Reply
    outcome: str
    follow_ups: tuple[Decided, ...] = ()  # queued with the decision: a saved vote's feed line


class RetryLater(Exception):
    """The portal is unreachable or overloaded: run the command again later."""

    def __init__(self, error: BitrixError) -> None:
        super().__init__(error.code)
        self.error = error


async def run_command(
    incoming: IncomingCommand, services: Services, *, may_retry: bool = False
) -> Handled:
    """Run one command; every failure becomes a reply saying what happened, except that with
    `may_retry` a passing portal failure raises RetryLater instead."""
    lang = incoming.language
    try:
        return await _execute(incoming, services)
    except CommandParseError as error:
        return Handled(_text(error, lang), error.text_key)
    except UserFacingError as error:
        return Handled(_text(error, lang), error.text_key.rsplit(".", 1)[-1])
    except BitrixError as error:
        if may_retry and error.retryable:
            raise RetryLater(error) from error
        log.warning(
            "command.bitrix_error",
            method=error.method,
            code=error.code,
            status=error.status,
            description=error.description,
        )
        return Handled(Reply(text=render(_bitrix_text(error), lang)), f"bitrix_error:{error.code}")
    except Exception:
        log.exception("command.crashed", text_length=len(incoming.text))
        return Handled(Reply(text=render("error.internal", lang)), "crashed")


async def _execute(incoming: IncomingCommand, services: Services) -> Handled:
    """Parse, authorise and run; raises for whatever went wrong."""
    lang = incoming.language
    if incoming.follows and not await _may_rate(incoming, services):
        # The message's first job answers someone who may not rate, once (bot/intake.py).
        return Handled(SILENT, "silent")
    if incoming.notice is not None:  # not a command: what the intake could not run
        return Handled(Reply(text=_notice_text(incoming.notice, lang)), incoming.notice.kind)
    command = parse_command(incoming.text, chat_session_id=incoming.chat_session_id)
    if isinstance(command, HelpCommand):
        return Handled(help_reply(command, incoming), "help")
    if isinstance(command, LinkCommand | UnlinkCommand | LogoutCommand):
        return await _account_command(command, incoming, services)
    if not await _authorise(incoming, services):
        return Handled(SILENT, "customer")  # any answer could reach the customer
    return await _rate(command, incoming, services)


def _notice_text(notice: Notice, lang: Lang) -> str:
    if isinstance(notice, TooManyCommands):
        return render("intake.too_many_commands", lang, taken=notice.taken, skipped=notice.skipped)
    return render(f"notice.{notice.kind}", lang)


async def _rate(
    command: RateCommand | RatePrompt, incoming: IncomingCommand, services: Services
) -> Handled:
    """An authorised `/rate`: the keyboard, or the vote and its feed line; in application
    mode under the supervisor's own token, or a request to authorise once."""
    if services.accounts is None:
        return await _rate_as(command, incoming, services, services.votes, "webhook")
    await _still_linked(incoming, services)
    own = await services.accounts.votes_of(_acting_user(incoming))
    if own is None:
        return await _ask_to_authorise(incoming, services.accounts, "oauth.link_needed")
    try:
        return await _rate_as(command, incoming, services, own, "own")
    except RelinkNeeded as error:
        log.info("oauth.relink_needed", user_id=_acting_user(incoming), reason=error.reason)
        asked = await _ask_to_authorise(incoming, services.accounts, "oauth.relink_needed")
        # The audit says why the stored token went (a deactivated user, a re-created app).
        return replace(asked, outcome=f"relink_needed:{error.reason}")


async def _rate_as(
    command: RateCommand | RatePrompt,
    incoming: IncomingCommand,
    services: Services,
    votes: SessionVotes,
    acted_as: Literal["webhook", "own"],
) -> Handled:
    """`/rate` with the votes of the webhook's owner or of the supervisor; the reply says
    whose rights Bitrix24 checked (for the audit)."""
    lang = incoming.language
    follow_ups: tuple[Decided, ...] = ()
    try:
        if isinstance(command, RatePrompt):
            reply, outcome = await prompt(command, votes, lang), "prompted"
        else:
            reply, vote = await rate(command, votes, lang)
            outcome = "saved"
            if services.feed_chat_id is not None:
                follow_ups = (feed_job(incoming, vote, services.feed_chat_id),)
    except UserFacingError as error:
        if acted_as != "own" or error.text_key not in _OWN_WORDS:
            raise
        reply = Reply(text=render(_OWN_WORDS[error.text_key], lang, **error.params))
        outcome = error.text_key.rsplit(".", 1)[-1]
    return Handled(reply.model_copy(update={"acted_as": acted_as}), outcome, follow_ups)


async def _still_linked(incoming: IncomingCommand, services: Services) -> None:
    """A Telegram command carries the Bitrix24 user its account was linked to when it arrived;
    it may have waited since (in the queue, or for that user to authorise). Under that user's
    own token it runs only while the account is still linked to them: an undone link voids
    it, as it voids the next command at intake."""
    if incoming.source != "telegram":
        return
    now = await services.links.linked(incoming.author_id) if services.links else None
    if now is None or now != incoming.b24_user_id:
        log.info("oauth.link_undone", telegram_user_id=incoming.author_id)
        raise NotLinked


def _unknown(incoming: IncomingCommand) -> UnknownCommand:
    """A command this set-up does not offer (Telegram off, no application), said as unknown."""
    return UnknownCommand(command=incoming.text.split(maxsplit=1)[0])


def _acting_user(incoming: IncomingCommand) -> int:
    user = incoming.acting_user()
    if user is None:  # _authorise has refused such a command already
        raise NotLinked
    return user


async def _ask_to_authorise(
    incoming: IncomingCommand, accounts: OwnAccounts, text_key: str
) -> Handled:
    """The answer with a button that opens Bitrix24's authorisation page; once the
    supervisor allows, this very command runs again (the callback queues it)."""
    lang = incoming.language
    url = await accounts.link_url(_acting_user(incoming), waiting=incoming)
    button = ReplyButton(text=render("oauth.button", lang), url=url)
    # `secret`: the address holds a single-use state; neither the audit nor the job keeps it.
    reply = Reply(text=render(text_key, lang), buttons=(button,), secret=True)
    outcome = text_key.rsplit(".", 1)[-1]
    route = incoming.route
    if not isinstance(route, BitrixRoute) or route.openline or incoming.in_private_chat():
        # An open line's answer goes to the private chat anyway. Telegram: /rate is for
        # groups, and the bot may not write first to someone who never opened a private chat
        # with it (TELEGRAM_USER_MAP); there a member who clicks the link as themselves is
        # refused, which spends the state, and the supervisor asks again.
        return Handled(reply, outcome)
    # In a Bitrix24 group the others would see the link, and one clicking it as themselves
    # spends its state (refused, but the waiting vote is lost): it goes to the private chat.
    private = incoming.model_copy(
        update={"key": f"{incoming.key}:link", "text": "", "route": route.to_author()}
    )
    told = Reply(text=render("oauth.link_sent_privately", lang))
    sent = Decided(incoming=private, reply=reply, outcome="link_sent")  # counted once
    return Handled(told, outcome, (sent,))


async def _logout(incoming: IncomingCommand, services: Services) -> Handled:
    """`/logout`: forget the supervisor's own token."""
    if services.accounts is None:  # not application mode
        raise _unknown(incoming)
    forgotten = await services.accounts.forget(_acting_user(incoming))
    text = render(
        "oauth.logged_out" if forgotten else "oauth.nothing_to_forget", incoming.language
    )
    return Handled(Reply(text=text), "logged_out" if forgotten else "nothing_to_forget")


async def _account_command(
    command: LinkCommand | UnlinkCommand | LogoutCommand,
    incoming: IncomingCommand,
    services: Services,
) -> Handled:
    """Linking and forgetting need no right to rate (a link grants nothing by itself), but
    nothing is ever said in an open line's chat, where the customer would read it."""
    route = incoming.route
    if incoming.author_kind == "customer" or (isinstance(route, BitrixRoute) and route.openline):
        return Handled(SILENT, "customer")
    if isinstance(command, LogoutCommand):
        return await _logout(incoming, services)
    if services.links is None:  # Telegram is off
        raise _unknown(incoming)
    if isinstance(command, UnlinkCommand):
        return Handled(await unlink(command, incoming, services.links), "unlinked")
    reply = await link(command, incoming, services.links, services.telegram_username())
    return Handled(reply, "linked" if command.code else "link_code")


async def _authorise(incoming: IncomingCommand, services: Services) -> bool:
    """Whether the author may rate: raises NotLinked, NotStaff or NotSupervisor to say why
    not, and is False for an open line's customer, who is told nothing.

    A Telegram command acts as its linked Bitrix24 user (`acting_user`), who is checked as a
    Bitrix24 author the event did not describe: looked up, staff, and on the list.

    Only staff rate, whatever B24_SUPERVISOR_IDS says (`*` included). A customer's commands
    never become jobs (bot/intake.py), but one the event did not show as a customer (a typed
    command has no IS_CONNECTOR) is found by the lookup. An author the event did not describe
    is looked up once they are on the list, so a stranger's commands cost no lookup.
    """
    user = incoming.acting_user()
    if user is None:
        raise NotLinked
    # A Telegram update says nothing about the Bitrix24 user: always looked up.
    kind = "unverified" if incoming.source == "telegram" else incoming.author_kind
    if kind == "unverified" and services.supervisors.allows(user):
        kind = await services.people.kind(user)
        kind = "extranet" if kind == "unverified" else kind  # not described: not staff
    if kind == "customer":
        return False
    if kind == "extranet":
        raise NotStaff
    if not services.supervisors.allows(user):
        raise NotSupervisor(user_id=user)
    return True


async def _may_rate(incoming: IncomingCommand, services: Services) -> bool:
    """`_authorise` without the reasons."""
    try:
        return await _authorise(incoming, services)
    except (NotLinked, NotStaff, NotSupervisor):
        return False


def _text(error: UserFacingError, lang: Lang) -> Reply:
    return Reply(text=render(error.text_key, lang, **error.params))


def _bitrix_text(error: BitrixError) -> str:
    if isinstance(error, BitrixRateLimited):
        return "error.portal_busy"
    if isinstance(error, BitrixUnavailable | BitrixServerError):
        return "error.portal_unavailable"
    return "error.internal"
