"""The vote feed (handlers/feed.py) through the real job runner, storage and dispatch against
the sandbox portal: every saved vote, from Bitrix24 or Telegram, is posted to the feed chat
exactly once; nothing else is; and the audit shows who acted as whom."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.audit import write_audit
from bot.bitrix.client import BitrixClient
from bot.dispatch import Handled, run_command
from bot.jobs import NOT_KEPT_IN_AUDIT, JobRunner, RetryRules
from bot.metrics import Metrics
from bot.models import BitrixRoute, IncomingCommand, Reply, TelegramRoute
from bot.routing import ReplyRouter
from bot.sandbox.portal import Portal
from bot.storage import AuditEntry, Storage
from bot.texts import render
from handlers.feed import FEED_OUTCOME
from tests.harness import eventually
from tests.linked import (
    CODE,
    FEED_CHAT,
    TG_GROUP,
    from_bitrix,
    from_telegram,
    linked_storage,
    services,
)

RULES = RetryRules(first_wait=0.01, longest_wait=0.02, crash_attempts=3)


@dataclass
class Sent:
    """The replies each transport's adapter was handed; `fail_bitrix` crashes that many."""

    bitrix: list[tuple[BitrixRoute, str]] = field(default_factory=list)
    telegram: list[tuple[TelegramRoute, str]] = field(default_factory=list)
    fail_bitrix: int = 0

    async def to_bitrix(self, route: BitrixRoute, reply: Reply, _at: float) -> None:
        if self.fail_bitrix:
            self.fail_bitrix -= 1
            raise RuntimeError("the process died while sending")
        self.bitrix.append((route, reply.text))

    async def to_telegram(self, route: TelegramRoute, reply: Reply, _at: float) -> None:
        self.telegram.append((route, reply.text))

    def feed(self) -> list[str]:
        return [text for route, text in self.telegram if route.chat_id == FEED_CHAT]


@dataclass
class Core:
    storage: Storage
    sent: Sent
    runner: JobRunner

    async def run(self, *commands: IncomingCommand) -> list[AuditEntry]:
        """Queue the commands; the audit once every job (feed lines included) is done."""
        await self.storage.enqueue(commands, limit=100, user_limit=100)
        self.runner.wake()

        async def done() -> list[AuditEntry] | None:
            return await self.storage.audit() if await self.storage.unfinished() == 0 else None

        for _ in range(500):
            entries = await done()
            if entries and len(entries) >= len(commands):
                return entries
            await asyncio.sleep(0.01)
        raise AssertionError("the jobs did not finish")


@pytest.fixture
async def core(make_client: Callable[..., BitrixClient], tmp_path: Path) -> AsyncIterator[Core]:
    storage, links = await linked_storage(tmp_path)
    ready = services(make_client, links, feed_chat_id=FEED_CHAT)

    async def execute(incoming: IncomingCommand, may_retry: bool) -> Handled:
        return await run_command(incoming, ready, may_retry=may_retry)

    sent = Sent()
    router = ReplyRouter(sent.to_bitrix, sent.to_telegram)
    runner = JobRunner(storage, execute, router.send, workers=2, rules=RULES, metrics=Metrics())
    yield Core(storage, sent, runner)
    await runner.stop(grace=1)
    await storage.close()


def feed_line(source: str, comment: str) -> str:
    return render(
        "feed.vote",
        "en",
        user_id=27,
        source=render(f"feed.source.{source}", "en"),
        session=494,
        rating=render("rate.stars", "en", stars="★★★★★", value=5),
        comment=render("rate.comment", "en", comment=comment),
    )


@pytest.mark.parametrize(
    ("command", "source"),
    [
        (from_bitrix("/rate 494 5 Молодец"), "bitrix"),
        (from_telegram("/rate 494 5 Молодец", b24_user=27), "telegram"),
    ],
)
async def test_a_saved_vote_is_posted_to_the_feed_once(
    core: Core, command: IncomingCommand, source: str
) -> None:
    await core.run(command)
    assert core.sent.feed() == [feed_line(source, "Молодец")]


@pytest.mark.parametrize(
    "command",
    [
        from_bitrix("/rate 999 5"),  # no such session
        from_bitrix("/rate 494 7"),  # a parse error
        from_bitrix("/rate 494 5", user=28),  # not a supervisor
        from_telegram("/rate 494 5"),  # not linked
        from_bitrix("/rate 494"),  # the keyboard, no vote yet
    ],
)
async def test_nothing_but_a_saved_vote_reaches_the_feed(
    core: Core, command: IncomingCommand
) -> None:
    [entry] = await core.run(command)
    assert entry.outcome != "saved"
    assert core.sent.feed() == []


async def test_a_vote_bitrix24_refuses_posts_nothing(core: Core, portal: Portal) -> None:
    portal.can_use_vote_head = False  # a plan without rating by a supervisor
    [entry] = await core.run(from_bitrix("/rate 494 5 Молодец"))
    assert entry.outcome in {"refused", "not_allowed", "not_saved"}
    assert core.sent.feed() == []


async def test_a_crash_between_the_decision_and_the_end_of_the_job_posts_once(
    core: Core, portal: Portal
) -> None:
    """Sending the vote's reply crashes (the process dying there): the job runs again with its
    decided reply only, so the vote is not stored again and its feed line is not queued
    again."""
    core.sent.fail_bitrix = 1
    await core.run(from_bitrix("/rate 494 5 Молодец"))
    await eventually(lambda: core.sent.bitrix)
    assert core.sent.feed() == [feed_line("bitrix", "Молодец")]
    votes = [c for c in portal.calls if c.method == "imopenlines.session.head.vote"]
    assert len(votes) == 1


async def test_the_comment_in_the_feed_is_data_never_markup(core: Core) -> None:
    await core.run(from_telegram("/rate 494 5 [b]Молодец[/b] [url=http://x]y[/url]", b24_user=27))
    [line] = core.sent.feed()
    assert "[b]" not in line
    assert "[url=" not in line


async def test_the_audit_records_the_telegram_identity_and_the_linked_bitrix24_user(
    core: Core,
) -> None:
    entries = await core.run(
        from_telegram("/rate 494 5 Молодец", tg_user=5001, b24_user=27),
        from_bitrix("/help", user=28),
    )
    rows = {(e.source, e.user_id, e.b24_user_id, e.outcome) for e in entries}
    assert rows == {
        ("telegram", 5001, 27, "saved"),
        ("telegram", 5001, 27, FEED_OUTCOME),  # the vote's feed line
        ("bitrix", 28, None, "help"),  # a Bitrix24 row as before
    }
    out = io.StringIO()
    write_audit(entries, csv_path="-", out=out)
    assert "telegram,5001,27,rate,494,5,saved" in out.getvalue()
    assert any(route.chat_id == TG_GROUP for route, _ in core.sent.telegram)


async def test_a_link_code_is_sent_but_kept_neither_in_the_audit_nor_in_the_finished_job(
    core: Core, tmp_path: Path
) -> None:
    [entry] = await core.run(from_bitrix("/link"))
    [(_, text)] = core.sent.bitrix
    code = CODE.search(text)
    assert code is not None
    assert (entry.outcome, entry.reply) == ("link_code", NOT_KEPT_IN_AUDIT)
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
        dump = "\n".join(db.iterdump())
    assert code.group(1) not in dump


async def test_a_code_sent_back_from_telegram_is_not_kept_in_the_audit(core: Core) -> None:
    await core.run(from_bitrix("/link"))
    [(_, text)] = core.sent.bitrix
    code = CODE.search(text)
    assert code is not None
    # Written in the group by mistake: refused, and the text is not kept.
    entries = await core.run(from_telegram(f"/start {code.group(1)}", key="tg:2:0"))
    [entry] = [e for e in entries if e.source == "telegram"]
    assert entry.text == NOT_KEPT_IN_AUDIT
    assert all(code.group(1) not in (e.text or "") for e in entries)


async def test_a_feed_line_queued_before_telegram_was_turned_off_ends_without_crashing(
    make_client: Callable[..., BitrixClient], tmp_path: Path
) -> None:
    """TELEGRAM_BOT_TOKEN removed between restarts: its queued replies end (not delivered)
    at once, not after crash retries with stack traces."""
    storage, links = await linked_storage(tmp_path)
    ready = services(make_client, links, feed_chat_id=FEED_CHAT)

    async def execute(incoming: IncomingCommand, may_retry: bool) -> Handled:
        return await run_command(incoming, ready, may_retry=may_retry)

    sent, metrics = Sent(), Metrics()
    runner = JobRunner(
        storage,
        execute,
        ReplyRouter(sent.to_bitrix, None).send,
        workers=2,
        rules=RULES,
        metrics=metrics,
    )
    try:
        entries = await Core(storage, sent, runner).run(from_bitrix("/rate 494 5 Молодец"))
        await eventually(lambda: sent.bitrix)
    finally:
        await runner.stop(grace=1)
        await storage.close()
    assert sorted(e.outcome for e in entries) == [FEED_OUTCOME, "saved"]
    count = metrics.registry.get_sample_value
    assert count("bot_jobs_failed_total", {"reason": "crashed"}) is None
    assert count("bot_jobs_failed_total", {"reason": "reply"}) == 1
