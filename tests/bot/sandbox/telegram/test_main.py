"""`python -m bot.sandbox` serves the fake Telegram too and prints the settings for it."""

from __future__ import annotations

from pathlib import Path

from tests.harness import post_until_answered, sandbox_process


def test_prints_the_telegram_settings_and_serves_the_fake(tmp_path: Path) -> None:
    with sandbox_process(tmp_path) as (port, process):
        assert process.stdout is not None
        printed = dict(process.stdout.readline().strip().split("=", 1) for _ in range(4))
        assert printed["TELEGRAM_API_URL"] == f"http://127.0.0.1:{port}/telegram"
        url = f"{printed['TELEGRAM_API_URL']}/bot{printed['TELEGRAM_BOT_TOKEN']}/getMe"
        assert post_until_answered(url)["username"] == "SandboxRatingBot"
    assert process.returncode == 0
