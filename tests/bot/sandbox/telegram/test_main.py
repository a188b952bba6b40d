"""`python -m bot.sandbox` serves the fake Telegram too and prints the settings for it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.harness import free_port


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
        deadline = time.monotonic() + 20
        while True:
            try:
                request = urllib.request.Request(url, method="POST")  # noqa: S310 - loopback
                with urllib.request.urlopen(request, timeout=2) as answer:  # noqa: S310
                    assert json.load(answer)["result"]["username"] == "SandboxRatingBot"
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert process.returncode == 0
