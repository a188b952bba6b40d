"""`python -m bot audit`: every command, who, what, when, the outcome; as a table or CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from pathlib import Path

import pytest

from bot.audit import COLUMNS, csv_cell, table_cell
from bot.sandbox.portal import Fault
from tests.harness import Service, eventually, job_rows


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
        ("27", "rate", "999", "1", "session_not_visible"),
        ("28", "rate", "494", "1", "not_supervisor"),
        ("27", "", "", "", "parse.rating_out_of_range"),
    ]
    assert rows[0]["text"] == "/rate 494 5 Молодец"
    assert rows[0]["reply"].startswith("✅ Сохранено")
    assert rows[0]["time_utc"].endswith("+00:00")
    code, out, _ = await run_audit(
        ["--since", "2999-01-01"], service.settings.bot_database_url, tmp_path
    )
    assert (code, out) == (0, " | ".join(COLUMNS) + "\n")
    code, out, _ = await run_audit([], service.settings.bot_database_url, tmp_path)
    header, *lines = out.splitlines()
    assert header == " | ".join(COLUMNS)
    assert len(lines) == 4
    assert "| saved |" in lines[0]


@pytest.mark.parametrize("since", ["yesterday", "27.11.2026"])
async def test_a_bad_date_is_one_clear_line(tmp_path: Path, since: str) -> None:
    code, _, err = await run_audit(
        ["--since", since], f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path
    )
    assert code == 2
    assert err.strip() == f"--since takes a date such as 2026-11-27, not {since!r}"


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("/rate 494 5 =1+1", "/rate 494 5 =1+1"),
        ("Молодец", "Молодец"),
        ("", ""),
    ],
)
def test_a_csv_cell_that_a_spreadsheet_would_evaluate_is_text(text: str, cell: str) -> None:
    assert csv_cell(text) == cell


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("two\nlines", "two\\nlines"),
        ("tab\there", "tab\\there"),
        ("back\rwards", "back\\rwards"),
        ("\x1b]0;owned\x07title", "\\x1b]0;owned\\x07title"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("nul\x00del\x7fcsi\x9b", "nul\\x00del\\x7fcsi\\x9b"),
        ("\u202egnp.exe", "\\u202egnp.exe"),
        ("\u2066iso\u2069 \u200fmark", "\\u2066iso\\u2069 \\u200fmark"),
        ("line\u2028sep", "line\\u2028sep"),
        ("C:\\x1b", "C:\\\\x1b"),
        ("saved | 5 | fake", "saved \\| 5 \\| fake"),
        ("Молодец ★★★★★ 👍", "Молодец ★★★★★ 👍"),
    ],
)
def test_a_table_cell_cannot_drive_the_terminal(text: str, line: str) -> None:
    assert table_cell(text) == line


async def test_hostile_texts_from_a_real_audit_log_are_inert(
    service: Service, tmp_path: Path
) -> None:
    await service.reply_to(27, service.bot_id, '=HYPERLINK("http://evil.example")')
    await service.reply_to(27, service.bot_id, "/rate 494 5 \x1b]0;owned\x07 \u202eok")
    await eventually(lambda: len(service.bot_messages()) == 2)
    await asyncio.sleep(0.1)  # the last job's audit entry is written right after its reply
    database = service.settings.bot_database_url
    _, out, _ = await run_audit(["--csv", "-"], database, tmp_path)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["text"] for row in rows] == [
        '\'=HYPERLINK("http://evil.example")',
        "/rate 494 5 \x1b]0;owned\x07 \u202eok",
    ]
    _, out, _ = await run_audit([], database, tmp_path)
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "/rate 494 5 \\x1b]0;owned\\x07 \\u202eok |" in out
    assert len(out.splitlines()) == 3


async def test_excel_csv_has_a_bom_and_semicolons(service: Service, tmp_path: Path) -> None:
    await service.reply_to(27, service.bot_id, "/rate 494 5 Молодец; спасибо")
    await asyncio.sleep(0.1)  # the job's audit entry is written right after its reply
    target = tmp_path / "audit.csv"
    code, _, _ = await run_audit(
        ["--csv", str(target), "--excel"], service.settings.bot_database_url, tmp_path
    )
    assert code == 0
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.splitlines()[0] == b"\xef\xbb\xbf" + ";".join(COLUMNS).encode()
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert [(r["rating"], r["text"]) for r in rows] == [("5", "/rate 494 5 Молодец; спасибо")]


async def test_excel_without_csv_is_one_clear_line(tmp_path: Path) -> None:
    code, out, err = await run_audit(["--excel"], f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path)
    assert (code, out) == (2, "")
    assert err.strip() == "--excel shapes a CSV: give it with --csv FILE"


@pytest.mark.parametrize(
    ("missing", "content"),
    [
        ("bot.sqlite3", None),
        ("data/bot.sqlite3", None),  # nor its folder
        ("bot.sqlite3", b""),  # an empty file: SQLite would take it for an empty database
        ("bot.sqlite3", b"name,rating\n494,5\n"),  # not SQLite at all
    ],
)
async def test_without_a_bot_database_the_audit_says_so_and_creates_none(
    tmp_path: Path, missing: str, content: bytes | None
) -> None:
    database = tmp_path / missing
    if content is not None:
        database.write_bytes(content)
    code, out, err = await run_audit([], f"sqlite:///{database}", tmp_path)
    assert (code, out) == (2, "")
    assert err.strip() == (
        f"There is no bot database at {database} (BOT_DATABASE_URL): nothing to audit."
    )
    assert files_in(tmp_path) == ([] if content is None else ["bot.sqlite3"])
    assert content is None or database.read_bytes() == content


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_the_audit_leaves_a_running_service_s_claims_alone(
    service: Service, tmp_path: Path
) -> None:
    """The audit used to open the database as the service does, putting its claims back in
    the queue: a vote in progress then ran twice."""
    database = service.settings.bot_database_url
    service.portal.faults.append(Fault(method="batch", hang=True))  # the vote hangs
    await service.say(27, service.bot_id, "/rate 494 5")
    [claimed] = await eventually(lambda: [r for r in job_rows(database) if r[1] == "claimed"])
    code, _, err = await run_audit([], database, tmp_path)
    assert (code, err.strip()) == (0, "0 entries")
    # A later command is answered: the workers have looked for due jobs since the audit.
    await service.reply_to(27, service.bot_id, "/help")
    assert job_rows(database)[0] == claimed
    assert service.portal.sessions[494].vote_head == 0
