"""`python -m bot try` (what `make run` runs): the sandbox when nothing is configured, the real
portal when one is, and never a sandbox from `serve`."""

from __future__ import annotations

import asyncio
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
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "SANDBOX_PORT" in result.stderr
    assert "Traceback" not in result.stderr
