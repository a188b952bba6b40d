"""`python -m bot.sandbox` as a newcomer runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.sandbox.__main__ import build_parser
from tests.bot.test_main import shown_defaults
from tests.harness import post_until_answered, sandbox_process

ROOT = Path(__file__).resolve().parents[3]


def test_prints_the_webhook_url_and_serves_the_portal(tmp_path: Path) -> None:
    with sandbox_process(tmp_path, "--webhook-code", "newcomer1") as (port, process):
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first == f"B24_WEBHOOK_URL=http://127.0.0.1:{port}/rest/1/newcomer1/"
        url = first.removeprefix("B24_WEBHOOK_URL=") + "profile"
        assert post_until_answered(url)["ID"] == "1"
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
    for option in (
        "--port",
        "--rate",
        "--burst",
        "--webhook-code",
        "--head-vote",
        "--service-url",
    ):
        assert option in result.stdout


def test_help_shows_every_option_s_default_as_the_code_has_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    used = vars(parser.parse_args([]))
    expected = {
        "--" + name.replace("_", "-"): "a random one" if value is None else str(value)
        for name, value in used.items()
    }
    assert shown_defaults(capsys.readouterr().out) == expected
    assert expected["--port"] == "8090"
    assert expected["--rate"] == "2"  # written as one writes it, not 2.0


def test_prints_every_setting_for_the_service_and_the_chat_page(tmp_path: Path) -> None:
    with sandbox_process(tmp_path) as (port, process):
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(8)]
    names = [line.split("=", 1)[0] for line in lines[:-1]]
    assert names == [
        "B24_WEBHOOK_URL",
        "B24_SUPERVISOR_IDS",
        "TELEGRAM_API_URL",
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_ALLOWED_CHAT_IDS",
        "TELEGRAM_USER_MAP",
        "TELEGRAM_FEED_CHAT_ID",
    ]
    assert lines[-1] == f"# the chat page: http://127.0.0.1:{port}/"


def test_prints_the_local_application_for_application_mode_commented_out(
    tmp_path: Path,
) -> None:
    """Copied whole into a .env, the output stays webhook mode: application mode also needs
    the service's own BOT_SECRET_KEY, so its lines are there to uncomment."""
    options = ("--service-url", "http://127.0.0.1:8081/")
    with sandbox_process(tmp_path, *options) as (port, process):
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(13)][8:]
    assert "BOT_SECRET_KEY" in lines[0] + lines[1]
    assert lines[1].endswith("http://127.0.0.1:8081/b24/oauth/callback")
    settings = dict(line.removeprefix("# ").split("=", 1) for line in lines[2:])
    assert settings["B24_APP_CLIENT_ID"].startswith("local.")
    assert len(settings["B24_APP_CLIENT_SECRET"]) >= 32
    assert settings["B24_OAUTH_SERVER"] == f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("target", "command"),
    [
        ("sandbox", "-m bot.sandbox --port 8091"),
        ("run", "-m bot try --sandbox-port 8091"),
    ],
)
def test_make_takes_the_sandbox_port(target: str, command: str) -> None:
    assert command in make_dry_run(target, "SANDBOX_PORT=8091")


@pytest.mark.parametrize(
    ("given", "command"),
    [
        ([], "-m bot try --sandbox-port 8090\n"),
        (["APP=1"], "-m bot try --sandbox-port 8090 --app\n"),
        (["APP=0"], "-m bot try --sandbox-port 8090\n"),
        (["APP=1", "SANDBOX_PORT=8091"], "-m bot try --sandbox-port 8091 --app\n"),
    ],
)
def test_make_run_takes_application_mode(given: list[str], command: str) -> None:
    assert command in make_dry_run("run", *given)


def make_dry_run(target: str, *given: str) -> str:
    """The commands `make -n target VAR=value...` would run."""
    result = subprocess.run(
        ["make", "-n", target, *given],  # noqa: S607 - make from the PATH given
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
