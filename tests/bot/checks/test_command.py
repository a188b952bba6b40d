"""`python -m bot check` as an administrator runs it: a process, a table, an exit status, and
no secret anywhere in what it prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from bot.sandbox.portal import Portal
from bot.sandbox.telegram.seed import SUPERVISORS_GROUP, TOKEN
from tests.bot.bitrix.test_registration import _run_cli as run_cli
from tests.harness import (
    WEBHOOK_CODE,
    ServiceFactory,
    free_port,
    process_env,
    telegram_api_url,
    webhook_url,
)


def env_for(sandbox: TestServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    telegram = {
        "B24_EVENT_MODE": "fetch",
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": telegram_api_url(sandbox),
        "TELEGRAM_ALLOWED_CHAT_IDS": str(SUPERVISORS_GROUP),
    }
    return process_env(sandbox, tmp_path, **(telegram | extra))


def secrets_of(env: dict[str, str]) -> list[str]:
    return [WEBHOOK_CODE, TOKEN, TOKEN.split(":", 1)[1], env["B24_WEBHOOK_URL"]]


async def test_a_sound_set_up_exits_0_after_a_table_of_ticks(
    sandbox: TestServer, tmp_path: Path
) -> None:
    env = env_for(sandbox, tmp_path)
    assert (await run_cli(["register"], env, tmp_path))[0] == 0
    code, out, err = await run_cli(["check"], env, tmp_path)
    assert (code, err) == (0, "")
    marks = [line[0] for line in out.splitlines() if line and line[0] in "✓✗–"]
    assert marks == ["✓"] * 10
    assert out.rstrip().endswith("Everything checked holds.")
    for secret in secrets_of(env):
        assert secret not in out


@pytest.mark.parametrize(
    ("broken", "row"),
    [
        ({"code": "wr0ngc0de"}, "✗ webhook code accepted"),
        ({"TELEGRAM_BOT_TOKEN": "7000000001:AAFwrong-token-0123456789abcdefghij"}, "✗ Telegram"),
    ],
)
async def test_a_broken_set_up_exits_1_naming_the_row_and_its_fix_without_a_secret(
    sandbox: TestServer, tmp_path: Path, broken: dict[str, str], row: str
) -> None:
    env = env_for(sandbox, tmp_path)
    if "code" in broken:
        env["B24_WEBHOOK_URL"] = webhook_url(sandbox, code=broken.pop("code"))
    env |= broken
    code, out, err = await run_cli(["check"], env, tmp_path)
    assert (code, err) == (1, "")
    [line] = [line for line in out.splitlines() if line.startswith(row)]
    fix = out.splitlines()[out.splitlines().index(line) + 1]
    assert fix.strip().startswith("fix: ")
    assert out.rstrip().endswith("problem(s) found.")
    for secret in [*secrets_of(env), "wr0ngc0de", "AAFwrong-token"]:
        assert secret not in out


async def test_a_malformed_webhook_url_exits_2_naming_the_setting_not_its_value(
    sandbox: TestServer, tmp_path: Path
) -> None:
    env = env_for(sandbox, tmp_path, B24_WEBHOOK_URL="https://portal.example.com/s3cr3tc0de")
    code, out, err = await run_cli(["check"], env, tmp_path)
    assert (code, out) == (2, "")
    assert "B24_WEBHOOK_URL" in err
    assert "s3cr3tc0de" not in err


async def test_with_nothing_configured_it_says_what_to_set(tmp_path: Path) -> None:
    env = {"PYTHONIOENCODING": "utf-8", "BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}"}
    code, out, _ = await run_cli(["check"], env, tmp_path)
    assert code == 1
    assert out.startswith("✗ B24_WEBHOOK_URL")
    assert "imbot, imopenlines, im" in out


async def test_the_running_service_answers_the_nonce_through_its_public_url(
    sandbox: TestServer, portal: Portal, tmp_path: Path, start_service: ServiceFactory
) -> None:
    """The port is the running service's: `check` cannot serve the probe, the service does;
    one with another webhook (another configuration) does not pass for it."""
    service = await start_service(B24_EVENT_MODE="webhook")
    port = service.server.port
    assert port is not None
    env = env_for(
        sandbox,
        tmp_path,
        B24_EVENT_MODE="webhook",
        BOT_PORT=str(port),
        BOT_PUBLIC_URL=f"http://127.0.0.1:{port}",
        BOT_DATABASE_URL=service.settings.bot_database_url,
    )
    code, out, _ = await run_cli(["check"], env, tmp_path)
    [line] = [line for line in out.splitlines() if "reaches this service" in line]
    assert line.startswith("✓")
    assert f"the service running on port {port}" in line
    assert code == 0, out
    other = portal.webhooks[1]  # user 28's webhook: the same portal, another configuration
    env["B24_WEBHOOK_URL"] = webhook_url(sandbox, other.user_id, other.code)
    env["BOT_PORT"] = str(free_port())
    code, out, _ = await run_cli(["check"], env, tmp_path)
    [line] = [line for line in out.splitlines() if "reaches this service" in line]
    assert line.startswith("✗")
    assert "HTTP 404" in line
