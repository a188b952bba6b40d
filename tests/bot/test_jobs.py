"""Nothing lost, nothing doubled, nothing out of order: outages, restarts, a kill -9 in
mid-flight, commands on one session that meet retries."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.bitrix.webhook import INTAKE
from bot.dispatch import Handled
from bot.jobs import JobRunner, RetryRules, session_of
from bot.metrics import Metrics
from bot.models import BitrixRoute, IncomingCommand, Reply, Route
from bot.sandbox.app import EVENTS
from bot.sandbox.portal import Fault, Message, Portal
from bot.state import METRICS
from bot.storage import open_storage
from bot.texts import render
from tests.harness import (
    FAST,
    Service,
    ServiceFactory,
    drained,
    eventually,
    job_rows,
    process_env,
    write_locked,
)

INTERNAL_RU = render("error.internal", "ru")


def votes_of(portal: Portal, session_id: int) -> int:
    """head.vote calls that reached the method for a session (inside batch or not)."""
    return sum(
        1
        for c in portal.calls
        if c.method == "imopenlines.session.head.vote"
        and str(c.params.get("SESSION_ID")) == str(session_id)
    )


async def test_a_portal_that_is_down_then_back_gets_the_vote_later(service: Service) -> None:
    service.portal.faults.append(Fault(method="batch", status=502, times=-1))
    await service.say(27, service.bot_id, "/rate 494 5 Молодец")
    await eventually(
        lambda: (
            any(c.method == "batch" for c in service.portal.calls)
            or service.portal.faults[0].times == -1
        )
    )
    await asyncio.sleep(0.3)  # several attempts fail meanwhile
    assert service.bot_messages() == []
    service.portal.faults.clear()
    reply = await eventually(service.bot_messages)
    assert reply[-1].text.startswith("✅ Сохранено. Сессия 494")
    assert votes_of(service.portal, 494) == 1


async def test_after_a_bounded_time_the_supervisor_is_told_it_failed(
    start_service: ServiceFactory,
) -> None:
    rules = RetryRules(first_wait=0.05, longest_wait=0.1, give_up_after=0.5)
    # Without coalescing: the vote's batch fails, the reply's own call does not.
    service = await start_service(tuning=dataclasses.replace(FAST, jobs=rules, coalesce=False))
    service.portal.faults.append(Fault(method="batch", status=502, times=-1))
    await service.say(27, service.bot_id, "/rate 494 5")
    replies = await eventually(service.bot_messages, within=5)
    assert replies[-1].text == "Битрикс24 не отвечает, оценка не сохранена. Повторите позже."
    assert service.portal.sessions[494].vote_head == 0


@pytest.mark.parametrize(
    ("status", "failures"),
    [
        (502, 1),  # retried inside the REST client: no postponement
        (502, 3),  # every attempt of the first vote fails: it is postponed
        (503, 3),
        (503, 6),  # postponed twice
    ],
)
async def test_commands_on_one_session_take_effect_in_the_order_they_arrived(
    start_service: ServiceFactory, status: int, failures: int
) -> None:
    """The first vote meets a failing portal and waits; the second, sent meanwhile, would
    otherwise be stored first and then be overwritten by the older one."""
    rules = RetryRules(first_wait=0.5, longest_wait=1.0, give_up_after=60.0)
    service = await start_service(
        tuning=dataclasses.replace(FAST, workers=4, coalesce=True, jobs=rules)
    )
    service.portal.faults.append(Fault(method="batch", status=status, times=failures))
    await service.say(27, service.bot_id, "/rate 494 1 OLD")
    await eventually(lambda: not service.portal.faults)  # the first vote met every failure
    await service.say(27, service.bot_id, "/rate 494 5 NEW")
    await eventually(lambda: len(service.bot_messages()) == 2, within=15)
    replies = [m.text.split(":")[0] for m in service.bot_messages()]
    assert replies == ["✅ Сохранено. Сессия 494"] * 2
    session = service.portal.sessions[494]
    assert (session.vote_head, session.comment_head) == (5, "NEW")


async def test_a_redelivery_after_a_restart_is_still_recognised(
    start_service: ServiceFactory,
) -> None:
    first = await start_service()
    portal, events = first.portal, first.events
    chat = portal.private_chat(27, first.bot_id)
    message = portal.post(chat.id, 27, "/rate 494 5", via="user")
    command = next(c for c in portal.commands.values() if c.command == "rate")
    form = events.command_form(message, portal.users[27], chat, [(command, "494 5", "TEXTAREA")])
    assert (await events.post(command.handler, form)).status == 200
    await eventually(first.bot_messages)
    await first.server.close()
    second = await start_service()  # the same database
    assert (
        await events.post(
            command.handler.replace(str(first.server.port), str(second.server.port)), form
        )
    ).status == 200
    await asyncio.sleep(0.3)
    assert votes_of(portal, 494) == 1
    assert len(second.bot_messages()) == 1


async def test_shutdown_lets_running_work_finish_and_keeps_the_rest_for_the_next_start(
    start_service: ServiceFactory,
) -> None:
    first = await start_service(tuning=dataclasses.replace(FAST, workers=1))
    first.portal.faults.append(Fault(method="batch", delay=0.5))
    await first.say(27, first.bot_id, "/rate 494 5")
    await first.say(27, first.bot_id, "/rate 495 1")
    await asyncio.sleep(0.1)  # the worker is inside the first, delayed vote
    await first.server.close()  # grace 2 s: the running job finishes, the queued one waits
    assert first.portal.sessions[494].vote_head == 5
    assert first.portal.sessions[495].vote_head == 4
    second = await start_service()
    await eventually(lambda: second.portal.sessions[495].vote_head == 1)
    assert votes_of(second.portal, 495) == 1


async def test_a_job_running_longer_than_its_lease_stays_with_its_process(
    start_service: ServiceFactory,
) -> None:
    """The heartbeat renews the lease: a second instance on the same database (started by
    mistake) never takes over a job that is still running."""
    service = await start_service(BOT_JOB_LEASE="2")
    service.portal.faults.append(Fault(method="batch", delay=5.0))  # over two leases long
    await service.say(27, service.bot_id, "/rate 494 5")
    database = service.settings.bot_database_url
    await eventually(lambda: [r for r in job_rows(database) if r[1] == "claimed"])
    second = await open_storage(database, session_of=session_of, lease=2.0)
    try:
        async with asyncio.timeout(20):
            while not service.bot_messages():
                assert await second.claim(time.time()) is None
                await asyncio.sleep(0.1)
    finally:
        await second.close()
    assert votes_of(service.portal, 494) == 1
    assert [r[1:] for r in job_rows(database)] == [("done", None, 1)]


async def test_kill_9_in_mid_flight_then_restart_completes_every_command_once(
    sandbox: TestServer, portal: Portal, tmp_path: Path
) -> None:
    """The service runs as a real process; it is killed while its votes hang in the portal."""
    # The killed process's claims are taken over once their lease has passed.
    env = process_env(sandbox, tmp_path, BOT_LOG_LEVEL="warning", BOT_JOB_LEASE="2")
    events = sandbox.app[EVENTS]

    async def start() -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await eventually(lambda: portal.bots and len(portal.commands) == 2, within=20)
        return process

    first = await start()
    portal.faults.append(Fault(method="batch", hang=True, times=-1))
    bot_id = next(iter(portal.bots))
    for session_id in (494, 495, 496):
        [delivery] = await events.send_message(27, bot_id, f"/rate {session_id} 2 Хорошо")
        assert delivery.status == 200  # acknowledged: now it must not be lost
    await asyncio.sleep(0.5)  # the workers are waiting on the hanging portal
    os.kill(first.pid, signal.SIGKILL)
    await first.wait()
    portal.faults.clear()
    second = await start()
    try:
        await eventually(
            lambda: all(portal.sessions[s].vote_head == 2 for s in (494, 495, 496)), within=20
        )

        def bot_messages() -> list[Message]:
            return [m for m in portal.messages.values() if m.author_id == bot_id]

        await eventually(lambda: len(bot_messages()) == 3, within=10)
        await asyncio.sleep(0.5)
        assert sorted(m.text.split(":")[0] for m in bot_messages()) == [
            f"✅ Сохранено. Сессия {s}" for s in (494, 495, 496)
        ]
        assert [votes_of(portal, s) for s in (494, 495, 496)] == [1, 1, 1]
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 20)
    assert second.returncode == 0


@pytest.mark.parametrize(
    ("crashes_in", "outcome", "audit_reply", "sent"),
    [
        # The work never finishes: the internal-error reply is sent and the job ends.
        ("work", "crashed", INTERNAL_RU, [INTERNAL_RU]),
        # The work was done (the vote saved), sending crashes: its outcome stands, and no
        # internal-error reply contradicts it.
        ("send", "saved", "✅ saved", []),
    ],
)
async def test_a_job_that_crashes_on_every_attempt_is_given_up_after_the_bound(
    tmp_path: Path, crashes_in: str, outcome: str, audit_reply: str, sent: list[str]
) -> None:
    """The work and the sending are ports: here ones that raise, as a bug would."""
    storage = await open_storage(f"sqlite:///{tmp_path / 'bot.sqlite3'}", session_of=session_of)
    runs: list[str] = []
    delivered: list[str] = []

    async def execute(incoming: IncomingCommand, may_retry: bool) -> Handled:
        runs.append(incoming.key)
        if crashes_in == "work":
            raise RuntimeError("a bug in the work")
        return Handled(Reply(text="✅ saved"), "saved")

    async def send(_route: Route, reply: Reply, _received_at: float) -> None:
        if crashes_in == "send":
            raise RuntimeError("a bug in sending")
        delivered.append(reply.text)

    metrics = Metrics()
    rules = RetryRules(first_wait=0.01, longest_wait=0.02, crash_attempts=3)
    runner = JobRunner(storage, execute, send, workers=2, rules=rules, metrics=metrics)
    try:
        route = BitrixRoute(dialog_id="27", author_dialog_id="27")
        command = IncomingCommand(
            key="k1",
            source="bitrix",
            author_id=27,
            text="/rate 494 5",
            language="ru",
            received_at=time.time(),
            route=route,
        )
        await storage.enqueue([command], limit=10, user_limit=10)
        runner.wake()
        for _ in range(500):
            if await storage.audit():
                break
            await asyncio.sleep(0.01)
        [entry] = await storage.audit()
        assert (entry.key, entry.outcome, entry.reply) == ("k1", outcome, audit_reply)
        assert delivered == sent
        assert runs == ["k1"] * (3 if crashes_in == "work" else 1)
        assert await storage.unfinished() == 0
        failed = "bot_jobs_failed_total"
        assert metrics.registry.get_sample_value(failed, {"reason": "crashed"}) == 3
        assert metrics.registry.get_sample_value(failed, {"reason": "gave_up"}) == 1
    finally:
        await runner.stop(grace=1)
        await storage.close()


async def test_jobs_the_storage_cannot_read_do_not_stop_the_workers(
    service: Service, http: aiohttp.ClientSession
) -> None:
    """Rows that no longer parse (a downgrade, a hand edit): claiming them fails; every worker
    of the two survives that, and the next command is served."""
    path = service.settings.bot_database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO jobs (key, payload, author, state, due_at, created_at, updated_at) "
            "VALUES (?, '{\"not\": \"a command\"}', 'bitrix:0', 'queued', 0, 0, 0)",
            [(f"poison{n}",) for n in range(3)],
        )
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5")
    assert reply.text.startswith("✅")
    async with http.get(service.server.make_url("/readyz")) as answer:
        assert (await answer.json())["workers"] == "ok"


def crashes(service: Service) -> float:
    failed = service.server.app[METRICS].registry.get_sample_value
    return failed("bot_jobs_failed_total", {"reason": "crashed"}) or 0.0


async def test_a_vote_saved_at_a_late_attempt_is_not_reported_lost_when_storage_then_fails(
    start_service: ServiceFactory,
) -> None:
    """The attack: the portal fails twice (the job is postponed twice), the third attempt
    saves the vote, and then another process holds the database's write lock while the worker
    records the reply, so the job's first crash comes at its third attempt. The supervisor is
    told the vote was saved, never "nothing was saved"."""
    rules = RetryRules(first_wait=0.05, longest_wait=0.1, give_up_after=60.0, crash_attempts=3)
    service = await start_service(tuning=dataclasses.replace(FAST, jobs=rules))
    service.portal.faults += [
        Fault(method="batch", status=502, times=6),  # two attempts of three REST tries each
        Fault(method="batch", delay=1.0),  # the third: time to take the write lock
    ]
    await service.say(27, service.bot_id, "/rate 494 5 Молодец")
    await eventually(lambda: not service.portal.faults, within=20)
    with write_locked(service.settings.bot_database_url):
        await eventually(lambda: crashes(service), within=20)  # recording the reply failed
    await drained(service, within=20)
    assert service.portal.sessions[494].vote_head == 5
    texts = [m.text for m in service.bot_messages()]
    assert INTERNAL_RU not in texts
    assert [t.split(":")[0] for t in texts] == ["✅ Сохранено. Сессия 494"]
    [entry] = await service.server.app[INTAKE].storage.audit()
    assert entry.outcome == "saved"


async def test_a_job_that_waited_out_an_outage_is_retried_after_its_first_crash(
    start_service: ServiceFactory,
) -> None:
    """The attack: the portal fails long enough for the job to be postponed twice, and the
    third attempt cannot record its postponement (the database is write-locked). That is the
    job's first crash; postponements are not crashes, so it is tried again and saved, rather
    than given up with "nothing was saved" once the portal is back."""
    rules = RetryRules(first_wait=0.05, longest_wait=0.1, give_up_after=60.0, crash_attempts=3)
    service = await start_service(tuning=dataclasses.replace(FAST, jobs=rules))
    faults = service.portal.faults
    faults += [
        Fault(method="batch", status=502, times=6),  # two attempts of three REST tries each
        Fault(method="batch", status=502, times=3, delay=0.5),  # the third attempt too
    ]
    await service.say(27, service.bot_id, "/rate 494 5 Молодец")
    await eventually(lambda: len(faults) == 1 and faults[0].times < 3, within=20)
    with write_locked(service.settings.bot_database_url):
        await eventually(lambda: crashes(service), within=20)  # its postponement failed
    await drained(service, within=20)
    assert service.portal.sessions[494].vote_head == 5
    texts = [m.text.split(":")[0] for m in service.bot_messages()]
    assert texts == ["✅ Сохранено. Сессия 494"]


async def test_pruning_goes_on_after_the_database_was_locked_for_a_while(
    start_service: ServiceFactory,
) -> None:
    """The attack: another process holds the write lock longer than the busy timeout while
    the service prunes finished jobs. Pruning must survive that, or de-dup keys pile up
    for good."""
    tuning = dataclasses.replace(FAST, retention=0.0, prune_every=0.1)
    service = await start_service(tuning=tuning)
    database = service.settings.bot_database_url
    with write_locked(database):
        await asyncio.sleep(6.0)  # a prune waits out its 5 s busy timeout and fails
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5")
    assert reply.text.startswith("✅")
    await eventually(lambda: not job_rows(database), within=10)  # the finished job pruned


async def test_a_job_whose_lease_ran_out_while_it_runs_is_not_run_again_alongside(
    start_service: ServiceFactory,
) -> None:
    """The attack: while a vote hangs in the portal, the lease of its job runs out in the
    process that runs it: the wall clock jumps ahead (a suspended VM resumes), or renewals
    fail on a locked database. An idle worker of the same process must not claim the job
    again and run it alongside: one vote, one reply."""
    service = await start_service()
    service.portal.faults.append(Fault(method="batch", delay=3.0))
    await service.say(27, service.bot_id, "/rate 494 5")
    await eventually(lambda: not service.portal.faults)  # the vote hangs in the portal
    path = service.settings.bot_database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:  # the clock an hour ahead: as if every lease ran out
        db.execute("UPDATE jobs SET due_at = due_at - 3600 WHERE state = 'claimed'")
    await drained(service, within=30)
    await asyncio.sleep(0.5)
    assert votes_of(service.portal, 494) == 1
    assert [m.text.split(":")[0] for m in service.bot_messages()] == ["✅ Сохранено. Сессия 494"]


async def test_a_worker_backing_off_after_storage_errors_wakes_for_a_new_command(
    start_service: ServiceFactory,
) -> None:
    """The attack: claiming fails for a while (the database write-locked by another process
    while a job is due), and the worker backs off, up to minutes after a long outage. A
    command accepted afterwards proves the storage works again: it wakes the worker at once
    instead of waiting out the backoff."""
    rules = RetryRules(first_wait=30.0, longest_wait=30.0, give_up_after=60.0)
    service = await start_service(tuning=dataclasses.replace(FAST, workers=1, jobs=rules))
    route = BitrixRoute(dialog_id="27", author_dialog_id="27")
    due = IncomingCommand(
        key="due", source="bitrix", author_id=27, text="/help", received_at=0, route=route
    )
    database = service.settings.bot_database_url
    with sqlite3.connect(database.removeprefix("sqlite:///")) as db:
        db.execute(
            "INSERT INTO jobs (key, payload, author, state, due_at, created_at, updated_at) "
            "VALUES ('due', ?, 'bitrix:27', 'queued', 0, 0, 0)",
            (due.model_dump_json(),),
        )
    with write_locked(database):
        await asyncio.sleep(7.0)  # the worker's claim waits out its busy timeout and fails
    await service.say(27, service.bot_id, "/rate 494 5")
    await eventually(lambda: any(m.text.startswith("✅") for m in service.bot_messages()))


async def test_a_reply_sent_before_the_storage_failed_is_not_sent_again(
    start_service: ServiceFactory,
) -> None:
    """The attack: the reply reaches the portal, then another process holds the database's
    write lock while the worker marks the job done. Running the job again once the storage
    is back would answer the supervisor twice: only the finishing is tried again."""
    service = await start_service(tuning=dataclasses.replace(FAST, coalesce=False))
    service.portal.faults.append(Fault(method="imbot.command.answer", delay=1.0))
    await service.say(27, service.bot_id, "/rate 494 5")
    await eventually(lambda: not service.portal.faults)  # the reply is on its way
    with write_locked(service.settings.bot_database_url):
        await asyncio.sleep(7.0)  # marking the job done waits out its 5 s busy timeout, fails
    await drained(service, within=30)
    await asyncio.sleep(0.5)
    assert [m.text.split(":")[0] for m in service.bot_messages()] == ["✅ Сохранено. Сессия 494"]
    [entry] = await service.server.app[INTAKE].storage.audit()
    assert entry.outcome == "saved"
