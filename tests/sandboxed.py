"""`python -m bot try` as `make run` starts it, as a real process: for the tests of `try` and
the browser tests of the chat page. Its output goes to a file, so that a long test never
blocks it on a full pipe."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.harness import free_port

_PAGE = re.compile(r"Open the chat page:\s+(\S+)")


@dataclass
class Trial:
    process: subprocess.Popen[str]
    output: Path
    sandbox_port: int
    service_port: int

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8")

    def page_url(self, within: float = 30.0) -> str:
        """The chat page's address, once the banner printed it."""

        def printed() -> str | None:
            match = _PAGE.search(self.text())
            return match.group(1) if match else None

        return until(printed, within)

    def sandbox(self, path: str) -> Any:
        return get_json(f"http://127.0.0.1:{self.sandbox_port}{path}")

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.sandbox_port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return json.load(answer)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


T = TypeVar("T")


def until(probe: Callable[[], T | None], within: float) -> T:
    """Poll `probe` (errors count as not yet) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        try:
            value = probe()
            if value:
                return value
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the expected state did not come about in time")
        time.sleep(0.1)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback
        return json.load(answer)


@contextmanager
def trial(cwd: Path, env: dict[str, str] | None = None, *args: str) -> Iterator[Trial]:
    """`python -m bot try` on free ports in `cwd`, with only the environment given."""
    sandbox_port, service_port = free_port(), free_port()
    output = cwd / "trial.log"
    with output.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "try", "--sandbox-port", str(sandbox_port), *args],
            env={"PYTHONIOENCODING": "utf-8", "BOT_PORT": str(service_port)} | (env or {}),
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    running = Trial(process, output, sandbox_port, service_port)
    try:
        yield running
    finally:
        if process.poll() is None:
            running.stop()
