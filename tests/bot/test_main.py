"""`python -m bot` as an operator runs it: a real process with an environment we hand it."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from bot.__main__ import build_parser, registered_text, secret_literals, settings_help
from bot.config import Settings, env_name
from bot.sandbox.app import EVENTS
from bot.sandbox.portal import Fault, Portal
from tests.bot.bitrix.test_registration import _run_cli as run_cli
from tests.harness import (
    eventually,
    free_port,
    job_rows,
    process_env,
    webhook_url,
    write_locked,
)


def run_bot(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={"PYTHONIOENCODING": "utf-8", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_help_explains_subcommands_and_every_setting(tmp_path: Path) -> None:
    result = run_bot(["--help"], {}, tmp_path)
    assert result.returncode == 0
    assert "serve" in result.stdout
    for name in Settings.model_fields:
        assert name.upper() in result.stdout


@pytest.mark.parametrize(
    ("setting", "says", "never_says"),
    [
        # Both event modes need the webhook and the supervisors, not webhook mode alone.
        ("B24_WEBHOOK_URL", "imbot, imopenlines, im", "(webhook mode)"),
        ("B24_SUPERVISOR_IDS", "allowed to rate, comma", "in webhook mode"),
        # The idle poll interval is 1 / (B24_RATE_LIMIT * B24_POLL_BUDGET); the target only
        # warns at start when that interval cannot meet it.
        ("B24_ANSWER_TARGET", "the budget wins", "sets the idle poll interval"),
        # A default the description names is not contradicted by "[default: not set]".
        ("BOT_PUBLIC_URL", "webhook mode", "[default: not set]"),
        ("B24_BOT_TOKEN", "the CLIENT_ID", "[default: not set]"),
    ],
)
def test_help_says_what_each_setting_does_in_fetch_mode(
    tmp_path: Path, setting: str, says: str, never_says: str
) -> None:
    lines = run_bot(["--help"], {}, tmp_path).stdout.splitlines()
    entry = next(line for line in lines if line.split()[:1] == [setting])  # one line each
    assert says in entry
    assert never_says not in entry


# Every setting's default as `--help` shows it; `as_typed`: writing the shown value as the
# setting gives exactly the default (the others are words: derived, not set, none).
SHOWN_DEFAULTS = [
    ("BOT_HOST", "0.0.0.0", True),
    ("BOT_PORT", "8080", True),
    ("BOT_PUBLIC_URL", "http://127.0.0.1:<BOT_PORT>", False),
    ("BOT_DATABASE_URL", "sqlite:///data/bot.sqlite3", True),
    ("BOT_JOB_LEASE", "60", True),
    ("BOT_LOG_LEVEL", "info", True),
    ("BOT_LOG_FORMAT", "console on a terminal, json otherwise", False),
    ("BOT_SHUTDOWN_TIMEOUT", "8", True),
    ("B24_WEBHOOK_URL", "not set", False),
    ("B24_CLIENT_ID", "derived from the webhook and the bot code, stable", False),
    ("B24_SUPERVISOR_IDS", "none: nobody may rate", False),
    ("B24_RATE_LIMIT", "2", True),
    ("B24_RATE_BURST", "50", True),
    ("B24_EVENT_MODE", "fetch", True),
    ("B24_BOT_TOKEN", "the CLIENT_ID, stable", False),
    ("B24_POLL_BUDGET", "0.25", True),
    ("B24_ANSWER_TARGET", "3", True),
    ("B24_BOT_CODE", "rating_bot", True),
    ("B24_BOT_NAME", "Оценка диалогов", True),
    ("B24_APP_CLIENT_ID", "not set", False),
    ("B24_APP_CLIENT_SECRET", "not set", False),
    ("B24_OAUTH_SERVER", "https://oauth.bitrix.info,https://oauth.bitrix24.tech", True),
    ("BOT_SECRET_KEY", "not set", False),
    ("BOT_SECRET_KEY_FILE", "not set", False),
    ("TELEGRAM_BOT_TOKEN", "not set", False),
    ("TELEGRAM_MODE", "polling", True),
    ("TELEGRAM_API_URL", "https://api.telegram.org", True),
    ("TELEGRAM_WEBHOOK_SECRET", "not set", False),
    ("TELEGRAM_ALLOWED_CHAT_IDS", "none", False),
    ("TELEGRAM_USER_MAP", "none", False),
    ("TELEGRAM_FEED_CHAT_ID", "not set", False),
]


def test_the_table_of_shown_defaults_names_every_setting() -> None:
    assert [row[0] for row in SHOWN_DEFAULTS] == [env_name(n) for n in Settings.model_fields]


@pytest.mark.parametrize(("setting", "shown", "as_typed"), SHOWN_DEFAULTS)
def test_help_shows_every_setting_s_default_once_in_one_form(
    setting: str, shown: str, as_typed: bool
) -> None:
    line = next(line for line in settings_help().splitlines() if line.split()[:1] == [setting])
    assert line.endswith(f" [default: {shown}]")
    assert line.count("default") == 1  # no second, older "(default …)" in the description
    if as_typed:
        given = Settings.from_sources({setting: shown}, env_file=None)
        assert given == Settings.from_sources({}, env_file=None)


def help_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What `python -m bot <args> --help` prints."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([*args, "--help"])
    return capsys.readouterr().out


_OPTION = re.compile(r"(--[a-z][a-z-]*)(?=[ ,])(.*?)(?=\s--[a-z][a-z-]*[ ,]|\Z)", re.DOTALL)
_DEFAULT = re.compile(r"\[default: ([^\]]*)\]")


def shown_defaults(help_text: str) -> dict[str, str | None]:
    """Each option of an argparse help (but --help) -> the `[default: …]` its text shows."""
    options = " ".join(help_text.split("options:", 1)[1].split())
    found = {}
    for option, text in _OPTION.findall(options):
        default = _DEFAULT.search(text)
        found[option] = default.group(1) if default else None
    del found["--help"]
    return found


@pytest.mark.parametrize(
    ("subcommand", "defaults"),
    [
        ([], {}),
        (["serve"], {}),
        (["register"], {}),
        (["unregister"], {}),
        (
            ["audit"],
            {
                "--since": "all entries",
                "--csv": "a table on stdout",
                "--excel": "off: UTF-8 without a BOM, ','",
            },
        ),
    ],
)
def test_every_option_of_every_subcommand_shows_its_default(
    subcommand: list[str], defaults: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of(subcommand, capsys)
    assert shown_defaults(text) == defaults
    assert "python -m bot --help" in text or not subcommand  # where the settings are


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BOT_PORT": "http"}, "BOT_PORT = 'http'"),
        ({"B24_WEBHOOK_URL": "http://portal.example/rest/1/k3yc0de5ecret77/"}, "B24_WEBHOOK_URL"),
        ({"B24_SUPERVISOR_IDS": "all"}, "B24_SUPERVISOR_IDS"),
        ({"B24_BOT_TOKEN": "k3yc0de5ecret77/"}, "B24_BOT_TOKEN"),
        ({"B24_EVENT_MODE": "pull"}, "B24_EVENT_MODE = 'pull'"),
    ],
)
def test_an_invalid_setting_exits_2_with_one_clear_screen(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    result = run_bot([], env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("Configuration error:")
    assert named in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "k3yc0de5ecret77" not in result.stderr + result.stdout


def test_the_help_command_a_settings_error_names_works_as_written_from_there(
    tmp_path: Path,
) -> None:
    """After `make run`, the command to run is .venv/bin/python's (a bare `python` there
    lacks the dependencies): the screen names the interpreter that printed it."""
    result = run_bot([], {"BOT_PORT": "eighty"}, tmp_path)
    assert result.returncode == 2
    shown = re.search(r"Run `(.+) --help` for every setting", result.stderr)
    assert shown is not None, result.stderr
    assert shown.group(1) == f"{sys.executable} -m bot"
    helped = subprocess.run(
        [*shlex.split(shown.group(1)), "--help"],
        cwd=tmp_path,
        env={"PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert helped.returncode == 0
    assert "BOT_PORT" in helped.stdout


def test_a_taken_port_stops_serve_with_one_sentence_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_bot(["serve"], {"BOT_HOST": "127.0.0.1", "BOT_PORT": str(port)}, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"The service cannot listen on 127.0.0.1:{port} (address already in use): stop what "
        "uses that port, or choose another with BOT_PORT (in the environment or ./.env; "
        "`BOT_PORT=8081 make run`)."
    )
    events = [json.loads(line)["event"] for line in result.stdout.splitlines()]
    assert events[-1] == "service.stopped", "what the start began is stopped"


def test_a_dot_env_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BOT_LOG_LEVEL=shouting\n")
    result = run_bot([], {}, tmp_path)
    assert result.returncode == 2
    assert "BOT_LOG_LEVEL = 'shouting'" in result.stderr


def test_serves_healthz_logs_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {"PYTHONIOENCODING": "utf-8", "BOT_HOST": "127.0.0.1", "BOT_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = _get_when_up(f"http://127.0.0.1:{port}/healthz", deadline=time.monotonic() + 20)
        assert json.loads(body) == {"status": "ok"}
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    events = [json.loads(line)["event"] for line in stdout.splitlines()]
    assert "service.started" in events
    assert "http.request" in events
    assert events[-1] == "service.stopped"


def _get_when_up(url: str, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                body: str = response.read().decode()
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def start_bot(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_sigterm_stops_within_the_bound_and_the_cut_job_runs_after_a_restart(
    sandbox: TestServer, portal: Portal, tmp_path: Path
) -> None:
    env = process_env(sandbox, tmp_path, BOT_LOG_FORMAT="json", BOT_SHUTDOWN_TIMEOUT="2")
    first = await start_bot(env, tmp_path)
    await eventually(lambda: portal.bots and len(portal.commands) == 2, within=20)
    portal.faults.append(Fault(method="batch", hang=True))  # the vote's request never ends
    [delivery] = await sandbox.app[EVENTS].send_message(27, next(iter(portal.bots)), "/rate 494 5")
    assert delivery.status == 200
    await eventually(lambda: not portal.faults, within=10)  # the job is waiting on the portal
    stopping = time.monotonic()
    first.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.wait_for(first.communicate(), 30)
    # The portal would hang for ten minutes: an exit now means the call was cut at the bound.
    assert time.monotonic() - stopping < 20
    assert first.returncode == 0, stderr
    [stopped] = [
        e for e in map(json.loads, stdout.splitlines()) if e["event"] == "service.stopped"
    ]
    assert stopped["jobs_left"] == 1
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
        assert db.execute("SELECT state FROM jobs").fetchall() == [("queued",)]
    second = await start_bot(env, tmp_path)
    try:
        await eventually(lambda: portal.sessions[494].vote_head == 5, within=20)
        await eventually(
            lambda: any(m.text.startswith("✅") for m in portal.messages.values()), within=10
        )
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 0


async def test_sigterm_keeps_its_bound_while_another_process_holds_the_database(
    sandbox: TestServer, portal: Portal, tmp_path: Path
) -> None:
    """The attack: SIGTERM while votes hang in the portal and another process (a backup, a
    second instance) holds the database's write lock. Putting the cut jobs back must not wait
    out a busy timeout per job: the stop keeps its bound, and nothing is lost."""
    env = process_env(sandbox, tmp_path, BOT_LOG_FORMAT="json", BOT_SHUTDOWN_TIMEOUT="4")
    process = await start_bot(env, tmp_path)
    await eventually(lambda: portal.bots and len(portal.commands) == 2, within=20)
    portal.faults.append(Fault(method="batch", hang=True, times=-1))
    bot_id = next(iter(portal.bots))
    for session_id in (494, 495, 496):
        [delivery] = await sandbox.app[EVENTS].send_message(27, bot_id, f"/rate {session_id} 5")
        assert delivery.status == 200
    database = env["BOT_DATABASE_URL"]
    await eventually(lambda: [r[1] for r in job_rows(database)] == ["claimed"] * 3, within=10)
    with write_locked(database):
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr
    events = [e["event"] for e in map(json.loads, stdout.splitlines())]
    assert "service.stop_overran" not in events
    assert "service.stopped" in events
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
        states = db.execute("SELECT state FROM jobs").fetchall()
    assert len(states) == 3
    assert ("done",) not in states  # cut, still to do: queued, or claimed until the lease ends


CANARY_TOKEN = "t0kenL3akCanary_cli_0123"


async def test_cli_register_in_fetch_mode_needs_no_public_url_and_shows_no_secret(
    sandbox: TestServer, portal: Portal, tmp_path: Path
) -> None:
    env = {
        "PYTHONIOENCODING": "utf-8",
        "B24_WEBHOOK_URL": webhook_url(sandbox),
        "B24_BOT_TOKEN": CANARY_TOKEN,
        "BOT_LOG_LEVEL": "debug",
    }
    code, out, err = await run_cli(["register"], env, tmp_path)
    [bot] = portal.bots.values()
    assert (code, bot.event_mode, bot.registered_v2) == (0, "fetch", True)
    assert out.splitlines()[-1] == (
        f"Registered bot {bot.id} with commands /rate, /help; "
        "events are pulled (fetch mode); no public URL needed."
    )
    code, out, _ = await run_cli(["unregister"], env, tmp_path)
    assert (code, out.splitlines()[-1]) == (0, f"Removed bot {bot.id}.")
    assert portal.bots == {}
    assert CANARY_TOKEN not in out + err


async def test_cli_register_in_fetch_mode_on_a_portal_without_chatbots_2(
    sandbox: TestServer, portal: Portal, tmp_path: Path
) -> None:
    portal.chatbots_v2 = False
    env = {"B24_WEBHOOK_URL": webhook_url(sandbox), "BOT_LOG_LEVEL": "critical"}
    code, out, err = await run_cli(["register"], env, tmp_path)
    assert code == 1
    assert "Set B24_EVENT_MODE=webhook and BOT_PUBLIC_URL" in err
    assert "Traceback" not in out + err
    assert portal.bots == {}


def test_registering_in_webhook_mode_with_a_loopback_public_url_warns() -> None:
    env = {"B24_EVENT_MODE": "webhook", "B24_WEBHOOK_URL": "https://corp.bitrix24.ru/rest/1/abc/"}
    settings = Settings.from_sources(env, env_file=None)
    text = registered_text(settings, 5000, ["rate", "help"])
    assert "Warning: Bitrix24 cannot reach a loopback address" in text
    assert "abc" not in text
    fetching = Settings.from_sources(env | {"B24_EVENT_MODE": "fetch"}, env_file=None)
    assert "Warning" not in registered_text(fetching, 5000, ["rate", "help"])


APP_SECRET = "app-secret-of-fifty-characters-or-so"
TOKENS_KEY = "the-key-for-stored-tokens-0123456789"


def test_the_application_s_secrets_are_masked_in_the_logs_as_literals() -> None:
    settings = Settings.from_sources(
        {
            "B24_WEBHOOK_URL": "https://p.bitrix24.ru/rest/1/k3yc0de5ecret77/",
            "B24_APP_CLIENT_ID": "local.57df90751da540.63746010",
            "B24_APP_CLIENT_SECRET": APP_SECRET,
            "BOT_SECRET_KEY": TOKENS_KEY,
        },
        env_file=None,
    )
    literals = secret_literals(settings)
    assert {APP_SECRET, TOKENS_KEY} <= set(literals)
