"""`python -m bot.sandbox` serves the fake Telegram too and prints the settings for it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.harness import free_port, post_until_answered


def test_prints_the_telegram_settings_and_serves_the_fake(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.sandbox", "--port", str(port)],
        env={"PYTHONIOENCODING": "utf-8"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed = dict(process.stdout.readline().strip().split("=", 1) for _ in range(4))
        assert printed["TELEGRAM_API_URL"] == f"http://127.0.0.1:{port}/telegram"
        url = f"{printed['TELEGRAM_API_URL']}/bot{printed['TELEGRAM_BOT_TOKEN']}/getMe"
        assert post_until_answered(url)["username"] == "SandboxRatingBot"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert process.returncode == 0
