"""The database in `check`: BOT_DATABASE_URL can take a write.

An existing database is opened as the service opens it and asked for a write lock
(`Storage.check`, the one /readyz uses), which it gives back at once: nothing is changed. A
database that does not exist yet is not created: a file is made and removed where the service
would create it, which shows the same permission.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from bot.checks.findings import Finding, fail, ok
from bot.config import Settings
from bot.jobs import session_of
from bot.storage import open_storage

WRITABLE = "database writable"


async def check_database(settings: Settings) -> Finding:
    url = settings.bot_database_url
    path = Path(url.removeprefix("sqlite:///"))
    if not path.exists():  # noqa: ASYNC240 - one stat of a local file
        return _creatable(path)
    try:
        storage = await open_storage(url, session_of=session_of, lease=settings.bot_job_lease)
        try:
            await storage.check()
        finally:
            await storage.close()
    except (sqlite3.Error, OSError) as error:
        reason = str(error) if isinstance(error, sqlite3.Error) else type(error).__name__
        if "locked" in reason:
            fix = (
                "another process holds its write lock (a backup, an editor, a second instance "
                "on the same file): end it; every instance needs a database of its own"
            )
        else:
            fix = f"give the user that runs the service read and write access to {path.parent}"
        return fail(WRITABLE, f"{path}: {reason}", fix)
    return ok(WRITABLE, str(path))


def _creatable(path: Path) -> Finding:
    """The nearest existing folder on the way to `path` takes a new file (the service makes
    the folders below it and the database on its first start)."""
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    fix = (
        f"set BOT_DATABASE_URL to a path the service may write, or make {folder} a folder it "
        "may write"
    )
    if not folder.is_dir():
        return fail(WRITABLE, f"{folder} is a file, not a folder: {path} cannot be made", fix)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bot-check-"):
            pass
    except OSError as error:
        return fail(WRITABLE, f"{folder} takes no new file ({type(error).__name__})", fix)
    return ok(WRITABLE, f"{path} (made at the first start)")
