"""A fresh database file for each storage test, and the storage opened on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.jobs import session_of
from bot.storage import Storage, open_storage


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "bot.sqlite3"


@pytest.fixture
async def storage(path: Path) -> AsyncIterator[Storage]:
    """Opened with the default lease, 60 s (test_sqlite.LEASE)."""
    storage = await open_storage(f"sqlite:///{path}", session_of=session_of)
    yield storage
    await storage.close()
