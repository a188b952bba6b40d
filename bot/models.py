"""Frozen value objects that cross the seams: what came in, where the answer goes, what to say."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.texts import Lang


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BitrixRoute(Frozen):
    """Where a Bitrix24 reply goes, and how (protocol notes §1.6, §6.5, §6.7)."""

    kind: Literal["bitrix"] = "bitrix"
    dialog_id: str  # the user id in a private chat, chat<ID> otherwise
    author_dialog_id: str  # the bot's private chat with the author: the author's user id
    command_id: int | None = None  # set when the command came as ONIMCOMMANDADD
    message_id: int | None = None
    bot_in_chat: bool = True  # the bot may post into `dialog_id`
    openline: bool = False  # an open-line chat: nothing may reach the customer
    keyboard_message_id: int | None = None  # a click: the bot's message holding the keyboard
    # The API the command came through: "v2" (Chatbots 2.0, fetched) or "v1" (classic imbot).
    # A command id belongs to the bot of its API: a v1 job answered after a switch to fetch
    # mode gets a message, never a v2 command answer.
    api: Literal["v1", "v2"] = "v1"
    # When the portal queued the event (a fetched event's `date`), if it says: the answer
    # window runs from then, not from when the event was fetched (§0 item 13).
    queued_at: float | None = None

    def to_author(self) -> BitrixRoute:
        """The bot's private chat with the author: where what only they may see is sent (a
        new message there: the command, in another chat, cannot be answered from it)."""
        private = {"dialog_id": self.author_dialog_id, "bot_in_chat": True}
        unanswerable = {"command_id": None, "message_id": None, "keyboard_message_id": None}
        return self.model_copy(update=private | unanswerable)


class TelegramRoute(Frozen):
    """Where a Telegram reply goes: the chat (a group, or the private chat with the bot)."""

    kind: Literal["telegram"] = "telegram"
    chat_id: int
    message_id: int | None = None  # the command's message: the answer replies to it
    thread_id: int | None = None  # a forum topic the command came from
    callback_query_id: str | None = None  # a button press: answered with answerCallbackQuery
    keyboard_message_id: int | None = None  # the bot's message holding the pressed keyboard


Route = Annotated[BitrixRoute | TelegramRoute, Field(discriminator="kind")]


# Who wrote a message, as far as the platform says: staff of the portal, an extranet user (a
# guest account of a partner), or a customer writing through an open line's connector; or
# "unverified" when the event does not say (Bitrix24's ONIMCOMMANDADD carries no IS_* flags):
# the core then asks the platform before anything is rated.
AuthorKind = Literal["staff", "extranet", "customer", "unverified"]


class TooManyCommands(Frozen):
    """A notice, not a command: a message held more commands than one message may run."""

    kind: Literal["too_many_commands"] = "too_many_commands"
    taken: int  # the commands of the message that run
    skipped: int  # the commands after them that do not


class NoAuthor(Frozen):
    """A notice, not a command: a command posted with no person behind it (a channel post, or
    a group member posting as the group), so nobody can be authorised."""

    kind: Literal["no_author"] = "no_author"


class ButtonNotOffered(Frozen):
    """A notice, not a command: a button press the pressed message does not offer (a keyboard
    too old for the platform to show, or a modified client's own data)."""

    kind: Literal["button_not_offered"] = "button_not_offered"


Notice = Annotated[TooManyCommands | NoAuthor | ButtonNotOffered, Field(discriminator="kind")]


class IncomingCommand(Frozen):
    """One command text from one person, as every transport hands it to the core."""

    key: str  # idempotency key: the same delivery twice has the same key
    source: Literal["bitrix", "telegram"]
    author_id: int  # the platform's user id
    # Telegram: the Bitrix24 user the author's account is linked to (None: not linked), found
    # when the update arrived. Bitrix24 commands act as their author.
    b24_user_id: int | None = None
    author_kind: AuthorKind = "staff"
    text: str
    notice: Notice | None = None  # set instead of a command text the user typed
    # Not the first job of its message: someone who may not rate is answered by the first one
    # alone (bot/intake.py), so this one stays silent for them.
    follows: bool = False
    chat_session_id: int | None = None  # the open-line chat's own session, if any
    language: Lang = "en"
    received_at: float  # time.time() when the event arrived
    route: Route

    @property
    def bitrix_route(self) -> BitrixRoute:
        """The route of a command that came from Bitrix24."""
        if not isinstance(self.route, BitrixRoute):
            raise TypeError("not a Bitrix24 command")
        return self.route

    def in_private_chat(self) -> bool:
        """Written in the author's private chat with the bot (a Telegram private chat's id is
        the user's id)."""
        if isinstance(self.route, BitrixRoute):
            return self.route.dialog_id == self.route.author_dialog_id
        return self.route.chat_id == self.author_id

    def acting_user(self) -> int | None:
        """The Bitrix24 user this command acts as: who is authorised, and who is audited."""
        return self.author_id if self.source == "bitrix" else self.b24_user_id


class ReplyButton(Frozen):
    """A keyboard button that sends `/<command> <params>` back to the bot when clicked, or,
    with `url`, opens that address in the browser (nothing comes back to the bot)."""

    text: str
    command: str = ""
    params: str = ""
    url: str | None = None  # an https address the service made (never one a user wrote)


class Reply(Frozen):
    """What to answer, platform-neutral; an empty text is nothing to say (`SILENT`)."""

    text: str
    buttons: tuple[ReplyButton, ...] = ()
    settled: bool = False  # what a keyboard offered is done: its buttons can go
    # Holds a secret (a one-time link code): neither the audit nor the finished job keeps it.
    secret: bool = False
    # Not shown: whose rights Bitrix24 checked for it, "webhook" (its owner) or "own" (the
    # supervisor's token, application mode), kept with the decided reply for the audit.
    acted_as: Literal["webhook", "own"] | None = None


SILENT = Reply(text="")
