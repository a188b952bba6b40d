"""`python -m bot audit`: the audit log as a table, or as CSV for a spreadsheet.

Every cell may hold what a user typed, so both outputs treat it as hostile: the table escapes
whatever could drive a terminal, and the CSV keeps a spreadsheet from reading a cell as a formula.
"""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TextIO

from bot.config import Settings
from bot.storage import AuditEntry, open_storage_read_only

COLUMNS: Final = (
    "time_utc", "source", "user_id", "b24_user_id", "command", "session_id", "rating", "outcome",
    "acted_as", "text", "reply",
)  # fmt: skip

# A cell starting with one of these is a formula (or becomes one) in Excel, LibreOffice and
# Google Sheets; OWASP's advice is a leading apostrophe, which makes it text.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")

# What must not reach a terminal raw: C0 and C1 controls and DEL (ESC starts the sequences that
# move the cursor, recolour or retitle the terminal), the line and paragraph separators, and the
# bidi embeddings, overrides, isolates and marks that reorder the text shown around them. The
# backslash is escaped as well, so that an escape in the table is never ambiguous, and the
# column separator, so that a comment cannot fake columns.
_UNSAFE: Final = re.compile(
    "[|\\\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED: Final = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "|": "\\|"}


def audit_row(entry: AuditEntry) -> dict[str, object]:
    return {
        "time_utc": datetime.fromtimestamp(entry.at, tz=UTC).isoformat(timespec="seconds"),
        "source": entry.source,
        "user_id": entry.user_id,
        # Telegram: the linked Bitrix24 user the command acted as (Bitrix24 rows: empty).
        "b24_user_id": "" if entry.b24_user_id is None else entry.b24_user_id,
        "command": entry.command or "",
        "session_id": entry.session_id or "",
        "rating": entry.rating or "",
        "outcome": entry.outcome,
        # Whose rights Bitrix24 checked: "webhook" (its owner's) or "own" (the supervisor's).
        "acted_as": entry.acted_as or "",
        "text": entry.text,
        "reply": entry.reply,
    }


async def read_audit(settings: Settings, *, since: float) -> list[AuditEntry]:
    """The entries from `since` (a Unix time) on, oldest first. The database is only read
    (a running service's claims stay as they are); raises StorageMissing when there is none."""
    storage = await open_storage_read_only(settings.bot_database_url)
    try:
        return await storage.audit(since=since)
    finally:
        await storage.close()


def write_audit(
    entries: list[AuditEntry], *, csv_path: str | None, out: TextIO, excel: bool = False
) -> None:
    """A table on `out`, or CSV to a file (`-`: to `out`). `excel`: the CSV a Russian-locale
    Excel opens as it is (UTF-8 with a BOM, `;` between cells)."""
    rows = [audit_row(entry) for entry in entries]
    if csv_path is None:
        out.write(" | ".join(COLUMNS) + "\n")
        out.writelines(
            " | ".join(table_cell(value) for value in row.values()) + "\n" for row in rows
        )
    elif csv_path == "-":
        _write_csv(rows, out, excel=excel)
    else:
        with Path(csv_path).open("w", newline="", encoding="utf-8") as file:
            _write_csv(rows, file, excel=excel)


def table_cell(value: object) -> str:
    """A cell for the terminal table: one line, nothing a terminal would act on."""
    return _UNSAFE.sub(_escape, str(value))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"  # noqa: PLR2004


def csv_cell(value: object) -> str:
    """A cell no spreadsheet evaluates: a formula-looking text gets a leading apostrophe."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _write_csv(rows: list[dict[str, object]], out: TextIO, *, excel: bool) -> None:
    if excel:
        # Excel reads a CSV as UTF-8 only after a byte order mark, and a Russian locale's list
        # separator is `;`: without both it shows mojibake in one column.
        out.write("\ufeff")
    writer = csv.DictWriter(out, fieldnames=COLUMNS, delimiter=";" if excel else ",")
    writer.writeheader()
    writer.writerows({key: csv_cell(value) for key, value in row.items()} for row in rows)


def parse_since(value: str | None) -> float:
    """`--since 2026-11-27` as a Unix time (UTC); 0 for no value."""
    if not value:
        return 0.0
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
