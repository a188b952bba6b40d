"""The sandbox portal's state: users, open lines, chats, sessions, bots, messages, calls.

Plain data, no HTTP: `rest.py` serves it, `events.py` sends events from it, tests inspect it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Literal

from bot.sandbox.faults import spend
from bot.sandbox.oauth import OAuthState
from bot.sandbox.v2.queue import EventQueue


class RestError(Exception):
    """A REST error the sandbox answers with: `{"error", "error_description"}` and a status."""

    def __init__(
        self,
        code: str,
        description: str,
        status: int = 400,
        *,
        time: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.description = description
        self.status = status
        self.time = time  # the answer's `time`, when the error carries one (429 operating)


@dataclass
class User:
    id: int
    first_name: str
    last_name: str
    gender: str = "M"
    is_admin: bool = False
    work_position: str = ""
    connector: bool = False  # an open line's customer, writing through a connector
    extranet: bool = False  # a guest account (a partner's), not the portal's staff
    network: bool = False  # a Bitrix24.Network account: another portal's user
    active: bool = True  # a dismissed (deactivated) employee cannot log in, nor their tokens

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass
class OpenLine:
    """An open line (its CONFIG_ID). `heads` have the vote-as-head right; `supervisors` see
    the line's sessions without it; `operators` answer customers."""

    id: int
    name: str
    heads: set[int] = field(default_factory=set)
    supervisors: set[int] = field(default_factory=set)
    operators: set[int] = field(default_factory=set)


@dataclass
class Chat:
    id: int
    title: str
    type: str = "C"  # P private, C group, L open line (protocol notes §1.8)
    members: set[int] = field(default_factory=set)
    entity_type: str = ""  # LINES for an open-line operator chat
    entity_id: str = ""  # connector|LINE_ID|CONNECTOR_CHAT_ID|CONNECTOR_USER_ID for LINES
    entity_data_1: str = ""  # the session string; its 6th "|" field is SESSION_ID
    entity_data_2: str = ""
    entity_data_3: str = ""
    author_id: int = 0

    @property
    def dialog_id(self) -> str:
        return f"chat{self.id}"

    def forwards_to_customer(self, *, system: bool, skip_connector: bool) -> bool:
        """The open-line connector forwards every non-system message to the customer, unless
        it is SKIP_CONNECTOR=Y (then an operator-only note) or the chat is silent (§00 item 7;
        CHAT_ENTITY_DATA_3 is the silent-mode flag, §1.7)."""
        line = self.entity_type == "LINES" or self.type == "L"
        return line and not system and not skip_connector and self.entity_data_3 != "Y"


@dataclass
class Session:
    id: int
    line_id: int
    chat_id: int
    operator_id: int
    closed: bool = True
    vote_head: int = 0
    comment_head: str = ""


@dataclass
class Bot:
    id: int
    code: str
    app_id: str  # "custom<CLIENT_ID>" for a webhook-registered bot (protocol notes §6.8)
    name: str
    type: str = "B"
    openline: bool = False
    handlers: dict[str, str] = field(default_factory=dict)  # EVENT_* -> URL as Bitrix keeps it
    application_token: str = field(default_factory=lambda: secrets.token_hex(16))
    # Chatbots 2.0: "fetch" (ONIMBOTV2* events queued for Event.get) or "webhook" (posted to
    # `webhook_url`); "" for a classic bot no v2 call has touched. See `Portal.speaks_v2`.
    event_mode: str = ""
    webhook_url: str = ""
    registered_v2: bool = False  # through imbot.v2.Bot.register, not imbot.register


@dataclass
class BotCommand:
    id: int
    bot_id: int
    app_id: str
    command: str
    handler: str
    common: bool = False
    hidden: bool = False
    lang: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Message:
    id: int
    chat_id: int
    author_id: int
    text: str
    system: bool = False
    keyboard: Any = None
    attach: Any = None
    menu: Any = None
    posted_at: float = 0.0  # the portal's clock when it was posted
    to_customer: bool = False  # an open-line message the connector forwards to the customer
    via: str = ""  # the REST method that posted it, or "user"


@dataclass
class Webhook:
    user_id: int
    code: str
    scopes: frozenset[str]


@dataclass
class Call:
    """One REST request the sandbox received, for tests to inspect."""

    method: str
    params: dict[str, Any]
    auth: str  # "webhook", "token" or "none"
    user_id: int | None
    status: int
    error: str | None
    batch_of: str | None = None  # the outer call's method, for calls made inside `batch`
    level: float | None = None  # the leaky bucket's level after the request (not for inner calls)


@dataclass
class Fault:
    """An injected failure for requests to `method` ("*" for any), `times` times (-1: always)."""

    method: str = "*"
    times: int = 1
    status: int | None = None
    error: str | None = None
    description: str = ""
    body: str | None = None
    content_type: str = "text/html"
    delay: float = 0.0
    hang: bool = False
    # The method runs (and stores) first, then the fault answers: a gateway's 502/504 or a
    # lost answer after the portal did the work.
    after: bool = False
    # For calls of `method` made inside `batch` (never "*"): that call alone fails with the
    # fault's error, the rest of the batch goes on (delay, hang and body do not apply).
    inside_batch: bool = False


@dataclass
class Portal:
    """One Bitrix24 portal. `clock` is wall time; tests move it with `advance_clock`."""

    domain: str = "sandbox.bitrix24.test"
    language: str = "ru"
    member_id: str = field(default_factory=lambda: secrets.token_hex(16))
    can_use_vote_head: bool = True  # the tariff feature imopenlines_can_use_vote_head
    # "current": head.vote answers 400 ACCESS_DENIED when it stores nothing (protocol notes
    # §00 item 1); "legacy": older builds answer true regardless (§7.3).
    head_vote: Literal["current", "legacy"] = "current"
    # A build of the core that stores no head vote for reasons the REST answer does not show
    # (protocol notes §9 item 3): head.vote still answers true.
    votes_ignored: bool = False
    users: dict[int, User] = field(default_factory=dict)
    lines: dict[int, OpenLine] = field(default_factory=dict)
    chats: dict[int, Chat] = field(default_factory=dict)
    sessions: dict[int, Session] = field(default_factory=dict)
    bots: dict[int, Bot] = field(default_factory=dict)
    commands: dict[int, BotCommand] = field(default_factory=dict)
    messages: dict[int, Message] = field(default_factory=dict)
    webhooks: list[Webhook] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)  # a never-expiring token -> user id
    oauth: OAuthState = field(default_factory=OAuthState)  # the local app and its pairs
    calls: list[Call] = field(default_factory=list)
    refused: int = 0  # requests answered 503 QUERY_LIMIT_EXCEEDED by the leaky bucket
    faults: list[Fault] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    # (command id, message id) -> when the bot was granted its 10-minute answer window.
    answer_grants: dict[tuple[int, int], float] = field(default_factory=dict)
    # The operating-time limit (§00 item 10, §4.2): seconds of execution per method within a
    # window of ten buckets; a method that has used `operating_limit` answers 429.
    operating_limit: float = 480.0
    operating_window: float = 600.0
    # Seconds one call of a method counts (by lower-case name); unlisted: its real duration.
    operating_cost: dict[str, float] = field(default_factory=dict)
    operating: dict[str, dict[int, float]] = field(default_factory=dict)  # method -> bucket
    clock_offset: float = 0.0
    chatbots_v2: bool = True  # a portal without Chatbots 2.0 knows no imbot.v2.* method
    # Whether `imbot.v2.Bot.update {eventMode}` makes a bot registered through imbot.register
    # get ONIMBOTV2* events. The docs say no: "the bot receives events only in the format of
    # the API version through which it was registered" (chat-bots-v2/migration.md); issue 9
    # assumes yes. [UNCONFIRMED] Tests choose; the default follows the docs.
    classic_bots_switch: bool = False
    event_queues: dict[int, EventQueue] = field(default_factory=dict)  # bot id -> its queue
    _ids: Callable[[], int] = field(default_factory=lambda: count(5000).__next__)

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance_clock(self, seconds: float) -> None:
        self.clock_offset += seconds

    def new_id(self) -> int:
        return self._ids()

    def speaks_v2(self, bot: Bot) -> bool:
        """Whether `bot` gets ONIMBOTV2* events (else the classic v1 events at its handlers)."""
        return bool(bot.event_mode) and (bot.registered_v2 or self.classic_bots_switch)

    def queue_of(self, bot_id: int) -> EventQueue:
        return self.event_queues.setdefault(bot_id, EventQueue())

    def user(self, user_id: int) -> User:
        if user_id not in self.users:
            raise RestError("USER_NOT_FOUND", "User not found")
        return self.users[user_id]

    def private_chat(self, first: int, second: int) -> Chat:
        """The private dialog of two users (bots are users too), created on first use."""
        for chat in self.chats.values():
            if chat.type == "P" and chat.members == {first, second}:
                return chat
        chat = Chat(id=self.new_id(), title="", type="P", members={first, second})
        self.chats[chat.id] = chat
        return chat

    def session_of_chat(self, chat_id: int) -> Session | None:
        """The newest session of an open-line chat, as history.get picks it (ID DESC)."""
        found = [s for s in self.sessions.values() if s.chat_id == chat_id]
        return max(found, key=lambda s: s.id) if found else None

    def can_vote_as_head(self, user_id: int, line_id: int) -> bool:
        """Config::canVoteAsHead: the tariff feature and the line's vote-as-head right."""
        line = self.lines.get(line_id)
        return self.can_use_vote_head and line is not None and user_id in line.heads

    def can_see_session(self, user_id: int, session: Session) -> bool:
        line = self.lines.get(session.line_id)
        user = self.users.get(user_id)
        if user is None or line is None:
            return False
        staff = line.heads | line.supervisors | line.operators | {session.operator_id}
        return user.is_admin or user_id in staff

    def take_fault(self, method: str, *, inside_batch: bool = False) -> Fault | None:
        for fault in self.faults:
            if fault.inside_batch != inside_batch:
                continue
            if fault.method == method or (fault.method == "*" and not inside_batch):
                return spend(self.faults, fault)
        return None

    def post(self, chat_id: int, author_id: int, text: str, **extra: Any) -> Message:
        message = Message(
            id=self.new_id(), chat_id=chat_id, author_id=author_id, text=text, posted_at=self.now()
        )
        for key, value in extra.items():
            setattr(message, key, value)
        self.messages[message.id] = message
        return message
