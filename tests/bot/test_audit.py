"""`python -m bot audit`: every command, who, what, when, the outcome; as a table or CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from pathlib import Path

import pytest

from tests.harness import Service, eventually


async def run_audit(args: list[str], database: str, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "audit", *args,
        env={"PYTHONIOENCODING": "utf-8", "BOT_DATABASE_URL": database},
        cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_the_audit_lists_every_command_with_its_outcome(
    service: Service, tmp_path: Path
) -> None:
    await service.reply_to(27, service.bot_id, "/rate 494 5 Молодец")
    await service.reply_to(27, service.bot_id, "/rate 999 1")
    await service.reply_to(28, service.bot_id, "/rate 494 1")
    await service.reply_to(27, service.bot_id, "/rate 494 7")
    await eventually(lambda: len(service.bot_messages()) == 4)
    await asyncio.sleep(0.1)  # the last job's audit entry is written right after its reply
    code, out, err = await run_audit(["--csv", "-"], service.settings.bot_database_url, tmp_path)
    assert (code, err.strip()) == (0, "4 entries")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [
        (r["user_id"], r["command"], r["session_id"], r["rating"], r["outcome"]) for r in rows
    ] == [
        ("27", "rate", "494", "5", "saved"),
        ("27", "rate", "999", "1", "session_not_found"),
        ("28", "rate", "494", "1", "not_supervisor"),
        ("27", "", "", "", "parse.rating_out_of_range"),
    ]
    assert rows[0]["text"] == "/rate 494 5 Молодец"
    assert rows[0]["reply"].startswith("✅ Сохранено")
    assert rows[0]["time_utc"].endswith("+00:00")
    code, out, _ = await run_audit(
        ["--since", "2999-01-01"], service.settings.bot_database_url, tmp_path
    )
    assert (code, out) == (0, "")
    code, out, _ = await run_audit([], service.settings.bot_database_url, tmp_path)
    assert out.count("\n") == 4
    assert "| saved |" in out


@pytest.mark.parametrize("since", ["yesterday", "27.11.2026"])
async def test_a_bad_date_is_one_clear_line(tmp_path: Path, since: str) -> None:
    code, _, err = await run_audit(
        ["--since", since], f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path
    )
    assert code == 2
    assert err.strip() == f"--since takes a date such as 2026-11-27, not {since!r}"
