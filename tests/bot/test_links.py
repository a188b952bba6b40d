"""Linked accounts (bot/links.py) over the real SQLite storage: one-time codes that expire, are
used once, are stored hashed and cannot be guessed in a flood; one link each way; static links
from TELEGRAM_USER_MAP that only the administrator changes."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.errors import LinkAttemptsExceeded, LinkCodeInvalid, LinkSetByAdmin
from bot.jobs import session_of
from bot.links import (
    ALPHABET,
    CODE_LENGTH,
    CODE_TTL,
    CODES_KEPT,
    FAILURE_WINDOW,
    MAX_FAILURES,
    StoredLinks,
    link_key,
    normalise_code,
)
from bot.storage import Storage, open_storage

KEY = b"a server-side key for the tests"
TG_ANNA, TG_BORIS, TG_STATIC = 5001, 5002, 5003


class Clock:
    """A clock the test moves: the code's expiry and the failure window, without waiting."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    storage = await open_storage(f"sqlite:///{tmp_path / 'bot.sqlite3'}", session_of=session_of)
    yield storage
    await storage.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def links(storage: Storage, clock: Clock) -> StoredLinks:
    return StoredLinks(storage, key=KEY, static={TG_STATIC: 1}, clock=clock)


async def test_a_code_links_the_telegram_user_to_the_bitrix24_user_who_asked(
    links: StoredLinks,
) -> None:
    code = await links.issue(27)
    assert len(code) == CODE_LENGTH
    assert set(code) <= set(ALPHABET)
    assert await links.linked(TG_ANNA) is None
    assert await links.redeem(TG_ANNA, code) == 27
    assert await links.linked(TG_ANNA) == 27


@pytest.mark.parametrize(
    ("typed", "issued"),
    [
        ("abcd2efgh3", "ABCD2EFGH3"),  # any case
        ("ABCD-2EFG H3", "ABCD2EFGH3"),  # groups split by a dash or a space
        ("O0Il1", "00111"),  # the lookalikes read as the digits they resemble
    ],
)
def test_a_code_is_read_as_issued_whatever_the_case_and_lookalikes(
    typed: str, issued: str
) -> None:
    assert normalise_code(typed) == issued


async def test_a_code_typed_in_lower_case_links(links: StoredLinks) -> None:
    code = await links.issue(27)
    assert await links.redeem(TG_ANNA, code.lower()) == 27


async def test_a_code_is_used_once(links: StoredLinks) -> None:
    code = await links.issue(27)
    await links.redeem(TG_ANNA, code)
    with pytest.raises(LinkCodeInvalid):
        await links.redeem(TG_BORIS, code)
    assert await links.linked(TG_BORIS) is None


@pytest.mark.parametrize(("after", "links_"), [(CODE_TTL - 1, True), (CODE_TTL, False)])
async def test_a_code_expires_after_ten_minutes(
    links: StoredLinks, clock: Clock, after: float, links_: bool
) -> None:
    code = await links.issue(27)
    clock.now += after
    if links_:
        assert await links.redeem(TG_ANNA, code) == 27
    else:
        with pytest.raises(LinkCodeInvalid):
            await links.redeem(TG_ANNA, code)
        assert await links.linked(TG_ANNA) is None


@pytest.mark.parametrize("wrong", ["ZZZZZZZZZZ", "short", "[b]x[/b]", "$result[0]", "9" * 64])
async def test_a_wrong_code_links_nothing(links: StoredLinks, wrong: str) -> None:
    await links.issue(27)
    with pytest.raises(LinkCodeInvalid):
        await links.redeem(TG_ANNA, wrong)
    assert await links.linked(TG_ANNA) is None


async def test_a_flood_of_wrong_codes_is_refused_even_the_right_code_until_the_window_passes(
    links: StoredLinks, clock: Clock
) -> None:
    await _fail_until_refused(links, TG_ANNA)
    clock.now += FAILURE_WINDOW / 2
    code = await links.issue(27)
    with pytest.raises(LinkAttemptsExceeded):
        await links.redeem(TG_ANNA, code)
    assert await links.redeem(TG_BORIS, await links.issue(28)) == 28  # others are not held up
    clock.now += FAILURE_WINDOW / 2 + 1
    with pytest.raises(LinkCodeInvalid):  # presented while refused: voided, as the text says
        await links.redeem(TG_ANNA, code)
    assert await links.redeem(TG_ANNA, await links.issue(27)) == 27


async def test_the_count_of_wrong_codes_survives_a_restart(clock: Clock, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'restarted.sqlite3'}"
    for run in ("before", "after"):
        storage = await open_storage(url, session_of=session_of)
        try:
            links = StoredLinks(storage, key=KEY, static={}, clock=clock)
            if run == "before":
                await _fail_until_refused(links, TG_ANNA)
            else:
                with pytest.raises(LinkAttemptsExceeded):
                    await links.redeem(TG_ANNA, await links.issue(27))
        finally:
            await storage.close()


async def test_wrong_codes_from_many_accounts_are_forgotten_once_their_window_passed(
    links: StoredLinks, clock: Clock, tmp_path: Path
) -> None:
    for account in range(1000, 1200):
        with pytest.raises(LinkCodeInvalid):
            await links.redeem(account, "ZZZZZZZZZZ")
    clock.now += FAILURE_WINDOW + 1
    with pytest.raises(LinkCodeInvalid):
        await links.redeem(TG_ANNA, "ZZZZZZZZZZ")
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
        assert db.execute("SELECT tg_user_id FROM link_failures").fetchall() == [(TG_ANNA,)]


async def test_linking_forgets_the_wrong_codes_typed_before(links: StoredLinks) -> None:
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(LinkCodeInvalid):
            await links.redeem(TG_ANNA, "ZZZZZZZZZZ")
    assert await links.redeem(TG_ANNA, await links.issue(27)) == 27
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(LinkCodeInvalid):
            await links.redeem(TG_ANNA, "ZZZZZZZZZZ")
    assert await links.redeem(TG_ANNA, await links.issue(28)) == 28


async def _fail_until_refused(links: StoredLinks, tg_user_id: int) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(LinkCodeInvalid):
            await links.redeem(tg_user_id, "ZZZZZZZZZZ")


async def test_a_user_holds_a_bounded_number_of_codes_the_oldest_void(
    links: StoredLinks, clock: Clock
) -> None:
    codes = []
    for _ in range(CODES_KEPT + 1):
        codes.append(await links.issue(27))
        clock.now += 1
    with pytest.raises(LinkCodeInvalid):
        await links.redeem(TG_ANNA, codes[0])
    assert await links.redeem(TG_ANNA, codes[-1]) == 27


async def test_codes_are_stored_only_as_keyed_hashes(
    links: StoredLinks, storage: Storage, tmp_path: Path
) -> None:
    code = await links.issue(27)
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
        rows = db.execute("SELECT digest, b24_user_id FROM link_codes").fetchall()
    assert len(rows) == 1
    assert code not in rows[0][0]
    assert rows[0][1] == 27
    # Without the server-side key the stored digest redeems nothing.
    other = StoredLinks(storage, key=b"another key", static={})
    with pytest.raises(LinkCodeInvalid):
        await other.redeem(TG_ANNA, code)


@pytest.mark.parametrize(
    ("first", "second", "linked_after"),
    [
        # The same Bitrix24 user links another Telegram account: the first one is unlinked.
        ((TG_ANNA, 27), (TG_BORIS, 27), {TG_ANNA: None, TG_BORIS: 27}),
        # The same Telegram account links another Bitrix24 user: it acts as that one only.
        ((TG_ANNA, 27), (TG_ANNA, 28), {TG_ANNA: 28, TG_BORIS: None}),
    ],
)
async def test_one_link_each_way(
    links: StoredLinks,
    first: tuple[int, int],
    second: tuple[int, int],
    linked_after: dict[int, int | None],
) -> None:
    for tg_user, b24_user in (first, second):
        await links.redeem(tg_user, await links.issue(b24_user))
    assert {tg: await links.linked(tg) for tg in linked_after} == linked_after


@pytest.mark.parametrize("side", ["telegram", "bitrix"])
async def test_unlink_from_either_side(links: StoredLinks, side: str) -> None:
    await links.redeem(TG_ANNA, await links.issue(27))
    if side == "telegram":
        assert await links.unlink_telegram(TG_ANNA) is True
        assert await links.unlink_telegram(TG_ANNA) is False
    else:
        assert await links.unlink_bitrix(27) is True
        assert await links.unlink_bitrix(27) is False
    assert await links.linked(TG_ANNA) is None


async def test_static_links_count_as_links_and_only_the_administrator_changes_them(
    links: StoredLinks,
) -> None:
    assert await links.linked(TG_STATIC) == 1
    with pytest.raises(LinkSetByAdmin):
        await links.unlink_telegram(TG_STATIC)
    with pytest.raises(LinkSetByAdmin):
        await links.unlink_bitrix(1)
    code = await links.issue(27)
    with pytest.raises(LinkSetByAdmin):
        await links.redeem(TG_STATIC, code)
    assert await links.linked(TG_STATIC) == 1
    with pytest.raises(LinkCodeInvalid):  # presented and refused: voided
        await links.redeem(TG_ANNA, code)


def test_the_hashing_key_is_derived_from_the_secret_and_is_not_the_secret() -> None:
    token = "123456:ABC-the-bot-token"
    assert link_key(token) == link_key(token)
    assert link_key(token) != link_key(token + "x")
    assert token.encode() not in link_key(token)
