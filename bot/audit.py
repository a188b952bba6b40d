"""`python -m bot audit`: the audit log as a table, or as CSV for a spreadsheet."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TextIO

from bot.config import Settings
from bot.storage import AuditEntry, open_storage

COLUMNS: Final = (
    "time_utc", "source", "user_id", "command", "session_id", "rating", "outcome", "text", "reply",
)  # fmt: skip


def audit_row(entry: AuditEntry) -> dict[str, object]:
    return {
        "time_utc": datetime.fromtimestamp(entry.at, tz=UTC).isoformat(timespec="seconds"),
        "source": entry.source,
        "user_id": entry.user_id,
        "command": entry.command or "",
        "session_id": entry.session_id or "",
        "rating": entry.rating or "",
        "outcome": entry.outcome,
        "text": entry.text,
        "reply": entry.reply,
    }


async def read_audit(settings: Settings, *, since: float) -> list[AuditEntry]:
    """The entries from `since` (a Unix time) on, oldest first."""
    storage = await open_storage(settings.bot_database_url)
    try:
        return await storage.audit(since=since)
    finally:
        await storage.close()


def write_audit(entries: list[AuditEntry], *, csv_path: str | None, out: TextIO) -> None:
    """A table on `out`, or CSV to a file (`-`: to `out`)."""
    rows = [audit_row(entry) for entry in entries]
    if csv_path is None:
        out.writelines(
            " | ".join(str(value).replace("\n", " ") for value in row.values()) + "\n"
            for row in rows
        )
    elif csv_path == "-":
        _write_csv(rows, out)
    else:
        with Path(csv_path).open("w", newline="", encoding="utf-8") as file:
            _write_csv(rows, file)


def _write_csv(rows: list[dict[str, object]], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)


def parse_since(value: str | None) -> float:
    """`--since 2026-11-27` as a Unix time (UTC); 0 for no value."""
    if not value:
        return 0.0
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
