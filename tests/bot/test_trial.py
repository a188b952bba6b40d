"""`python -m bot try` (what `make run` runs): the sandbox when nothing is configured, the real
portal when one is, and never a sandbox from `serve`."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.keyboard import buttons_of
from bot.sandbox.portal import Portal
from tests.harness import eventually, free_port, webhook_url
from tests.sandboxed import get_json, trial, until


def test_with_nothing_configured_it_serves_the_sandbox_where_a_rate_is_saved(
    tmp_path: Path,
) -> None:
    with trial(tmp_path) as running:
        page = running.page_url()
        assert page == f"http://127.0.0.1:{running.sandbox_port}/"
        banner = running.text()
        assert "SANDBOX" in banner
        assert "Nothing real is touched" in banner
        assert "B24_WEBHOOK_URL" in banner, "it says how to configure a real portal"
        assert f"http://127.0.0.1:{running.service_port}/readyz" in banner
        bot = until(lambda: running.sandbox("/_sandbox/state")["bot"], within=30)
        text = "/rate 494 5 Молодец"
        running.post("/_sandbox/events/message", {"author_id": 27, "to": bot["id"], "text": text})
        session = until(
            lambda: (s := running.sandbox("/_sandbox/sessions/494"))["vote_head"] == 5 and s,
            within=30,
        )
        assert session["comment_head"] == "Молодец"
        assert get_json(f"http://127.0.0.1:{running.service_port}/readyz")["ready"] is True
        assert "APPLICATION MODE" not in banner
        assert running.sandbox("/_sandbox/oauth")["app"] is None, "no local application"
        assert running.stop() == 0
    assert not list(tmp_path.glob("data")), "nothing is written where a real database would be"


# `try --app` (`make run APP=1`): who sends `/rate`, the session, and what comes of it once they
# allowed the bot. Both have no stored token at first; the portal alone decides (no list of ours).
APPLICATION_MODE = [
    (27, 495, 5, "✅ Сохранено. Сессия 495: ★★★★★ 5/5"),  # Светлана may rate on line 1
    (28, 495, 4, "У вас нет права оценивать диалоги этой линии"),  # Пётр may not: stays 4
]


@pytest.mark.parametrize(
    ("user_id", "session", "stored", "answer"), APPLICATION_MODE, ids=["may-rate", "may-not"]
)
def test_with_app_a_supervisor_allows_once_and_the_portal_decides_the_waiting_vote(
    tmp_path: Path, user_id: int, session: int, stored: int, answer: str
) -> None:
    with trial(tmp_path, None, "--app") as running:
        running.page_url()  # the banner is printed
        banner = running.text()
        assert "APPLICATION MODE" in banner
        assert "/rate 494 5 Молодец" in banner, "what to try"
        callback = f"http://127.0.0.1:{running.service_port}/b24/oauth/callback"
        assert running.sandbox("/_sandbox/oauth")["app"]["handler_url"] == callback
        bot = until(lambda: running.sandbox("/_sandbox/state")["bot"], within=30)
        text = f"/rate {session} 5"
        running.post(
            "/_sandbox/events/message", {"author_id": user_id, "to": bot["id"], "text": text}
        )
        link = until(lambda: link_in(running.sandbox("/_sandbox/messages")), within=30)
        assert link.startswith(f"http://127.0.0.1:{running.sandbox_port}/oauth/authorize/?")
        with urllib.request.urlopen(f"{link}&sandbox_user={user_id}", timeout=10) as page:  # noqa: S310 - loopback
            assert page.url.startswith(callback), "the consent sent the browser to the service"
            assert "Готово" in page.read().decode()
        said = until(lambda: said_to(running.sandbox("/_sandbox/messages"), answer), within=30)
        assert said["author_id"] == bot["id"]
        assert running.sandbox(f"/_sandbox/sessions/{session}")["vote_head"] == stored
        assert "BOT_SECRET_KEY" not in running.text()
        assert running.stop() == 0


def link_in(messages: list[dict[str, Any]]) -> str | None:
    """The newest link button's address among the portal's messages."""
    links = [b["LINK"] for m in messages for b in buttons_of(m["keyboard"]) if b.get("LINK")]
    return links[-1] if links else None


def said_to(messages: list[dict[str, Any]], text: str) -> dict[str, Any] | None:
    return next((m for m in messages if text in m["text"]), None)


def test_app_with_a_portal_configured_but_no_application_is_refused_in_words(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "try", "--app"],
        env={
            "PYTHONIOENCODING": "utf-8",
            "BOT_PORT": str(free_port()),
            "B24_WEBHOOK_URL": "http://127.0.0.1:9/rest/1/s3cr3tc0de/",
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--app (make run APP=1) is for the sandbox" in result.stderr
    assert "B24_APP_CLIENT_ID, B24_APP_CLIENT_SECRET" in result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr
    assert "SANDBOX" not in result.stdout


@pytest.mark.parametrize("where", ["environment", ".env"])
async def test_with_a_portal_configured_it_serves_that_portal_and_no_sandbox(
    sandbox: TestServer, portal: Portal, tmp_path: Path, where: str
) -> None:
    settings = {
        "B24_WEBHOOK_URL": webhook_url(sandbox),
        "B24_SUPERVISOR_IDS": "27",
        "BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
    }
    env = {"BOT_HOST": "127.0.0.1"}
    if where == ".env":
        lines = "".join(f"{name}={value}\n" for name, value in settings.items())
        (tmp_path / ".env").write_text(lines, encoding="utf-8")
    else:
        env |= settings
    with trial(tmp_path, env) as running:
        await eventually(lambda: portal.bots, within=30)  # it registered with that portal
        assert "SANDBOX" not in running.text()
        with pytest.raises(ConnectionRefusedError):  # nothing listens where the sandbox would
            socket.create_connection(("127.0.0.1", running.sandbox_port), timeout=1).close()
        assert await asyncio.to_thread(running.stop) == 0


def test_serve_with_nothing_configured_never_starts_a_sandbox(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        env={"PYTHONIOENCODING": "utf-8", "BOT_HOST": "127.0.0.1", "BOT_PORT": str(port)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        until(lambda: get_json(f"http://127.0.0.1:{port}/healthz"), within=30)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "SANDBOX" not in output
    assert "sandbox" not in output.lower()


def test_a_taken_sandbox_port_is_said_in_words(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bot", "try", "--sandbox-port", str(port)],
            env={"PYTHONIOENCODING": "utf-8", "BOT_PORT": str(free_port())},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} (address already in use)" in result.stderr
    assert "SANDBOX_PORT" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, "one sentence, no unclosed sessions"


def test_a_taken_service_port_is_said_in_words_and_no_banner_points_at_a_dead_page(
    tmp_path: Path,
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bot", "try", "--sandbox-port", str(free_port())],
            env={"PYTHONIOENCODING": "utf-8", "BOT_PORT": str(port), "TMPDIR": str(temp)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"The service cannot listen on 127.0.0.1:{port} (address already in use)" in (
        result.stderr
    )
    assert "BOT_PORT=8081 make run" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Unclosed" not in result.stderr
    assert "Open the chat page" not in result.stdout
    assert not list(temp.iterdir()), "the throw-away database is removed"


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_ends_the_sandbox_cleanly_and_leaves_no_temporary_files(
    tmp_path: Path, stop: signal.Signals
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    with trial(tmp_path, {"TMPDIR": str(temp)}) as running:
        running.page_url()
        until(lambda: get_json(f"http://127.0.0.1:{running.service_port}/readyz")["ready"], 30)
        assert list(temp.iterdir()), "the throw-away database lives in TMPDIR"
        running.process.send_signal(stop)
        assert running.process.wait(timeout=30) == 0
    assert "Traceback" not in running.text()
    assert not list(temp.iterdir())
    with pytest.raises(ConnectionRefusedError):  # the sandbox stopped with the service
        socket.create_connection(("127.0.0.1", running.sandbox_port), timeout=1).close()


# A machine set up for a real portal whose portal setting is missing, empty or misspelt: `try`
# must not quietly serve a sandbox there (every real event would be lost), and says why.
HALF_SET_UP = [
    (
        ".env",
        "B24_WEBHOOK_ULR=https://corp.bitrix24.ru/rest/1/s3cr3tc0de/\n",
        "B24_WEBHOOK_ULR (./.env) is not a setting: did you mean B24_WEBHOOK_URL?",
    ),
    (
        ".env",
        "B24_WEBHOOK_URL=\nB24_SUPERVISOR_IDS=27\n",
        "B24_WEBHOOK_URL is set (./.env; empty counts)",
    ),
    ("environment", "B24_WEBHOOK_URL=", "B24_WEBHOOK_URL is set (the environment; empty counts)"),
    (".env", "TELEGRAM_BOT_TOKN=123456:s3cr3tc0de\n", "did you mean TELEGRAM_BOT_TOKEN?"),
    ("environment", "TELEGRAM_ALLOWED_CHAT_IDS=-1001", "TELEGRAM_ALLOWED_CHAT_IDS is set"),
    (
        "environment",
        "BOT_DATABASE_URL=sqlite:////var/lib/rating-bot/data/bot.sqlite3",
        "BOT_DATABASE_URL is set",
    ),
]


@pytest.mark.parametrize(("where", "setting", "said"), HALF_SET_UP)
def test_a_set_up_for_a_real_portal_without_one_never_starts_the_sandbox(
    tmp_path: Path, where: str, setting: str, said: str
) -> None:
    env = {"PYTHONIOENCODING": "utf-8", "BOT_PORT": str(free_port())}
    if where == ".env":
        (tmp_path / ".env").write_text(setting, encoding="utf-8")
    else:
        name, value = setting.split("=", 1)
        env[name] = value
    sandbox_port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "bot", "try", "--sandbox-port", str(sandbox_port)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Not starting the sandbox" in result.stderr
    assert said in result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr
    assert "SANDBOX" not in result.stdout
