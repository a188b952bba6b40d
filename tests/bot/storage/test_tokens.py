"""Supervisors' OAuth link attempts and tokens in the SQLite storage (issue 12): a nonce is
stored only hashed, taken once (under concurrency too), expires, and a user holds only a few;
tokens are sealed, bound to their row, written with compare-and-swap, unreadable under another
key without a secret in the log; an older database upgrades and keeps its rows."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from structlog.testing import capture_logs

from bot.jobs import session_of
from bot.models import BitrixRoute, IncomingCommand
from bot.ports import StoredTokens, TokenStore, UserTokens
from bot.secretbox import SecretBox
from bot.storage import Storage, open_storage
from bot.storage.sqlite import MIGRATIONS
from bot.storage.sqlite_tokens import STATES_KEPT, state_digest

PORTAL, OTHER_PORTAL = "portal.example", "other.example"
ANNA, BORIS = 27, 28
NOW = 1_800_000_000.0
TTL = 600.0
SECRET = b"the-service-key-for-these-tests-0123456789"
ACCESS, REFRESH = "access-9f8e7d6c5b4a-anna", "refresh-0a1b2c3d4e5f-anna"


def command(author: int = ANNA, text: str = "/rate 494 5 Молодец") -> IncomingCommand:
    route = BitrixRoute(dialog_id=str(author), author_dialog_id=str(author))
    return IncomingCommand(
        key=f"b24:{author}:1", source="bitrix", author_id=author, text=text,
        language="ru", received_at=NOW, route=route,
    )  # fmt: skip


def pair(access: str = ACCESS, refresh: str = REFRESH, issued_at: float = NOW) -> UserTokens:
    return UserTokens(
        access_token=SecretStr(access),
        refresh_token=SecretStr(refresh),
        access_expires_at=issued_at + 3600,
        refresh_issued_at=issued_at,
        member_id="a223c6b3710f85df22e9377d6c4f7553",
        client_endpoint=f"https://{PORTAL}/rest/",
        server="oauth.bitrix.info",
        scope="imopenlines,user_brief",
    )


async def opened(path: Path) -> Storage:
    return await open_storage(f"sqlite:///{path}", session_of=session_of)


@pytest.fixture
def tokens(storage: Storage) -> TokenStore:
    return storage.user_tokens(SecretBox(SECRET))


def raw(path: Path, query: str, *params: object) -> list[Any]:
    """What another process (or someone with the file) reads or writes, bypassing the service."""
    with sqlite3.connect(path) as db:
        rows = db.execute(query, params).fetchall()
    db.close()
    return rows


# Link attempts.


@pytest.mark.parametrize("waiting", [command(), command(text="/rate 1 1 «<b>»"), None])
async def test_a_link_attempt_is_taken_once_with_the_command_it_waits_for(
    storage: Storage, waiting: IncomingCommand | None
) -> None:
    states = storage.oauth_states()
    nonce = await states.new_state(PORTAL, ANNA, waiting, TTL, NOW)
    taken = await states.take_state(nonce, NOW + 1)
    assert taken is not None
    assert (taken.portal, taken.user_id, taken.waiting) == (PORTAL, ANNA, waiting)
    assert taken.expires_at == NOW + TTL
    assert await states.take_state(nonce, NOW + 2) is None  # used up


async def test_nonces_are_long_random_and_url_safe(storage: Storage) -> None:
    states = storage.oauth_states()
    nonces = {await states.new_state(PORTAL, user, None, TTL, NOW) for user in range(1, 51)}
    assert len(nonces) == 50
    for nonce in nonces:
        assert len(nonce) >= 22  # 128 bits at least, in base64url
        assert nonce.replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize(
    ("taken_after", "found"),
    [(1.0, True), (TTL - 0.001, True), (TTL, False), (TTL + 3600, False)],
)
async def test_an_expired_attempt_is_not_taken_and_is_gone(
    storage: Storage, path: Path, taken_after: float, found: bool
) -> None:
    states = storage.oauth_states()
    nonce = await states.new_state(PORTAL, ANNA, command(), TTL, NOW)
    assert (await states.take_state(nonce, NOW + taken_after) is not None) is found
    assert raw(path, "SELECT count(*) FROM oauth_states") == [(0,)]
    assert await states.take_state(nonce, NOW) is None  # not even with a clock set back


@pytest.mark.parametrize("nonce", ["", "forged", "A" * 43, "../../etc", "' OR 1=1 --", "é" * 1000])
async def test_a_forged_nonce_takes_nothing(storage: Storage, nonce: str) -> None:
    states = storage.oauth_states()
    real = await states.new_state(PORTAL, ANNA, command(), TTL, NOW)
    assert await states.take_state(nonce, NOW) is None
    assert await states.take_state(real, NOW) is not None  # the real one was left alone


@pytest.mark.parametrize("processes", [1, 2])
async def test_of_concurrent_takes_of_one_nonce_exactly_one_gets_it(
    storage: Storage, path: Path, processes: int
) -> None:
    """The attack: a callback replayed while the first is still being handled (a double
    click, or two replicas each getting one). Both must not complete the waiting vote."""
    others = [await opened(path) for _ in range(processes - 1)]
    takers = [storage.oauth_states(), *(other.oauth_states() for other in others)]
    try:
        for _ in range(20):
            nonce = await takers[0].new_state(PORTAL, ANNA, command(), TTL, NOW)
            taken = await asyncio.gather(
                *(takers[i % len(takers)].take_state(nonce, NOW) for i in range(4))
            )
            assert sum(link is not None for link in taken) == 1
    finally:
        for other in others:
            await other.close()


async def test_a_user_holds_only_the_newest_attempts(storage: Storage) -> None:
    states = storage.oauth_states()
    anna = [
        await states.new_state(PORTAL, ANNA, None, TTL, NOW + i) for i in range(STATES_KEPT + 2)
    ]
    boris = await states.new_state(PORTAL, BORIS, None, TTL, NOW)
    anna_elsewhere = await states.new_state(OTHER_PORTAL, ANNA, None, TTL, NOW)
    live = [await states.take_state(nonce, NOW + 10) is not None for nonce in anna]
    assert live == [False, False] + [True] * STATES_KEPT
    assert await states.take_state(boris, NOW + 10) is not None
    assert await states.take_state(anna_elsewhere, NOW + 10) is not None


async def test_dropping_a_user_s_attempts_voids_theirs_alone(storage: Storage) -> None:
    """`/logout`: every link the user was given dies; others' and other portals' live on."""
    states = storage.oauth_states()
    anna = [await states.new_state(PORTAL, ANNA, command(), TTL, NOW) for _ in range(2)]
    boris = await states.new_state(PORTAL, BORIS, None, TTL, NOW)
    anna_elsewhere = await states.new_state(OTHER_PORTAL, ANNA, None, TTL, NOW)
    assert await states.drop_states(PORTAL, ANNA) == len(anna)
    assert [await states.take_state(nonce, NOW + 1) for nonce in anna] == [None, None]
    assert await states.take_state(boris, NOW + 1) is not None
    assert await states.take_state(anna_elsewhere, NOW + 1) is not None
    assert await states.drop_states(PORTAL, ANNA) == 0


async def test_expired_attempts_are_purged_and_live_ones_kept(
    storage: Storage, path: Path
) -> None:
    states = storage.oauth_states()
    for user in (ANNA, BORIS):
        await states.new_state(PORTAL, user, command(user), TTL, NOW)
    live = await states.new_state(PORTAL, ANNA, None, TTL, NOW + 100)
    assert await states.purge(NOW + TTL) == 2
    assert await states.purge(NOW + TTL) == 0
    assert raw(path, "SELECT user_id FROM oauth_states") == [(ANNA,)]
    assert await states.take_state(live, NOW + TTL) is not None


async def test_a_new_attempt_clears_out_every_expired_one(storage: Storage, path: Path) -> None:
    states = storage.oauth_states()
    for user in range(100, 110):
        await states.new_state(PORTAL, user, None, TTL, NOW)
    await states.new_state(PORTAL, ANNA, None, TTL, NOW + TTL)
    assert raw(path, "SELECT user_id FROM oauth_states") == [(ANNA,)]


async def test_a_waiting_command_that_no_longer_parses_loses_only_the_command(
    storage: Storage, path: Path
) -> None:
    states = storage.oauth_states()
    nonce = await states.new_state(PORTAL, ANNA, command(), TTL, NOW)
    raw(path, 'UPDATE oauth_states SET waiting = \'{"key": "from a newer release"}\'')
    with capture_logs() as logged:
        taken = await states.take_state(nonce, NOW)
    assert taken is not None
    assert (taken.user_id, taken.waiting) == (ANNA, None)
    assert [line["event"] for line in logged] == ["oauth.waiting_unreadable"]


# Tokens.


async def test_tokens_round_trip_with_everything_stored_beside_them(tokens: TokenStore) -> None:
    assert await tokens.get(PORTAL, ANNA) is None
    assert await tokens.put(PORTAL, ANNA, pair(), replaces=None)
    stored = await tokens.get(PORTAL, ANNA)
    assert stored is not None
    assert (stored.portal, stored.user_id, stored.tokens) == (PORTAL, ANNA, pair())
    assert stored.tokens.access_token.get_secret_value() == ACCESS
    assert stored.tokens.refresh_token.get_secret_value() == REFRESH
    assert await tokens.get(OTHER_PORTAL, ANNA) is None
    assert await tokens.get(PORTAL, BORIS) is None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(access=st.text(), refresh=st.text(), user=st.integers(1, 2**31 - 1))
async def test_any_token_strings_round_trip(
    tokens: TokenStore, access: str, refresh: str, user: int
) -> None:
    assert await tokens.put(PORTAL, user, pair(access, refresh), replaces=None)
    stored = await tokens.get(PORTAL, user)
    assert stored is not None
    assert stored.tokens.access_token.get_secret_value() == access
    assert stored.tokens.refresh_token.get_secret_value() == refresh


async def test_the_database_file_holds_neither_a_token_nor_a_nonce(path: Path) -> None:
    storage = await opened(path)
    try:
        nonce = await storage.oauth_states().new_state(PORTAL, ANNA, command(), TTL, NOW)
        await storage.user_tokens(SecretBox(SECRET)).put(PORTAL, ANNA, pair(), replaces=None)
        files = sorted(path.parent.iterdir())
        written = b"".join(file.read_bytes() for file in files)  # the file, its WAL, its index
    finally:
        await storage.close()
    written += b"".join(file.read_bytes() for file in sorted(path.parent.iterdir()))
    assert state_digest(nonce).encode() in written  # the right bytes were read
    assert pair().member_id.encode() in written
    for secret in (nonce, ACCESS, REFRESH, SECRET.decode()):
        assert secret.encode() not in written
        assert secret.encode("utf-16-le") not in written


@pytest.mark.parametrize(
    ("moved", "into"),
    [
        ("access_token", "user_id = 28 AND portal = 'portal.example'"),  # Anna's into Boris's row
        ("access_token", "portal = 'other.example'"),  # the same user id, another portal
        ("refresh_token", "user_id = 28 AND portal = 'portal.example'"),
    ],
)
async def test_a_token_moved_into_another_row_does_not_open(
    tokens: TokenStore, path: Path, moved: str, into: str
) -> None:
    """The attack: someone who may write the database file (a backup restored by hand, a
    shared volume) puts a supervisor's sealed token into the row of a user who has none,
    so that this user's votes are cast as the supervisor."""
    for portal, user in ((PORTAL, ANNA), (PORTAL, BORIS), (OTHER_PORTAL, ANNA)):
        await tokens.put(portal, user, pair(f"access-{portal}-{user}"), replaces=None)
    raw(
        path,
        f"UPDATE user_tokens SET {moved} = (SELECT {moved} FROM user_tokens "  # noqa: S608
        f"WHERE portal = 'portal.example' AND user_id = 27) WHERE {into}",
    )
    victims = raw(path, f"SELECT portal, user_id FROM user_tokens WHERE {into}")  # noqa: S608
    assert len(victims) == 1
    with capture_logs() as logged:
        for portal, user in victims:
            assert await tokens.get(portal, user) is None
    assert [(line["event"], line["reason"]) for line in logged] == [
        ("oauth.token_unreadable", "tampered")
    ]
    assert await tokens.get(PORTAL, ANNA) is not None  # the original still opens


async def test_the_access_and_refresh_fields_cannot_be_swapped(
    tokens: TokenStore, path: Path
) -> None:
    await tokens.put(PORTAL, ANNA, pair(), replaces=None)
    raw(path, "UPDATE user_tokens SET access_token = refresh_token, refresh_token = access_token")
    assert await tokens.get(PORTAL, ANNA) is None


async def test_under_another_key_a_token_is_absent_and_logged_once_without_secrets(
    storage: Storage,
) -> None:
    old, new = SecretBox(SECRET), SecretBox(b"a-new-key-after-rotation-0123456789abcdef")
    await storage.user_tokens(old).put(PORTAL, ANNA, pair(issued_at=NOW - 1000), replaces=None)
    rotated = storage.user_tokens(new)
    with capture_logs() as logged:
        for _ in range(3):
            assert await rotated.get(PORTAL, ANNA) is None
        assert await rotated.due_for_refresh(NOW, 10) == []  # nothing to refresh under it
    assert logged == [
        {
            "event": "oauth.token_unreadable",
            "log_level": "error",
            "portal": PORTAL,
            "user_id": ANNA,
            "reason": "key_changed",
        }
    ]
    assert await rotated.put(PORTAL, ANNA, pair("relinked"), replaces=None)  # links again
    stored = await rotated.get(PORTAL, ANNA)
    assert stored is not None
    assert stored.tokens.access_token.get_secret_value() == "relinked"
    assert await storage.user_tokens(old).get(PORTAL, ANNA) is None  # sealed anew


async def test_the_old_key_restored_reads_the_tokens_again(storage: Storage) -> None:
    await storage.user_tokens(SecretBox(SECRET)).put(PORTAL, ANNA, pair(), replaces=None)
    assert await storage.user_tokens(SecretBox(b"x" * 40)).get(PORTAL, ANNA) is None
    assert await storage.user_tokens(SecretBox(SECRET)).get(PORTAL, ANNA) is not None


async def test_of_two_writers_replacing_one_version_one_wins(tokens: TokenStore) -> None:
    """Refresh tokens may work only once: two refreshes from one stored pair (two workers,
    or two replicas) must not both store theirs; the loser uses the winner's pair."""
    await tokens.put(PORTAL, ANNA, pair(), replaces=None)
    read = await tokens.get(PORTAL, ANNA)
    assert read is not None
    first, second = pair("access-first", "refresh-first"), pair("access-2nd", "refresh-2nd")
    stored = await asyncio.gather(
        tokens.put(PORTAL, ANNA, first, replaces=read.version),
        tokens.put(PORTAL, ANNA, second, replaces=read.version),
    )
    assert sorted(stored) == [False, True]
    now = await tokens.get(PORTAL, ANNA)
    assert now is not None
    assert now.tokens == (first if stored[0] else second)
    assert now.version != read.version


@pytest.mark.parametrize(
    "meanwhile",
    ["refreshed", "linked_again", "dropped", "dropped_and_linked_again"],
)
async def test_a_stale_version_never_replaces_what_is_stored(
    tokens: TokenStore, meanwhile: str
) -> None:
    await tokens.put(PORTAL, ANNA, pair(), replaces=None)
    read = await tokens.get(PORTAL, ANNA)
    assert read is not None
    if meanwhile == "refreshed":
        assert await tokens.put(PORTAL, ANNA, pair("newer"), replaces=read.version)
    if meanwhile.startswith("dropped"):
        assert await tokens.drop(PORTAL, ANNA)
    if meanwhile.endswith("linked_again"):
        assert await tokens.put(PORTAL, ANNA, pair("newer"), replaces=None)
    assert not await tokens.put(PORTAL, ANNA, pair("stale"), replaces=read.version)
    after = await tokens.get(PORTAL, ANNA)
    assert (after and after.tokens.access_token.get_secret_value()) == (
        None if meanwhile == "dropped" else "newer"
    )


async def test_a_version_for_a_user_with_no_tokens_stores_nothing(tokens: TokenStore) -> None:
    assert not await tokens.put(PORTAL, ANNA, pair(), replaces=1)
    assert await tokens.get(PORTAL, ANNA) is None


async def test_dropping_one_user_and_a_whole_portal(tokens: TokenStore) -> None:
    for portal, user in ((PORTAL, ANNA), (PORTAL, BORIS), (OTHER_PORTAL, ANNA)):
        await tokens.put(portal, user, pair(), replaces=None)
    assert await tokens.drop(PORTAL, ANNA)
    assert not await tokens.drop(PORTAL, ANNA)
    assert await tokens.get(PORTAL, ANNA) is None
    assert await tokens.drop_portal(PORTAL) == 1  # Boris
    assert await tokens.drop_portal(PORTAL) == 0
    assert await tokens.get(PORTAL, BORIS) is None
    assert await tokens.get(OTHER_PORTAL, ANNA) is not None


def _refreshed(due: list[StoredTokens]) -> list[tuple[int, float]]:
    return [(row.user_id, row.tokens.refresh_issued_at) for row in due]


@pytest.mark.parametrize(
    ("issued_before", "limit", "due"),
    [
        (NOW, 10, []),
        (NOW + 150, 10, [(ANNA, NOW + 100)]),
        (NOW + 1000, 10, [(ANNA, NOW + 100), (BORIS, NOW + 200), (29, NOW + 300)]),
        (NOW + 1000, 2, [(ANNA, NOW + 100), (BORIS, NOW + 200)]),
    ],
)
async def test_the_oldest_refresh_tokens_are_due_first(
    tokens: TokenStore, issued_before: float, limit: int, due: list[tuple[int, float]]
) -> None:
    for user, issued_at in ((29, NOW + 300), (ANNA, NOW + 100), (BORIS, NOW + 200)):
        await tokens.put(PORTAL, user, pair(issued_at=issued_at), replaces=None)
    assert _refreshed(await tokens.due_for_refresh(issued_before, limit)) == due


async def test_a_changed_row_is_not_due_and_does_not_hide_the_others(
    tokens: TokenStore, path: Path
) -> None:
    for user, issued_at in ((ANNA, NOW + 100), (BORIS, NOW + 200)):
        await tokens.put(PORTAL, user, pair(issued_at=issued_at), replaces=None)
    raw(path, "UPDATE user_tokens SET access_token = x'00' WHERE user_id = ?", ANNA)
    with capture_logs():
        assert _refreshed(await tokens.due_for_refresh(NOW + 1000, 10)) == [(BORIS, NOW + 200)]


# Upgrades.


async def test_a_database_at_the_previous_schema_upgrades_and_keeps_its_rows(
    path: Path,
) -> None:
    path.parent.mkdir(parents=True)
    previous = len(MIGRATIONS) - 1
    with sqlite3.connect(path) as db:
        for number, script in enumerate(MIGRATIONS[:previous], start=1):
            db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
        db.execute("INSERT INTO links (tg_user_id, b24_user_id, linked_at) VALUES (5001, 27, 0)")
        db.execute(
            "INSERT INTO jobs (key, payload, author, session_id, state, due_at, created_at, "
            "updated_at) VALUES ('queued', ?, 'bitrix:27', 494, 'queued', 0, 0, 0)",
            (command().model_copy(update={"key": "queued"}).model_dump_json(),),
        )
    db.close()
    storage = await opened(path)
    try:
        assert await storage.linked_b24_user(5001) == ANNA
        job = await storage.claim(time.time())
        assert job is not None
        assert (job.key, job.incoming.text) == ("queued", command().text)
        tokens = storage.user_tokens(SecretBox(SECRET))
        assert await tokens.put(PORTAL, ANNA, pair(), replaces=None)
        assert await tokens.get(PORTAL, ANNA) is not None
        nonce = await storage.oauth_states().new_state(PORTAL, ANNA, None, TTL, NOW)
        assert await storage.oauth_states().take_state(nonce, NOW) is not None
    finally:
        await storage.close()
    assert raw(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
