"""`python -m bot try` (what `make run` runs): the sandbox when nothing is configured, the real
portal when one is, and never a sandbox from `serve`."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

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
        assert running.stop() == 0
    assert not list(tmp_path.glob("data")), "nothing is written where a real database would be"


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
