"""deploy/ kept honest without Docker, systemd or nginx: the files agree with each other and with
the service (its settings, limits and paths), and everything they name exists. (Checked by hand
as well: `nginx -t` and a request through nginx, `systemd-analyze verify` and `security`,
`shellcheck`; deploy/README.md says how.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from bot.__main__ import EXIT_BAD_SETTINGS
from bot.bitrix.webhook import MAX_EVENT_BYTES
from bot.config import OAUTH_CALLBACK_PATH, Settings
from bot.serving import Limits
from bot.telegram.side import WEBHOOK_PATH

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
DEFAULTS = Settings.from_sources({}, env_file=None)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of a Dockerfile or a systemd unit, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", path.read_text())
    lines = [line.strip() for line in joined.splitlines()]
    found = []
    for line in lines:
        if line and not line.startswith(("#", "[")):
            keyword, _, rest = line.partition("=" if path.suffix == ".service" else " ")
            found.append((keyword.strip(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions(DEPLOY / "Dockerfile")
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def one(steps: list[tuple[str, str]], keyword: str) -> str:
    values = [rest for key, rest in steps if key == keyword]
    assert len(values) == 1, (keyword, values)
    return values[0]


def unit() -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in instructions(DEPLOY / "rating-bot.service"):
        found[key] = f"{found[key]} {value}" if key in found else value
    return found


def shell_variables(path: Path) -> dict[str, str]:
    """NAME=value lines of a shell script, with $NAME inside them expanded."""
    found: dict[str, str] = {}
    for name, value in re.findall(r"^([A-Z_]+)=(\S+)$", path.read_text(), re.MULTILINE):
        found[name] = re.sub(r"\$([A-Z_]+)", lambda m: found[m.group(1)], value)
    return found


def default_database_dir() -> PurePosixPath:
    return PurePosixPath(DEFAULTS.bot_database_url.removeprefix("sqlite:///")).parent


# --- the image ----------------------------------------------------------------------------


def test_the_image_is_built_in_two_stages_from_python_3_11_slim() -> None:
    bases = [rest for keyword, rest in instructions(DEPLOY / "Dockerfile") if keyword == "FROM"]
    assert bases == ["python:3.11-slim AS build", "python:3.11-slim"]
    assert one(final_stage(), "COPY") == "--from=build /opt/venv /opt/venv"


def test_the_image_copies_sources_that_exist_and_the_context_keeps_them() -> None:
    ignored = (ROOT / ".dockerignore").read_text()
    # Everything is left out first (.env, .venv), then only what the Dockerfile copies is kept.
    assert next(line for line in ignored.splitlines() if line and line[0] not in "#!") == "**"
    for keyword, rest in instructions(DEPLOY / "Dockerfile"):
        if keyword == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source.rstrip('/')}" in ignored.splitlines(), source


def test_the_service_runs_unprivileged_with_its_database_on_the_volume() -> None:
    stage = final_stage()
    user = one(stage, "USER").split(":")[0]
    assert user not in {"0", "root"}
    volume = PurePosixPath(one(stage, "VOLUME").strip('[]"'))
    assert volume == PurePosixPath(one(stage, "WORKDIR")) / default_database_dir()
    # Everything is installed at build time: the running container downloads nothing.
    assert not any("pip" in rest or "apt" in rest for key, rest in stage if key == "RUN")


def test_the_health_check_follows_bot_port() -> None:
    check = one(final_stage(), "HEALTHCHECK")
    assert check.endswith('CMD ["python", "-m", "bot.healthcheck"]')  # tests/bot/test_healthcheck
    assert not re.search(r"\b\d{4,5}\b", check.split("CMD")[1])  # no port written in


# --- compose --------------------------------------------------------------------------------


def compose_value(key: str) -> str:
    text = (DEPLOY / "compose.yaml").read_text()
    found: list[str] = re.findall(rf"^\s+{key}: (.+)$", text, re.MULTILINE)
    assert len(found) == 1, (key, found)
    return found[0].strip()


def compose_items(key: str) -> list[str]:
    block = re.search(
        rf"^\s+{key}:\n((?:\s+- .+\n)+)", (DEPLOY / "compose.yaml").read_text(), re.MULTILINE
    )
    assert block is not None, key
    return [item.strip().removeprefix("- ").strip('"') for item in block.group(1).splitlines()]


def test_compose_builds_the_dockerfile_from_the_repository_root() -> None:
    context = (DEPLOY / compose_value("context")).resolve()
    assert context == ROOT.resolve()
    assert (context / compose_value("dockerfile")) == (DEPLOY / "Dockerfile").resolve()


def test_compose_reads_a_copy_of_env_example_that_git_never_commits() -> None:
    assert compose_value("env_file") == ".env"
    assert (DEPLOY / ".env.example").is_file()
    if shutil.which("git") and (ROOT / ".git").exists():
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", "deploy/.env"],  # noqa: S607
            cwd=ROOT,
            check=False,
        )
        assert ignored.returncode == 0, "deploy/.env holds the webhook URL: it must be ignored"


def test_compose_publishes_bot_port_on_loopback_and_mounts_the_volume() -> None:
    port = f"${{BOT_PORT:-{DEFAULTS.bot_port}}}"
    assert compose_items("ports") == [f"127.0.0.1:{port}:{port}"]
    volume = one(final_stage(), "VOLUME").strip('[]"')
    assert compose_items("volumes") == [f"data:{volume}"]


def test_compose_waits_for_the_service_to_stop_by_itself() -> None:
    grace = compose_value("stop_grace_period")
    assert float(grace.removesuffix("s")) > DEFAULTS.bot_shutdown_timeout


# --- systemd --------------------------------------------------------------------------------


def test_the_unit_runs_what_install_sh_installs() -> None:
    service = unit()
    script = shell_variables(DEPLOY / "install.sh")
    assert service["User"] == service["Group"] == script["SERVICE_USER"]
    assert service["ExecStart"] == f"{script['PREFIX']}/.venv/bin/python -m bot"
    assert service["EnvironmentFile"] == script["SETTINGS"]
    assert service["WorkingDirectory"] == f"/var/lib/{service['StateDirectory']}"
    assert service["WorkingDirectory"] == script["STATE_DIR"]
    # install.sh backs up the databases where the default BOT_DATABASE_URL puts them.
    backups = f'"$STATE_DIR"/{default_database_dir()}/*.sqlite3'
    assert backups in (DEPLOY / "install.sh").read_text()


def test_install_sh_installs_files_that_exist() -> None:
    named = re.findall(r'"\$repo/([^"]+)"', (DEPLOY / "install.sh").read_text())
    assert "deploy/rating-bot.service" in named
    for path in named:
        assert (ROOT / path).exists(), path


def test_install_sh_builds_from_a_fresh_copy_of_what_the_image_builds_from() -> None:
    # Before: pip built inside the checkout, leaving root-owned build/ and *.egg-info there,
    # and a module deleted upstream stayed in build/lib and was installed again on upgrade.
    script = (DEPLOY / "install.sh").read_text()
    [copied] = re.findall(r'^cp -R (.+) "\$src/"$', script, re.MULTILINE)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    image = [
        s
        for line in re.findall(r"^COPY (?!--)(.+) \S+$", dockerfile, re.MULTILINE)
        for s in line.split()
    ]
    assert re.findall(r'"\$repo/([^"]+)"', copied) == image
    [installed] = re.findall(r"pip install --quiet --no-cache-dir (\S+)$", script, re.MULTILINE)
    assert installed == '"$src"'
    assert "trap 'rm -rf \"$src\"' EXIT" in script


def test_the_cli_wrapper_runs_as_the_unit_does() -> None:
    service = unit()
    wrapper = (DEPLOY / "rating-bot").read_text()
    properties = dict(re.findall(r"--property=(\w+)=(\S+)", wrapper))
    assert properties == {key: service[key] for key in properties}
    assert set(properties) == {
        "User",
        "Group",
        "StateDirectory",
        "WorkingDirectory",
        "EnvironmentFile",
    }
    assert f'{service["ExecStart"]} "$@"' in wrapper


def test_the_unit_fits_the_service_limits() -> None:
    service = unit()
    assert service["RestartPreventExitStatus"] == str(EXIT_BAD_SETTINGS)
    assert int(service["LimitNOFILE"]) > Limits().max_connections
    assert float(service["TimeoutStopSec"]) > DEFAULTS.bot_shutdown_timeout
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"


@pytest.mark.parametrize(("shell", "script"), [("bash", "install.sh"), ("sh", "rating-bot")])
def test_the_scripts_parse(shell: str, script: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell} here")
    subprocess.run([shell, "-n", str(DEPLOY / script)], check=True)


# --- nginx ----------------------------------------------------------------------------------


def nginx_conf() -> str:
    return (DEPLOY / "nginx" / "rating-bot.conf").read_text()


def test_nginx_forwards_exactly_the_paths_the_platforms_post_to() -> None:
    settings = Settings.from_sources(
        {"B24_WEBHOOK_URL": "https://corp.bitrix24.ru/rest/1/c0de/"}, env_file=None
    )
    locations = re.findall(r"^\s+location (.+?) \{", nginx_conf(), re.MULTILINE)
    forwarded = [loc for loc in locations if loc.startswith(("^~", "="))]
    assert forwarded == ["^~ /b24/events/", f"= {WEBHOOK_PATH}", f"= {OAUTH_CALLBACK_PATH}"]
    assert settings.b24_handler_path().startswith("/b24/events/")
    assert locations.count("/") == 2  # the http redirect, and 404 for the rest on https
    assert nginx_conf().count("proxy_pass http://rating_bot;") == 3


def test_nginx_logs_the_oauth_callback_s_code_nowhere() -> None:
    """The callback's query holds a one-time code and state: the access log format shows
    paths only, and the error log (whole request lines) keeps critical errors only."""
    conf = nginx_conf()
    [block] = re.findall(r"location = /b24/oauth/callback \{(.*?)\n    \}", conf, re.DOTALL)
    [(_, level)] = re.findall(r"^\s*error_log (\S+) (\w+);", block, re.MULTILINE)
    assert level in ("crit", "alert", "emerg")
    assert "limit_except GET" in block


def test_nginx_logs_the_handler_secret_nowhere() -> None:
    # Before: the access log masked it, but every failed forward wrote it to the error log.
    conf = nginx_conf()
    [block] = re.findall(r"location \^~ /b24/events/ \{(.*?)\n    \}", conf, re.DOTALL)
    [(_, level)] = re.findall(r"^\s*error_log (\S+) (\w+);", block, re.MULTILINE)
    assert level in ("crit", "alert", "emerg"), "request lines of failed forwards are errors"
    assert "$request " not in conf
    assert "$request_uri" not in conf.replace("return 301 https://$host$request_uri;", "")
    for server in conf.split("server {")[1:]:
        assert "access_log /var/log/nginx/rating-bot.access.log rating_bot;" in server


def test_nginx_limits_bodies_as_the_service_does_and_points_at_its_port() -> None:
    assert re.search(r"client_max_body_size 1m;", nginx_conf())
    assert MAX_EVENT_BYTES == 1024 * 1024
    assert f"server 127.0.0.1:{DEFAULTS.bot_port};" in nginx_conf()
    for header in ("X-Real-IP $remote_addr", "X-Forwarded-For", "X-Request-ID $request_id"):
        assert f"proxy_set_header {header}" in nginx_conf()


# --- .env.example as an administrator uses it ------------------------------------------------


def test_an_unedited_copy_of_env_example_stops_the_start(tmp_path: Path) -> None:
    # Before: the copy registered https://rating-bot.example.com and every event was lost.
    shutil.copy(DEPLOY / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env={"PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_BAD_SETTINGS
    for name in ("B24_WEBHOOK_URL", "B24_SUPERVISOR_IDS"):
        assert name in result.stderr
    assert "still holds a <placeholder> from deploy/.env.example" in result.stderr
    assert not (tmp_path / "data").exists()  # stopped before opening anything


def test_the_settings_install_sh_writes_make_the_service_listen_on_loopback_only(
    tmp_path: Path,
) -> None:
    """install.sh turns .env.example's commented BOT_HOST into 127.0.0.1 with sed: an edit of
    that line would otherwise silently leave the service on every interface."""
    sed = shutil.which("sed")
    if sed is None:
        pytest.skip("no sed here")
    script = (DEPLOY / "install.sh").read_text()
    expression = re.search(r"sed '([^']+)' \"\$repo/deploy/\.env\.example\"", script)
    assert expression is not None, "install.sh writes the settings from .env.example with sed"
    written = subprocess.run(
        [sed, expression.group(1), str(DEPLOY / ".env.example")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.findall(r"^BOT_HOST=.*$", written, re.MULTILINE) == ["BOT_HOST=127.0.0.1"]
    filled = re.sub(
        r"^B24_WEBHOOK_URL=.*$",
        "B24_WEBHOOK_URL=https://corp.bitrix24.ru/rest/1/c0de/",
        written,
        flags=re.MULTILINE,
    )
    filled = re.sub(
        r"^B24_SUPERVISOR_IDS=.*$", "B24_SUPERVISOR_IDS=27", filled, flags=re.MULTILINE
    )
    (tmp_path / "rating-bot.env").write_text(filled)
    settings = Settings.from_sources({}, env_file=tmp_path / "rating-bot.env")
    assert settings.bot_host == "127.0.0.1"
    assert settings.b24_event_mode == "fetch"
