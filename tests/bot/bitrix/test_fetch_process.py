"""Fetch mode as an operator runs it: `python -m bot` as its own process against the sandbox,
stopped, killed and started again (issue 9, "Done when")."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from pathlib import Path

from aiohttp.test_utils import TestServer

from bot.sandbox.app import EVENTS
from bot.sandbox.portal import Fault, Portal
from tests.harness import (
    eventually,
    free_port,
    job_rows,
    process_env,
    webhook_url,
    write_locked,
)

VOTE = "imopenlines.session.head.vote"


async def start_bot(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", env=env, cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def stop_bot(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode in (0, -signal.SIGKILL), stderr.decode()


def fetch_bot(portal: Portal) -> int | None:
    """Our bot once it is registered in fetch mode with both commands."""
    for bot in portal.bots.values():
        commands = [c for c in portal.commands.values() if c.bot_id == bot.id]
        if bot.code == "rating_bot" and bot.event_mode == "fetch" and len(commands) == 2:
            return bot.id
    return None


def answers(portal: Portal, bot_id: int) -> list[str]:
    return [m.text for m in portal.messages.values() if m.author_id == bot_id]


def votes(portal: Portal) -> int:
    return sum(1 for call in portal.calls if call.method == VOTE)


def rows(database_url: str) -> list[tuple[str, str, str | None, int]]:
    """The jobs, or none while the service has not created its database yet."""
    try:
        return job_rows(database_url)
    except sqlite3.Error:
        return []


async def test_with_only_the_webhook_and_the_supervisors_set_commands_are_saved_and_answered(
    sandbox: TestServer, portal: Portal, tmp_path: Path
) -> None:
    """No public URL, no event mode, no database path: the defaults are the quick set-up.
    BOT_PORT only keeps parallel test runs off each other's port 8080."""
    env = {
        "PYTHONIOENCODING": "utf-8",
        "B24_WEBHOOK_URL": webhook_url(sandbox),
        "B24_SUPERVISOR_IDS": "1,27",
        "BOT_PORT": str(free_port()),
    }
    first = await start_bot(env, tmp_path)
    try:
        bot_id = await eventually(lambda: fetch_bot(portal), within=20)
        await sandbox.app[EVENTS].send_message(27, bot_id, "/rate 494 5 Молодец")
        await eventually(lambda: answers(portal, bot_id), within=15)
    finally:
        await stop_bot(first)
    assert answers(portal, bot_id) == [
        "✅ Сохранено. Сессия 494: ★★★★★ 5/5, комментарий «Молодец»."
    ]
    # Typed while the service is stopped: the portal keeps them.
    for session, rating in [(494, 4), (495, 1), (496, 3)]:
        await sandbox.app[EVENTS].send_message(1, bot_id, f"/rate {session} {rating} Ночью")
    second = await start_bot(env, tmp_path)
    try:
        await eventually(lambda: len(answers(portal, bot_id)) == 4, within=20)
        await eventually(lambda: not portal.queue_of(bot_id).events, within=10)
    finally:
        await stop_bot(second)
    assert [portal.sessions[s].vote_head for s in (494, 495, 496)] == [4, 1, 3]
    assert votes(portal) == 4
    assert (tmp_path / "data" / "bot.sqlite3").is_file()  # BOT_DATABASE_URL's default


async def test_killed_after_storing_before_acknowledging_each_vote_is_cast_once(
    sandbox: TestServer, portal: Portal, tmp_path: Path
) -> None:
    env = process_env(sandbox, tmp_path, B24_EVENT_MODE="fetch", BOT_JOB_LEASE="2")
    database = env["BOT_DATABASE_URL"]
    first = await start_bot(env, tmp_path)
    try:
        bot_id = await eventually(lambda: fetch_bot(portal), within=20)
        await sandbox.app[EVENTS].send_message(27, bot_id, "/rate 494 5 Один раз")
        await eventually(lambda: rows(database), within=15)  # stored...
        # ...and from now on never acknowledged: every later Event.get fails.
        get = Fault(method="imbot.v2.event.get", times=-1, inside_batch=True)
        portal.faults.append(get)
        await eventually(lambda: [r[1] for r in rows(database)] == ["done"], within=15)
        first.kill()
    finally:
        await stop_bot(first)
    assert len(portal.queue_of(bot_id).events) == 1  # fetched, stored, run, not acknowledged
    portal.faults.clear()
    second = await start_bot(env, tmp_path)
    try:
        # Fetched again and acknowledged: by then its de-dup key was recognised.
        await eventually(lambda: not portal.queue_of(bot_id).events, within=20)
    finally:
        await stop_bot(second)
    assert [r[1] for r in rows(database)] == ["done"]
    assert votes(portal) == 1
    assert len(answers(portal, bot_id)) == 1


async def test_sigterm_while_a_page_waits_on_a_locked_database_acknowledges_nothing(
    sandbox: TestServer, portal: Portal, tmp_path: Path
) -> None:
    """The attack: SIGTERM while the poller stores a page and another process (a backup, a
    hand edit) holds the database's write lock. The stop keeps its bound; the portal keeps
    every event of the page; the next start saves each vote once."""
    env = process_env(sandbox, tmp_path, B24_EVENT_MODE="fetch", BOT_SHUTDOWN_TIMEOUT="3")
    # The consumer lease left behind (the database locked) runs out within 9 s, not 30; it
    # is renewed every 3 s, while a poll goes every 0.2 s and finds the page well before.
    env |= {"BOT_JOB_LEASE": "9", "B24_RATE_LIMIT": "20"}
    env |= {"BOT_LOG_FORMAT": "json"}
    database = env["BOT_DATABASE_URL"]
    first = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        bot_id = await eventually(lambda: fetch_bot(portal), within=20)
        polled = await eventually(lambda: _fetched_since(portal, 0), within=15)  # consuming
        with write_locked(database):
            for session in (494, 495, 496):
                await sandbox.app[EVENTS].send_message(27, bot_id, f"/rate {session} 5")
            await eventually(lambda: _fetched_since(portal, polled), within=15)
            await asyncio.sleep(0.3)  # the page is on its way into the locked database
            first.send_signal(signal.SIGTERM)
            stdout, stderr = await asyncio.wait_for(first.communicate(), 60)
    finally:
        await stop_bot(first)
    assert first.returncode == 0, stderr.decode()
    assert "Traceback" not in stderr.decode()  # no database call outlives the event loop
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    assert "service.stop_overran" not in [line["event"] for line in lines]
    assert "service.stopped" in [line["event"] for line in lines]
    assert len(portal.queue_of(bot_id).events) == 3  # nothing acknowledged
    second = await start_bot(env, tmp_path)
    try:
        await eventually(lambda: len(answers(portal, bot_id)) == 3, within=30)
        await eventually(lambda: not portal.queue_of(bot_id).events, within=10)
    finally:
        await stop_bot(second)
    assert votes(portal) == 3


def _fetched_since(portal: Portal, start: int) -> int:
    """How many calls the portal has seen, once one after `start` was an Event.get (whose
    page holds every event typed before it); 0 until then."""
    calls = portal.calls
    fetched = any(call.method == "imbot.v2.event.get" for call in calls[start:])
    return len(calls) if fetched else 0
