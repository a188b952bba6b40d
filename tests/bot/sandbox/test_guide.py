"""docs/sandbox.md, run as written: every `curl` of the guide against a sandbox started as
`make sandbox` starts it and the service started with the settings it prints (as `make run`
with them in `.env`), in the order of the guide; each answers 200 and shows what its
`# answers:` lines say (a request that reads the state is asked again until it does, since the
service fetches the events on its own time). Every `/_sandbox/` route is in the guide."""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.sandbox.app import create_sandbox_app
from bot.sandbox.seed import seeded_portal
from tests.harness import free_port

GUIDE = Path(__file__).parents[3] / "docs" / "sandbox.md"
DOCUMENTED = "127.0.0.1:8090"
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.DOTALL | re.MULTILINE)
_ANSWERS = "# answers: "


@dataclass
class Example:
    command: str
    answers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    data: bytes | None


def examples(text: str) -> list[Example]:
    """The guide's `curl` commands in order, each with the `# answers:` lines under it."""
    found: list[Example] = []
    for block in _BLOCK.findall(text):
        for line in block.splitlines():
            if line.startswith("curl "):
                found.append(Example(line))
            elif line.startswith(_ANSWERS):
                found[-1].answers.append(line.removeprefix(_ANSWERS))
    return found


def as_request(command: str) -> Request:
    """What `curl` does with the command line, for the options the guide may use: -s, -X,
    -H, -d. Anything else fails here, so the guide keeps to what is checked."""
    words = shlex.split(command)
    assert words[0] == "curl", command
    method, headers, data, urls = None, {}, None, []
    rest = iter(words[1:])
    for word in rest:
        if word == "-s":
            continue
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, value = next(rest).split(":", 1)
            headers[name.strip()] = value.strip()
        elif word == "-d":
            data = next(rest).encode()
        else:
            assert not word.startswith("-"), f"an option the guide's check does not know: {word}"
            urls.append(word)
    [url] = urls
    return Request(method or ("POST" if data is not None else "GET"), url, headers, data)


def send(request: Request, port: int) -> tuple[int, str]:
    url = request.url.replace(DOCUMENTED, f"127.0.0.1:{port}")
    assert url.startswith(f"http://127.0.0.1:{port}/"), url  # loopback only
    call = urllib.request.Request(  # noqa: S310 - loopback
        url, data=request.data, headers=request.headers, method=request.method
    )
    try:
        with urllib.request.urlopen(call, timeout=10) as answer:  # noqa: S310
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def answers_200(request: Request, port: int) -> bool:
    try:
        return send(request, port)[0] == 200
    except urllib.error.URLError:  # not listening yet
        return False


def wait_for(probe: str, path: Path, within: float = 20.0) -> str:
    deadline = time.monotonic() + within
    while probe not in (text := path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{probe!r} never appeared in {path.name}: {text}"
        time.sleep(0.1)
    return text


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[None]:
    """A process of ours, its output in `log`; stopped (SIGTERM) on the way out."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, *args], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)


@pytest.fixture
def guided(tmp_path: Path) -> Iterator[int]:
    """`make sandbox`, then the service with the settings it printed: the sandbox's port."""
    port = free_port()
    env = {"PYTHONIOENCODING": "utf-8"}
    sandbox_log = tmp_path / "sandbox.log"
    with running(["-m", "bot.sandbox", "--port", str(port)], env, tmp_path, sandbox_log):
        printed = wait_for("TELEGRAM_USER_MAP=", sandbox_log).splitlines()
        settings = dict(line.split("=", 1) for line in printed if re.match(r"[A-Z0-9_]+=", line))
        service_port = free_port()
        service = (
            env
            | settings
            | {
                "BOT_HOST": "127.0.0.1",
                "BOT_PORT": str(service_port),
                "BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
            }
        )
        with running(["-m", "bot"], service, tmp_path, tmp_path / "service.log"):
            ready = Request("GET", f"http://{DOCUMENTED}/readyz", {}, None)
            deadline = time.monotonic() + 30
            while not answers_200(ready, service_port):  # registered, fetching, on Telegram
                assert time.monotonic() < deadline, (tmp_path / "service.log").read_text()
                time.sleep(0.2)
            yield port


def test_every_example_of_the_guide_works_as_written(guided: int) -> None:
    found = examples(GUIDE.read_text())
    assert len(found) > 20
    for example in found:
        request = as_request(example.command)
        deadline = time.monotonic() + 30
        while True:
            status, body = send(request, guided)
            shown = status == 200 and all(a in body for a in example.answers)
            if shown or request.method != "GET" or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # the state changes once the service has fetched and answered
        assert status == 200, (example.command, body)
        for answer in example.answers:
            assert answer in body, (example.command, answer, body[-2000:])


def test_every_sandbox_route_is_in_the_guide() -> None:
    guide = GUIDE.read_text()
    routes = {
        r.canonical
        for r in create_sandbox_app(seeded_portal()).router.resources()
        if r.canonical.startswith("/_sandbox/")
    }
    assert routes
    assert sorted(r for r in routes if r not in guide) == []


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "curl -s http://127.0.0.1:8090/_sandbox/bots",
            Request("GET", "http://127.0.0.1:8090/_sandbox/bots", {}, None),
        ),
        (
            "curl -s -H 'Content-Type: application/json' -d '{\"a\": \"б в\"}' http://h:1/x",
            Request(
                "POST",
                "http://h:1/x",
                {"Content-Type": "application/json"},
                '{"a": "б в"}'.encode(),
            ),
        ),
        ("curl -s -X DELETE http://h:1/f", Request("DELETE", "http://h:1/f", {}, None)),
    ],
)
def test_a_guide_line_is_read_as_curl_reads_it(command: str, expected: Request) -> None:
    assert as_request(command) == expected


def test_an_option_the_check_does_not_know_is_refused() -> None:
    with pytest.raises(AssertionError, match="--json"):
        as_request("curl -s --json '{}' http://h:1/x")
