"""Every knob of the service, read from the environment and an optional `.env` file.

The names are an external contract (architecture doc, "External contract"): operators' configs
depend on them, so a field here is renamed only together with that table.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    SettingsConfigDict,
)

from bot.secretbox import load_secret_key

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["json", "console"]
TelegramMode = Literal["polling", "webhook"]
EventMode = Literal["fetch", "webhook"]

# Settings whose values are secrets or may hold one: never echoed in an error screen.
SECRET_SETTINGS = frozenset(
    {
        "b24_webhook_url",
        "b24_client_id",
        "b24_bot_token",
        "telegram_bot_token",
        "telegram_webhook_secret",
        "b24_app_client_secret",
        "bot_secret_key",
    }
)


def derived(default: str) -> dict[str, JsonValue]:
    """A Field's `json_schema_extra` for a default worked out from other settings at start
    (`Settings._derive_defaults`): `--help` shows these words, not the stored None."""
    return {"derived_default": default}


def shown_derived_default(field: FieldInfo) -> str | None:
    """The words `derived` gave a field's default, if any."""
    extra = field.json_schema_extra
    value = extra.get("derived_default") if isinstance(extra, dict) else None
    return value if isinstance(value, str) else None


PUBLIC_URL_HINT: Final = (
    "set BOT_PUBLIC_URL to the https URL by which Bitrix24 reaches this service, "
    "or use B24_EVENT_MODE=fetch, which needs none"
)
# deploy/.env.example marks what an administrator must fill in as `<...>`: a copy used as it is
# stops the start with this message instead of registering a handler nobody can reach.
PLACEHOLDER_HINT: Final = (
    "still holds a <placeholder> from deploy/.env.example: put in the real value "
    "(deploy/README.md says where to find it)"
)
_PLACEHOLDER = re.compile(r"<[^<>]*>")
_WEBHOOK_PATH = re.compile(r"^/rest/(?P<user>[0-9]+)/(?P<code>[A-Za-z0-9]+)/?$")
_BOT_CODE = re.compile(r"^[A-Za-z0-9_]{1,50}$")
# A local application's client_id is `local.<hex>.<digits>`; a Market application's is `app.…`
# (settings/oauth/index.md). Checked loosely: no character a URL or a log would mangle.
_APP_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{3,100}$")
# A Chatbots 2.0 botToken. The docs give only "at most 40 characters" (protocol notes §00
# item 9); the alphabet is ours [UNCONFIRMED which characters Bitrix24 accepts]: what the
# derived CLIENT_ID uses plus `-` and `.`, nothing a URL, a form or a log would mangle. At least
# 16, as any webhook of the portal with the imbot scope that knows the token acts as our bot.
_BOT_TOKEN = re.compile(r"^[A-Za-z0-9_.-]{16,40}$")
# Bitrix24's two regional OAuth servers (settings/oauth/index.md names oauth.bitrix.info; the
# issue adds the .tech one): the only hosts the client secret and codes are ever sent to.
DEFAULT_OAUTH_SERVERS: Final = ("https://oauth.bitrix.info", "https://oauth.bitrix24.tech")
# Where supervisors' browsers come back from the portal's consent page (issue 12).
OAUTH_CALLBACK_PATH: Final = "/b24/oauth/callback"


class UserAllowList(BaseModel):
    """A set of user ids, or everyone (`*`)."""

    model_config = ConfigDict(frozen=True)

    everyone: bool = False
    ids: frozenset[int] = frozenset()

    def allows(self, user_id: int) -> bool:
        return self.everyone or user_id in self.ids


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and any loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_list(raw: object) -> object:
    """Comma-separated env values become lists; anything else is left to pydantic."""
    if isinstance(raw, str):
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def _parse_int(item: str, what: str) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", item):
        raise ValueError(f"{what} must be positive whole numbers, found {item!r}")
    return int(item)


def refuse_placeholder(raw: str) -> None:
    if _PLACEHOLDER.search(raw):
        raise ValueError(PLACEHOLDER_HINT)


def normalise_webhook_url(raw: str) -> str:
    """Check an incoming-webhook URL and return it with exactly one trailing slash.

    Messages never contain the URL itself: its path holds the webhook code.
    """
    refuse_placeholder(raw)
    parts = urlsplit(raw.strip())
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValueError("must be an https:// URL such as https://portal.bitrix24.ru/rest/1/code/")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must use https:// (plain http is accepted only for loopback addresses)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not carry a query, a fragment or credentials")
    if not _WEBHOOK_PATH.match(parts.path):
        raise ValueError("must end in /rest/<user id>/<webhook code>/ as Bitrix24 shows it")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/"


class PinnedServer(BaseModel):
    """One OAuth server the service may send the client secret to: `base_url` without a path,
    and `authority`, the host (with its port when one is given) a callback's `server_domain`
    must name."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    authority: str

    @classmethod
    def parse(cls, raw: str) -> PinnedServer:
        """Check a B24_OAUTH_SERVER item; https only, plain http only for a loopback host (the
        rule the webhook URL follows)."""
        refuse_placeholder(raw)
        parts = urlsplit(raw.strip())
        host = (parts.hostname or "").lower()
        if parts.scheme not in {"https", "http"} or not host:
            raise ValueError(
                "each server must be an https:// URL such as https://oauth.bitrix.info"
            )
        if parts.scheme == "http" and not is_loopback_host(host):
            raise ValueError(
                "each server must use https:// (plain http only for loopback addresses)"
            )
        if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
            raise ValueError("each server is a base URL: no path, query, fragment or credentials")
        try:
            port = parts.port
        except ValueError as error:
            raise ValueError("each server's port must be a number from 1 to 65535") from error
        shown_host = f"[{host}]" if ":" in host else host
        authority = shown_host if port is None else f"{shown_host}:{port}"
        return cls(base_url=f"{parts.scheme}://{authority}", authority=authority)

    def is_named_by(self, server_domain: str) -> bool:
        """Whether a callback's `server_domain` (a host name, as Bitrix24 sends it) names this
        server: compared case-insensitively, with the port where the pin has one."""
        return server_domain.strip().lower() == self.authority


class AppSettings(BaseModel):
    """Application mode (issue 12): the local application supervisors authorise once, so votes
    are cast as them. `Settings.app` is None when the mode is off."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    client_secret: SecretStr
    servers: tuple[PinnedServer, ...]
    callback_url: str
    secret_key: SecretStr | None  # exactly one of these two is set
    secret_key_file: Path | None

    def key(self) -> bytes:
        """The key that seals supervisors' tokens, from whichever of the two is set (read and
        checked by bot/secretbox.py, which names the setting at fault, never the key)."""
        value = self.secret_key.get_secret_value() if self.secret_key else None
        return load_secret_key(value, self.secret_key_file)


class Settings(BaseSettings):
    """The service's configuration; see the README's settings table."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
    )

    bot_host: str = Field("0.0.0.0", description="listen address")  # noqa: S104
    bot_port: int = Field(8080, ge=1, le=65535, description="listen port")
    bot_public_url: str | None = Field(
        None,
        description="public base URL by which Bitrix24 (B24_EVENT_MODE=webhook) and Telegram "
        "(webhook mode) reach the service; fetch mode needs none",
        json_schema_extra=derived("http://127.0.0.1:<BOT_PORT>"),
    )
    bot_database_url: str = Field(
        "sqlite:///data/bot.sqlite3", description="storage, sqlite:///<path>"
    )
    bot_job_lease: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="seconds a command being run stays with its process without a heartbeat: "
        "after a crash (kill -9), another process takes it over once this has passed",
    )
    bot_log_level: LogLevel = Field("info", description="debug, info, warning, error, critical")
    bot_log_format: LogFormat | None = Field(
        None,
        description="json or console",
        json_schema_extra=derived("console on a terminal, json otherwise"),
    )
    bot_shutdown_timeout: float = Field(
        8.0,
        gt=0,
        le=3600,
        description="seconds a stop (SIGTERM) may take; jobs still running then stay queued "
        "(docker stop waits 10)",
    )

    b24_webhook_url: SecretStr | None = Field(
        None,
        description="incoming webhook https://<portal>/rest/<user>/<code>/ with the scopes "
        "imbot, imopenlines, im: enables Bitrix24",
    )
    b24_client_id: SecretStr | None = Field(
        None,
        description="CLIENT_ID of the webhook-registered bot",
        json_schema_extra=derived("derived from the webhook and the bot code, stable"),
    )
    b24_supervisor_ids: Annotated[UserAllowList, NoDecode] = Field(
        UserAllowList(),
        description="Bitrix24 user ids allowed to rate, comma-separated, or *",
    )
    b24_rate_limit: float = Field(
        2.0, gt=0, le=1000, description="the portal's leaky bucket: requests drained per second"
    )
    b24_rate_burst: int = Field(
        50, ge=1, le=10000, description="the portal's leaky bucket: capacity"
    )
    b24_event_mode: EventMode = Field(
        "fetch",
        description="fetch (Chatbots 2.0: the service pulls its events, no public URL needed) "
        "or webhook (classic: Bitrix24 posts events to BOT_PUBLIC_URL)",
    )
    b24_bot_token: SecretStr | None = Field(
        None,
        description="Chatbots 2.0 botToken, 16-40 of A-Z a-z 0-9 _ . -",
        json_schema_extra=derived("the CLIENT_ID, stable"),
    )
    b24_poll_budget: float = Field(
        0.25,
        gt=0,
        le=1,
        description="fetch mode: the share of B24_RATE_LIMIT an idle service may spend polling",
    )
    b24_answer_target: float = Field(
        3.0,
        gt=0,
        le=600,
        description="fetch mode: seconds within which a command should be answered (p95) on an "
        "idle portal; checked at start against the poll interval B24_POLL_BUDGET allows (the "
        "budget wins, with a warning)",
    )
    b24_bot_code: str = Field("rating_bot", description="the bot's code in Bitrix24")
    b24_bot_name: str = Field(
        "Оценка диалогов", min_length=1, max_length=100, description="the bot's display name"
    )

    b24_app_client_id: str | None = Field(
        None,
        description="application mode: the local application's client_id (Application ID), "
        "so supervisors link once and votes are cast as them; needs B24_APP_CLIENT_SECRET",
    )
    b24_app_client_secret: SecretStr | None = Field(
        None, description="application mode: the local application's client_secret"
    )
    b24_oauth_server: Annotated[tuple[PinnedServer, ...], NoDecode] = Field(
        tuple(PinnedServer.parse(url) for url in DEFAULT_OAUTH_SERVERS),
        description="application mode: the OAuth servers the client secret may go to, "
        "comma-separated base URLs",
        json_schema_extra=derived(",".join(DEFAULT_OAUTH_SERVERS)),
    )
    bot_secret_key: SecretStr | None = Field(
        None,
        description="application mode: the key that encrypts stored user tokens (or "
        "BOT_SECRET_KEY_FILE)",
    )
    bot_secret_key_file: Path | None = Field(
        None, description="application mode: a file holding that key (or BOT_SECRET_KEY)"
    )

    telegram_bot_token: SecretStr | None = Field(None, description="enables the Telegram side")
    telegram_mode: TelegramMode = Field("polling", description="polling or webhook")
    telegram_api_url: str = Field(
        "https://api.telegram.org", description="Bot API base (a local Bot API server)"
    )
    telegram_webhook_secret: SecretStr | None = Field(
        None, description="checked on every Telegram webhook update"
    )
    telegram_allowed_chat_ids: Annotated[frozenset[int], NoDecode] = Field(
        frozenset(), description="chats whose members may send commands, comma-separated"
    )
    telegram_user_map: Annotated[dict[int, int], NoDecode] = Field(
        default_factory=dict,
        description="static links tg_user_id:b24_user_id, comma-separated",
    )
    telegram_feed_chat_id: int | None = Field(
        None, description="a chat where every saved vote is posted as one line"
    )

    @classmethod
    def from_sources(
        cls, environ: Mapping[str, str], *, env_file: Path | None = Path(".env")
    ) -> Self:
        """Read settings from `environ` over `env_file`, and from nowhere else.

        `__main__` passes `os.environ`; tests pass a dict, so they never see the developer's
        environment. `model_validate` skips BaseSettings' own reading of `os.environ`.
        """
        values: dict[str, Any] = {}
        if env_file is not None and env_file.is_file():
            values.update(DotEnvSettingsSource(cls, env_file=env_file, env_ignore_empty=True)())
        values.update(_MappingEnvSource(cls, environ)())
        return cls.model_validate(values)

    @field_validator(
        "bot_log_level", "bot_log_format", "telegram_mode", "b24_event_mode", mode="before"
    )
    @classmethod
    def _lower(cls, raw: object) -> object:
        return raw.strip().lower() if isinstance(raw, str) else raw

    @field_validator("bot_public_url", "telegram_api_url")
    @classmethod
    def _check_base_url(cls, raw: str | None) -> str | None:
        if raw is None:
            return None
        refuse_placeholder(raw)
        parts = urlsplit(raw.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or a fragment")
        return raw.strip().rstrip("/")

    @field_validator("bot_database_url")
    @classmethod
    def _check_database_url(cls, raw: str) -> str:
        if not raw.startswith("sqlite:///") or raw == "sqlite:///":
            raise ValueError("must be sqlite:///<path> (the only storage engine so far)")
        return raw

    @field_validator("b24_webhook_url", mode="before")
    @classmethod
    def _check_webhook_url(cls, raw: object) -> object:
        if isinstance(raw, SecretStr):
            raw = raw.get_secret_value()
        return normalise_webhook_url(raw) if isinstance(raw, str) else raw

    @field_validator("b24_bot_code")
    @classmethod
    def _check_bot_code(cls, raw: str) -> str:
        if not _BOT_CODE.match(raw):
            raise ValueError("must be 1-50 Latin letters, digits or underscores")
        return raw

    @field_validator("b24_bot_token", mode="before")
    @classmethod
    def _check_bot_token(cls, raw: object) -> object:
        if isinstance(raw, SecretStr):
            raw = raw.get_secret_value()
        if isinstance(raw, str) and not _BOT_TOKEN.match(raw.strip()):
            # Never the value itself: it is a secret (SECRET_SETTINGS).
            raise ValueError("must be 16-40 characters, each a Latin letter, a digit, _, . or -")
        return raw.strip() if isinstance(raw, str) else raw

    @field_validator("b24_supervisor_ids", mode="before")
    @classmethod
    def _parse_supervisors(cls, raw: object) -> object:
        if not isinstance(raw, str):
            return raw
        refuse_placeholder(raw)
        items = _split_list(raw)
        assert isinstance(items, list)  # noqa: S101 - _split_list turns str into list
        if items == ["*"]:
            return UserAllowList(everyone=True)
        return UserAllowList(ids=frozenset(_parse_int(i, "user ids") for i in items))

    @field_validator("b24_oauth_server", mode="before")
    @classmethod
    def _parse_oauth_servers(cls, raw: object) -> object:
        items = _split_list(raw)
        if not isinstance(items, list):
            return items
        if not items:
            raise ValueError("must name at least one server")
        return tuple(PinnedServer.parse(item) for item in items)

    @field_validator("b24_app_client_id", mode="before")
    @classmethod
    def _check_app_client_id(cls, raw: object) -> object:
        if isinstance(raw, str):
            refuse_placeholder(raw)
            raw = raw.strip()
            if not _APP_CLIENT_ID.match(raw):
                raise ValueError(
                    "must be the Application ID (client_id) from the application's card, "
                    "such as local.57df90751da540.63746010"
                )
        return raw

    @field_validator("telegram_allowed_chat_ids", mode="before")
    @classmethod
    def _parse_chat_ids(cls, raw: object) -> object:
        items = _split_list(raw)
        if not isinstance(items, list):
            return items
        chat_ids = set()
        for item in items:
            if not re.fullmatch(r"-?[0-9]{1,18}", item):
                raise ValueError(f"chat ids must be whole numbers, found {item!r}")
            chat_ids.add(int(item))
        return frozenset(chat_ids)

    @field_validator("telegram_user_map", mode="before")
    @classmethod
    def _parse_user_map(cls, raw: object) -> object:
        items = _split_list(raw)
        if not isinstance(items, list):
            return items
        links: dict[int, int] = {}
        for item in items:
            tg_user, sep, b24_user = item.partition(":")
            if not sep:
                raise ValueError(f"each link must be tg_user_id:b24_user_id, found {item!r}")
            links[_parse_int(tg_user.strip(), "ids")] = _parse_int(b24_user.strip(), "ids")
        return links

    @model_validator(mode="after")
    def _derive_defaults(self) -> Self:
        # frozen=True: defaults derived from other settings are set once, here.
        if self.bot_public_url is None:
            object.__setattr__(self, "bot_public_url", f"http://127.0.0.1:{self.bot_port}")
        if self.b24_client_id is None and self.b24_webhook_url is not None:
            object.__setattr__(self, "b24_client_id", SecretStr(self._derived_client_id()))
        if self.b24_bot_token is None and self.b24_client_id is not None:
            object.__setattr__(self, "b24_bot_token", SecretStr(self._derived_bot_token()))
        if self.telegram_bot_token is not None and self.b24_webhook_url is None:
            raise ValueError(
                "TELEGRAM_BOT_TOKEN needs B24_WEBHOOK_URL: the votes are stored in Bitrix24"
            )
        if self.telegram_mode == "webhook" and self.telegram_webhook_secret is None:
            raise ValueError("TELEGRAM_WEBHOOK_SECRET is required when TELEGRAM_MODE=webhook")
        self._check_app_mode()
        return self

    def _check_app_mode(self) -> None:
        """Application mode needs its pair, a key for the stored tokens, and the webhook: the
        bot itself stays the webhook's. Messages name settings, never their values."""
        if (self.b24_app_client_id is None) != (self.b24_app_client_secret is None):
            given, missing = ("B24_APP_CLIENT_ID", "B24_APP_CLIENT_SECRET")
            if self.b24_app_client_id is None:
                given, missing = missing, given
            raise ValueError(f"{given} is set but {missing} is not: application mode needs both")
        app = self.app
        if app is None:
            return
        app.key()  # exactly one of the two settings, long enough, its file readable
        if self.b24_webhook_url is None:
            raise ValueError(
                "B24_APP_CLIENT_ID needs B24_WEBHOOK_URL: the bot itself stays the webhook's; "
                "the application only lets supervisors vote as themselves"
            )

    @property
    def may_rate(self) -> UserAllowList:
        """Who may send `/rate`: B24_SUPERVISOR_IDS; in application mode, where Bitrix24 checks
        each supervisor's own right, every staff member unless the list restricts it."""
        listed = self.b24_supervisor_ids
        if self.app is not None and not listed.everyone and not listed.ids:
            return UserAllowList(everyone=True)
        return listed

    @property
    def app(self) -> AppSettings | None:
        """Application mode's settings, checked at start; None when the mode is off."""
        if self.b24_app_client_id is None or self.b24_app_client_secret is None:
            return None
        return AppSettings(
            client_id=self.b24_app_client_id,
            client_secret=self.b24_app_client_secret,
            servers=self.b24_oauth_server,
            callback_url=self.public_url + OAUTH_CALLBACK_PATH,
            secret_key=self.bot_secret_key,
            secret_key_file=self.bot_secret_key_file,
        )

    def _derived_client_id(self) -> str:
        """A CLIENT_ID that stays the same while the webhook and the bot code do.

        Bitrix24 binds a webhook-registered bot to its CLIENT_ID (protocol notes §6.8), so a
        new value on every start would orphan the bot; a hash keeps the webhook code out of it.
        """
        assert self.b24_webhook_url is not None  # noqa: S101 - checked by the caller
        seed = f"{self.b24_webhook_url.get_secret_value()}|{self.b24_bot_code}"
        digest = hashlib.sha256(b"openline-rating-bot client id\0" + seed.encode()).hexdigest()
        return f"{self.b24_bot_code}_{digest[:24]}"

    def _derived_bot_token(self) -> str:
        """The botToken: the CLIENT_ID itself where it is a valid token, so a bot of ours
        registered the classic way is the same application's bot in Chatbots 2.0 (`custom`
        + token, protocol notes §00 item 9); else a stable hash of it (a B24_BOT_CODE over
        15 characters makes the derived CLIENT_ID longer than 40).
        """
        assert self.b24_client_id is not None  # noqa: S101 - checked by the caller
        client_id = self.b24_client_id.get_secret_value()
        if _BOT_TOKEN.match(client_id):
            return client_id
        seed = b"openline-rating-bot bot token\0" + client_id.encode()
        return hashlib.sha256(seed).hexdigest()[:40]

    def b24_handler_path(self) -> str:
        """The path Bitrix24 posts bot events to: `/b24/events/<secret>`.

        The secret is derived from the webhook URL, so it is unguessable, and stable across
        restarts, so the handler URL registered in Bitrix24 stays valid.
        """
        assert self.b24_webhook_url is not None  # noqa: S101 - webhook mode only
        seed = self.b24_webhook_url.get_secret_value().encode()
        secret = hashlib.sha256(b"openline-rating-bot handler path\0" + seed).hexdigest()[:32]
        return f"/b24/events/{secret}"

    def public_url_is_local(self) -> bool:
        """Webhook mode with BOT_PUBLIC_URL on loopback while the portal is not: Bitrix24
        could never post an event to it."""
        if self.b24_webhook_url is None or self.b24_event_mode != "webhook":
            return False
        portal = urlsplit(self.b24_webhook_url.get_secret_value()).hostname or ""
        public = urlsplit(self.public_url).hostname or ""
        return is_loopback_host(public) and not is_loopback_host(portal)

    @property
    def public_url(self) -> str:
        """BOT_PUBLIC_URL, never None after validation."""
        assert self.bot_public_url is not None  # noqa: S101 - set by _derive_defaults
        return self.bot_public_url


class _MappingEnvSource(EnvSettingsSource):
    """The environment source, reading a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # An empty variable means "not set", as BOT_LOG_LEVEL= in a compose file usually does.
        return {name.lower(): value for name, value in self._environ.items() if value != ""}


def env_name(field: str) -> str:
    """The environment variable that sets a field: `bot_port` -> `BOT_PORT`."""
    return field.upper()


def describe_settings_error(error: ValidationError, program: str = "python -m bot") -> str:
    """One screen for an operator: which variable is wrong and how, secrets never echoed;
    `program` is how to run the command line again from where they are."""
    lines = [f"Configuration error: {error.error_count()} setting(s) invalid.", ""]
    for item in error.errors(include_url=False):
        loc = item["loc"]
        field = str(loc[0]) if loc else ""
        message = item["msg"].removeprefix("Value error, ")
        if not field:
            lines.append(f"  {message}")
            continue
        shown = ""
        if field not in SECRET_SETTINGS and isinstance(item.get("input"), str | int | float):
            shown = f" = {item['input']!r}"
        lines.append(f"  {env_name(field)}{shown}")
        lines.append(f"      {message}")
    lines += [
        "",
        "Settings come from the environment and from a .env file in the working directory.",
        f"Run `{program} --help` for every setting and its default.",
    ]
    return "\n".join(lines)
