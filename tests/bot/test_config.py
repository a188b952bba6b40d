"""Settings: the contract names, defaults, checks, and an error screen without secrets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from bot.config import Settings, UserAllowList, describe_settings_error

WEBHOOK = "https://portal.bitrix24.ru/rest/1/k3yc0de5ecret77/"


def load(env: dict[str, str], env_file: Path | None = None) -> Settings:
    return Settings.from_sources(env, env_file=env_file)


def invalid(env: dict[str, str]) -> str:
    with pytest.raises(ValidationError) as caught:
        load(env)
    return describe_settings_error(caught.value)


def plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_defaults_match_the_contract() -> None:
    settings = load({})
    assert settings.bot_host == "0.0.0.0"
    assert settings.bot_port == 8080
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.bot_database_url == "sqlite:///data/bot.sqlite3"
    assert settings.bot_log_level == "info"
    assert settings.bot_log_format is None
    assert settings.bot_shutdown_timeout == 8
    assert settings.b24_webhook_url is None
    assert settings.b24_client_id is None
    assert settings.b24_supervisor_ids == UserAllowList()
    assert (settings.b24_rate_limit, settings.b24_rate_burst) == (2, 50)
    assert settings.b24_bot_code == "rating_bot"
    assert settings.b24_bot_name == "Оценка диалогов"
    assert settings.telegram_bot_token is None
    assert settings.telegram_mode == "polling"
    assert settings.telegram_api_url == "https://api.telegram.org"
    assert settings.telegram_allowed_chat_ids == frozenset()
    assert settings.telegram_user_map == {}


@pytest.mark.parametrize(
    ("name", "raw", "field", "expected"),
    [
        ("BOT_HOST", "127.0.0.1", "bot_host", "127.0.0.1"),
        ("BOT_PORT", "9000", "bot_port", 9000),
        (
            "BOT_PUBLIC_URL",
            "https://bot.example.com/",
            "bot_public_url",
            "https://bot.example.com",
        ),
        (
            "BOT_DATABASE_URL",
            "sqlite:////var/lib/bot.db",
            "bot_database_url",
            "sqlite:////var/lib/bot.db",
        ),
        ("BOT_LOG_LEVEL", "DEBUG", "bot_log_level", "debug"),
        ("BOT_LOG_FORMAT", "Console", "bot_log_format", "console"),
        ("BOT_SHUTDOWN_TIMEOUT", "2.5", "bot_shutdown_timeout", 2.5),
        ("B24_WEBHOOK_URL", WEBHOOK.rstrip("/"), "b24_webhook_url", WEBHOOK),
        ("B24_CLIENT_ID", "my_client", "b24_client_id", "my_client"),
        (
            "B24_SUPERVISOR_IDS",
            "1, 27,1269",
            "b24_supervisor_ids",
            UserAllowList(ids=frozenset({1, 27, 1269})),
        ),
        ("B24_SUPERVISOR_IDS", "*", "b24_supervisor_ids", UserAllowList(everyone=True)),
        ("B24_RATE_LIMIT", "5", "b24_rate_limit", 5.0),
        ("B24_RATE_BURST", "250", "b24_rate_burst", 250),
        ("B24_BOT_CODE", "quality_bot", "b24_bot_code", "quality_bot"),
        ("B24_BOT_NAME", "Контроль качества", "b24_bot_name", "Контроль качества"),
        ("TELEGRAM_BOT_TOKEN", "123456:ABC", "telegram_bot_token", "123456:ABC"),
        ("TELEGRAM_MODE", "webhook", "telegram_mode", "webhook"),
        ("TELEGRAM_API_URL", "http://127.0.0.1:8081", "telegram_api_url", "http://127.0.0.1:8081"),
        ("TELEGRAM_WEBHOOK_SECRET", "s3cr3t", "telegram_webhook_secret", "s3cr3t"),
        (
            "TELEGRAM_ALLOWED_CHAT_IDS",
            "-1001234567890, 42",
            "telegram_allowed_chat_ids",
            frozenset({-1001234567890, 42}),
        ),
        ("TELEGRAM_USER_MAP", "111:27, 222:1269", "telegram_user_map", {111: 27, 222: 1269}),
        ("TELEGRAM_FEED_CHAT_ID", "-1001234567890", "telegram_feed_chat_id", -1001234567890),
    ],
)
def test_each_contract_name_sets_its_field(name: str, raw: str, field: str, expected: Any) -> None:
    env = {name: raw}
    if name == "TELEGRAM_MODE":
        env["TELEGRAM_WEBHOOK_SECRET"] = "s3cr3t"
    if name == "TELEGRAM_BOT_TOKEN":  # Telegram's votes are stored in Bitrix24
        env["B24_WEBHOOK_URL"] = "https://corp.bitrix24.ru/rest/1/abc/"
    assert plain(getattr(load(env), field)) == expected


def test_names_are_case_insensitive_and_empty_values_mean_default() -> None:
    settings = load({"bot_port": "9001", "BOT_LOG_LEVEL": ""})
    assert (settings.bot_port, settings.bot_log_level) == (9001, "info")


def test_public_url_defaults_to_the_listen_port() -> None:
    assert load({"BOT_PORT": "9100"}).public_url == "http://127.0.0.1:9100"


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("BOT_PORT=9200\nB24_BOT_CODE=from_file\n# a comment\nUNRELATED=1\n")
    settings = load({"BOT_PORT": "9300"}, env_file=env_file)
    assert (settings.bot_port, settings.b24_bot_code) == (9300, "from_file")


def test_a_missing_env_file_is_no_error(tmp_path: Path) -> None:
    assert load({}, env_file=tmp_path / "absent.env").bot_port == 8080


def test_client_id_is_derived_stable_and_secret_free() -> None:
    first = plain(load({"B24_WEBHOOK_URL": WEBHOOK}).b24_client_id)
    again = plain(load({"B24_WEBHOOK_URL": WEBHOOK.rstrip("/")}).b24_client_id)
    other_hook = plain(load({"B24_WEBHOOK_URL": WEBHOOK.replace("k3y", "n3w")}).b24_client_id)
    other_bot = plain(load({"B24_WEBHOOK_URL": WEBHOOK, "B24_BOT_CODE": "b2"}).b24_client_id)
    assert first == again
    assert len({first, other_hook, other_bot}) == 3
    assert first.startswith("rating_bot_")
    assert "k3yc0de5ecret77" not in first


def test_an_explicit_client_id_wins() -> None:
    settings = load({"B24_WEBHOOK_URL": WEBHOOK, "B24_CLIENT_ID": "fixed"})
    assert plain(settings.b24_client_id) == "fixed"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8090/rest/1/abc/",
        "http://localhost/rest/1/abc",
        "http://[::1]:80/rest/1/abc/",
    ],
)
def test_plain_http_webhook_is_accepted_for_loopback(url: str) -> None:
    assert plain(load({"B24_WEBHOOK_URL": url}).b24_webhook_url).endswith("/rest/1/abc/")


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("BOT_PORT", "eighty", "BOT_PORT = 'eighty'\n      Input should be a valid integer"),
        (
            "BOT_PORT",
            "70000",
            "BOT_PORT = '70000'\n      Input should be less than or equal to 65535",
        ),
        ("BOT_LOG_LEVEL", "loud", "BOT_LOG_LEVEL = 'loud'\n      Input should be 'debug'"),
        (
            "BOT_LOG_FORMAT",
            "xml",
            "BOT_LOG_FORMAT = 'xml'\n      Input should be 'json' or 'console'",
        ),
        (
            "BOT_SHUTDOWN_TIMEOUT",
            "0",
            "BOT_SHUTDOWN_TIMEOUT = '0'\n      Input should be greater than 0",
        ),
        (
            "BOT_PUBLIC_URL",
            "bot.example.com",
            "BOT_PUBLIC_URL = 'bot.example.com'\n      must be an http:// or https:// URL",
        ),
        (
            "BOT_DATABASE_URL",
            "postgres://x",
            "BOT_DATABASE_URL = 'postgres://x'\n      must be sqlite:///<path>",
        ),
        (
            "B24_SUPERVISOR_IDS",
            "1,bob",
            "B24_SUPERVISOR_IDS = '1,bob'\n      user ids must be positive whole numbers",
        ),
        ("B24_RATE_LIMIT", "0", "B24_RATE_LIMIT = '0'\n      Input should be greater than 0"),
        (
            "B24_RATE_BURST",
            "-5",
            "B24_RATE_BURST = '-5'\n      Input should be greater than or equal to 1",
        ),
        ("B24_BOT_CODE", "my bot", "B24_BOT_CODE = 'my bot'\n      must be 1-50 Latin letters"),
        (
            "TELEGRAM_MODE",
            "push",
            "TELEGRAM_MODE = 'push'\n      Input should be 'polling' or 'webhook'",
        ),
        (
            "TELEGRAM_ALLOWED_CHAT_IDS",
            "x",
            "TELEGRAM_ALLOWED_CHAT_IDS = 'x'\n      chat ids must be whole numbers",
        ),
        (
            "TELEGRAM_FEED_CHAT_ID",
            "@supervisors",
            "TELEGRAM_FEED_CHAT_ID = '@supervisors'\n      Input should be a valid integer",
        ),
        (
            "TELEGRAM_USER_MAP",
            "111=27",
            "TELEGRAM_USER_MAP = '111=27'\n      each link must be tg_user_id:b24_user_id",
        ),
    ],
)
def test_an_invalid_setting_is_named_with_what_is_wrong(name: str, raw: str, message: str) -> None:
    screen = invalid({name: raw})
    assert screen.startswith("Configuration error: 1 setting(s) invalid.")
    assert message in screen
    assert "python -m bot --help" in screen


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://portal.bitrix24.ru/rest/1/k3yc0de5ecret77/", "must use https://"),
        (
            "https://portal.bitrix24.ru/k3yc0de5ecret77/",
            "must end in /rest/<user id>/<webhook code>/",
        ),
        ("https://portal.bitrix24.ru/rest/1/k3yc0de5ecret77/?x=1", "must not carry a query"),
        ("https://user:k3yc0de5ecret77@portal.bitrix24.ru/rest/1/x/", "must not carry a query"),
        ("portal.bitrix24.ru/rest/1/k3yc0de5ecret77/", "must be an https:// URL"),
    ],
)
def test_a_bad_webhook_url_is_explained_without_echoing_it(url: str, message: str) -> None:
    screen = invalid({"B24_WEBHOOK_URL": url})
    assert f"B24_WEBHOOK_URL\n      {message}" in screen
    assert "k3yc0de5ecret77" not in screen


@pytest.mark.parametrize(
    "name",
    [
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_WEBHOOK_SECRET",
        "B24_CLIENT_ID",
        "B24_WEBHOOK_URL",
        "B24_BOT_TOKEN",
    ],
)
def test_secret_settings_are_never_echoed(name: str) -> None:
    """Even a value pydantic refuses for its type is not shown when the setting is secret."""
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({name.lower(): ["s3cr3t-value"]})
    screen = describe_settings_error(caught.value)
    assert name in screen
    assert "s3cr3t-value" not in screen


def test_several_errors_are_listed_together() -> None:
    screen = invalid({"BOT_PORT": "x", "B24_RATE_BURST": "0"})
    assert screen.startswith("Configuration error: 2 setting(s) invalid.")
    assert "BOT_PORT" in screen
    assert "B24_RATE_BURST" in screen


def test_telegram_webhook_mode_needs_its_secret() -> None:
    screen = invalid({"TELEGRAM_MODE": "webhook"})
    assert "TELEGRAM_WEBHOOK_SECRET is required when TELEGRAM_MODE=webhook" in screen


@pytest.mark.parametrize(
    ("allow_list", "user_id", "allowed"),
    [
        (UserAllowList(), 1, False),
        (UserAllowList(ids=frozenset({1, 27})), 27, True),
        (UserAllowList(ids=frozenset({1, 27})), 28, False),
        (UserAllowList(everyone=True), 12345, True),
    ],
)
def test_user_allow_list(allow_list: UserAllowList, user_id: int, allowed: bool) -> None:
    assert allow_list.allows(user_id) is allowed


ENV_EXAMPLE = Path(__file__).parents[2] / "deploy" / ".env.example"


def test_the_shipped_env_example_copied_unedited_stops_the_start() -> None:
    # It used to carry BOT_PUBLIC_URL=https://rating-bot.example.com: a copy registered that
    # as the bot's handler and every event was lost. Now its placeholders are refused.
    with pytest.raises(ValidationError) as caught:
        load({}, env_file=ENV_EXAMPLE)
    screen = describe_settings_error(caught.value)
    assert "B24_WEBHOOK_URL\n" in screen  # named, its value (a secret) not shown
    assert "B24_SUPERVISOR_IDS = '<user ids" in screen
    assert screen.count("still holds a <placeholder> from deploy/.env.example") == 2


def test_the_shipped_env_example_filled_in_is_fetch_mode_and_the_defaults() -> None:
    filled = {"B24_WEBHOOK_URL": WEBHOOK, "B24_SUPERVISOR_IDS": "27,1269"}
    settings = load(filled, env_file=ENV_EXAMPLE)
    assert settings.b24_event_mode == "fetch"
    assert not settings.public_url_is_local()
    assert settings.b24_supervisor_ids.ids == {27, 1269}
    # Every other line is a comment showing a default: the file adds nothing else.
    assert settings == load(filled)


def test_the_shipped_env_example_names_every_setting() -> None:
    names = re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert sorted(set(names)) == sorted(name.upper() for name in Settings.model_fields)
    assert len(names) == len(set(names))


TOKEN = "tok_Rating-bot.2026_0123456789"


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({}, "b24_event_mode", "fetch"),
        ({"B24_EVENT_MODE": "webhook"}, "b24_event_mode", "webhook"),
        ({"B24_EVENT_MODE": " FETCH "}, "b24_event_mode", "fetch"),
        ({"B24_EVENT_MODE": "Webhook"}, "b24_event_mode", "webhook"),
        ({}, "b24_poll_budget", 0.25),
        ({"B24_POLL_BUDGET": "1"}, "b24_poll_budget", 1.0),
        ({"B24_POLL_BUDGET": "0.05"}, "b24_poll_budget", 0.05),
        ({}, "b24_answer_target", 3.0),
        ({"B24_ANSWER_TARGET": "0.5"}, "b24_answer_target", 0.5),
        ({}, "b24_bot_token", None),
        ({"B24_WEBHOOK_URL": WEBHOOK, "B24_BOT_TOKEN": TOKEN}, "b24_bot_token", TOKEN),
        ({"B24_BOT_TOKEN": f" {TOKEN} "}, "b24_bot_token", TOKEN),
        ({"B24_BOT_TOKEN": "a" * 40}, "b24_bot_token", "a" * 40),
        ({"B24_BOT_TOKEN": "a" * 16}, "b24_bot_token", "a" * 16),
    ],
)
def test_fetch_mode_settings_take_good_values(
    env: dict[str, str], field: str, expected: Any
) -> None:
    assert plain(getattr(load(env), field)) == expected


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("B24_EVENT_MODE", "push", "B24_EVENT_MODE = 'push'\n      Input should be 'fetch' or"),
        ("B24_POLL_BUDGET", "0", "B24_POLL_BUDGET = '0'\n      Input should be greater than 0"),
        ("B24_POLL_BUDGET", "1.5", "B24_POLL_BUDGET = '1.5'\n      Input should be less than"),
        ("B24_POLL_BUDGET", "-1", "B24_POLL_BUDGET = '-1'\n      Input should be greater than"),
        ("B24_ANSWER_TARGET", "0", "B24_ANSWER_TARGET = '0'\n      Input should be greater than"),
        ("B24_ANSWER_TARGET", "x", "B24_ANSWER_TARGET = 'x'\n      Input should be a valid"),
    ],
)
def test_fetch_mode_settings_refuse_bad_values(name: str, raw: str, message: str) -> None:
    assert message in invalid({name: raw})


@pytest.mark.parametrize(
    "token",
    [
        "s3cr3t-but-too-long-" + "x" * 21,  # 41 characters
        "s3cr3t-short",  # 12
        "s3cr3t token with spaces",
        "s3cr3t$result[bot]-token",  # batch syntax
        "s3cr3t/../token-0123456",
        "s3cr3t-токен-0123456789",
    ],
)
def test_a_bad_bot_token_is_explained_without_echoing_it(token: str) -> None:
    screen = invalid({"B24_BOT_TOKEN": token})
    assert "B24_BOT_TOKEN\n      must be 16-40 characters" in screen
    assert "s3cr3t" not in screen


def test_the_bot_token_is_the_client_id_derived_or_set_and_stable() -> None:
    derived = load({"B24_WEBHOOK_URL": WEBHOOK})
    assert plain(derived.b24_bot_token) == plain(derived.b24_client_id)
    assert plain(load({"B24_WEBHOOK_URL": WEBHOOK}).b24_bot_token) == plain(derived.b24_bot_token)
    assert len(plain(derived.b24_bot_token)) <= 40
    set_id = load({"B24_WEBHOOK_URL": WEBHOOK, "B24_CLIENT_ID": "our_client_id_0123"})
    assert plain(set_id.b24_bot_token) == "our_client_id_0123"


@pytest.mark.parametrize(
    "env",
    [
        # a code over 15 characters derives a CLIENT_ID longer than 40
        {"B24_WEBHOOK_URL": WEBHOOK, "B24_BOT_CODE": "quality_rating_bot_2026"},
        # a CLIENT_ID that is no valid token
        {"B24_WEBHOOK_URL": WEBHOOK, "B24_CLIENT_ID": "short"},
        {"B24_WEBHOOK_URL": WEBHOOK, "B24_CLIENT_ID": "a client id with spaces"},
    ],
)
def test_a_client_id_that_is_no_valid_token_derives_a_stable_one(env: dict[str, str]) -> None:
    token = plain(load(env).b24_bot_token)
    assert token == plain(load(env).b24_bot_token)
    assert len(token) == 40
    assert token != plain(load(env).b24_client_id)
    assert "k3yc0de5ecret77" not in token


@pytest.mark.parametrize(
    ("mode", "portal", "public", "local"),
    [
        ("webhook", "https://corp.bitrix24.ru", None, True),  # the loopback default
        ("webhook", "https://corp.bitrix24.ru", "http://localhost:8080", True),
        ("webhook", "https://corp.bitrix24.ru", "https://bot.example.com", False),
        ("webhook", "http://127.0.0.1:8090", None, False),  # a sandbox on this machine
        ("fetch", "https://corp.bitrix24.ru", None, False),  # fetch mode needs no public URL
    ],
)
def test_a_public_url_bitrix24_cannot_reach_is_told(
    mode: str, portal: str, public: str | None, local: bool
) -> None:
    env = {"B24_EVENT_MODE": mode, "B24_WEBHOOK_URL": f"{portal}/rest/1/abc/"}
    if public is not None:
        env["BOT_PUBLIC_URL"] = public
    assert load(env).public_url_is_local() is local


def test_telegram_without_bitrix24_is_refused_before_the_start() -> None:
    screen = invalid({"TELEGRAM_BOT_TOKEN": "123456:ABC-secret-token"})
    assert "TELEGRAM_BOT_TOKEN needs B24_WEBHOOK_URL" in screen
    assert "ABC-secret-token" not in screen


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # As deploy/.env.example ships them, and as an administrator half-edits them.
        ("B24_WEBHOOK_URL", "https://<portal>.bitrix24.ru/rest/<user id>/<webhook code>/"),
        ("B24_WEBHOOK_URL", "https://corp.bitrix24.ru/rest/1/<webhook code>/"),
        ("B24_SUPERVISOR_IDS", "<user ids, e.g. 27,1269>"),
        ("B24_SUPERVISOR_IDS", "27,<another id>"),
        # Accepted as a URL with a host before: a handler nobody could reach, events lost.
        ("BOT_PUBLIC_URL", "https://<bot domain>"),
        ("TELEGRAM_API_URL", "https://<local bot api server>"),
    ],
)
def test_a_placeholder_left_in_a_setting_stops_the_start(name: str, value: str) -> None:
    screen = invalid({"B24_WEBHOOK_URL": WEBHOOK, name: value})
    assert name in screen
    assert "still holds a <placeholder> from deploy/.env.example" in screen


# ---- application mode (issue 12) -------------------------------------------------------

APP_SECRET = "Zk3Pq8Ws1Xv5Bn7Mr2Lt9Hy4Gd6Fc0Jx"
KEY = "a-key-only-this-service-knows-0123456789"
APP = {
    "B24_WEBHOOK_URL": WEBHOOK,
    "B24_APP_CLIENT_ID": "local.57df90751da540.63746010",
    "B24_APP_CLIENT_SECRET": APP_SECRET,
    "BOT_SECRET_KEY": KEY,
}


BITRIX_INFO = ("https://oauth.bitrix.info", "oauth.bitrix.info")


def test_application_mode_is_off_by_default_and_pins_bitrix24_s_servers() -> None:
    settings = load({"B24_WEBHOOK_URL": WEBHOOK})
    assert settings.app is None
    assert [s.base_url for s in settings.b24_oauth_server] == [
        "https://oauth.bitrix.info",
        "https://oauth.bitrix24.tech",
    ]


def test_application_mode_settings_are_one_frozen_object() -> None:
    settings = load(APP | {"BOT_PUBLIC_URL": "https://bot.example.com/"})
    app = settings.app
    assert app is not None
    assert app.client_id == "local.57df90751da540.63746010"
    assert plain(app.client_secret) == APP_SECRET
    assert plain(app.secret_key) == KEY
    assert app.secret_key_file is None
    assert app.callback_url == "https://bot.example.com/b24/oauth/callback"
    assert [s.authority for s in app.servers] == ["oauth.bitrix.info", "oauth.bitrix24.tech"]
    with pytest.raises(ValidationError):
        app.client_id = "local.other"  # type: ignore[misc]


def test_the_key_may_come_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "bot.key"
    key_file.write_text(KEY)
    env = {k: v for k, v in APP.items() if k != "BOT_SECRET_KEY"}
    app = load(env | {"BOT_SECRET_KEY_FILE": str(key_file)}).app
    assert app is not None
    assert (app.secret_key, app.secret_key_file) == (None, key_file)


@pytest.mark.parametrize(
    ("raw", "pinned"),
    [
        ("https://OAuth.Bitrix.Info/", [BITRIX_INFO]),
        ("https://oauth.example:8443", [("https://oauth.example:8443", "oauth.example:8443")]),
        ("http://127.0.0.1:8090", [("http://127.0.0.1:8090", "127.0.0.1:8090")]),
        (
            "http://localhost:8090, https://oauth.bitrix.info",
            [("http://localhost:8090", "localhost:8090"), BITRIX_INFO],
        ),
    ],
)
def test_pinned_servers_are_base_urls_with_the_authority_a_callback_names(
    raw: str, pinned: list[tuple[str, str]]
) -> None:
    servers = load({"B24_OAUTH_SERVER": raw}).b24_oauth_server
    assert [(s.base_url, s.authority) for s in servers] == pinned


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("http://oauth.bitrix.info", "must use https://"),
        ("oauth.bitrix.info", "https:// URL"),
        ("https://oauth.bitrix.info/oauth/token/", "no path"),
        ("https://oauth.bitrix.info/?x=1", "no path, query"),
        ("https://user@oauth.bitrix.info", "credentials"),
        ("https://oauth.bitrix.info:99999", "port"),
        (",", "at least one server"),
        ("<https://oauth.server>", "placeholder"),
    ],
)
def test_a_bad_pinned_server_is_refused_at_start(raw: str, message: str) -> None:
    screen = invalid({"B24_OAUTH_SERVER": raw})
    assert "B24_OAUTH_SERVER" in screen
    assert message in screen


@pytest.mark.parametrize(
    ("drop", "add", "message"),
    [
        ("B24_APP_CLIENT_SECRET", {}, "B24_APP_CLIENT_ID is set but B24_APP_CLIENT_SECRET is not"),
        ("B24_APP_CLIENT_ID", {}, "B24_APP_CLIENT_SECRET is set but B24_APP_CLIENT_ID is not"),
        ("BOT_SECRET_KEY", {}, "BOT_SECRET_KEY or BOT_SECRET_KEY_FILE is required"),
        ("", {"BOT_SECRET_KEY": "short-key"}, "BOT_SECRET_KEY has 9 characters; it needs"),
        ("B24_WEBHOOK_URL", {}, "needs B24_WEBHOOK_URL: the bot itself stays the webhook's"),
        ("", {"BOT_SECRET_KEY_FILE": "/nonexistent/bot.key"}, "not both"),
        ("BOT_SECRET_KEY", {"BOT_SECRET_KEY_FILE": "/nonexistent/k"}, "there is no file"),
        ("", {"B24_APP_CLIENT_ID": "local 1 2"}, "must be the Application ID (client_id)"),
    ],
)
def test_application_mode_set_up_halfway_is_refused_naming_settings_not_values(
    drop: str, add: dict[str, str], message: str
) -> None:
    env = {k: v for k, v in APP.items() if k != drop} | add
    screen = invalid(env)
    assert message in screen
    for secret in (APP_SECRET, KEY, "k3yc0de5ecret77"):
        assert secret not in screen
