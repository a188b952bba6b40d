"""`python -m bot.sandbox` as a newcomer runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.harness import free_port


def test_prints_the_webhook_url_and_serves_the_portal(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.sandbox", "--port", str(port), "--webhook-code", "newcomer1"],
        env={"PYTHONIOENCODING": "utf-8"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first == f"B24_WEBHOOK_URL=http://127.0.0.1:{port}/rest/1/newcomer1/"
        url = first.removeprefix("B24_WEBHOOK_URL=") + "profile"
        deadline = time.monotonic() + 20
        while True:
            try:
                request = urllib.request.Request(url, method="POST")  # noqa: S310 - loopback
                with urllib.request.urlopen(request, timeout=2) as answer:  # noqa: S310
                    assert json.load(answer)["result"]["ID"] == "1"
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert process.returncode == 0


def test_help_describes_the_options(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.sandbox", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    for option in ("--port", "--rate", "--burst", "--webhook-code", "--head-vote"):
        assert option in result.stdout
