"""Durable jobs: every acknowledged command is in storage before the event is answered, and
workers claim, run and finish it, so a restart, a crash or a portal outage loses none.

A job runs in two steps, each committed: the work (parse, authorise, vote, read back) ends in a
decided reply; sending that reply ends the job. A job interrupted by a crash is claimed again
once its lease has passed: a claimed job is this process's for a lease that a heartbeat renews
while the process lives (bot/storage/sqlite.py). A vote run twice stores the same values, and
a decided reply is not redone.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from tenacity import AsyncRetrying, stop_after_attempt

from bot.dispatch import Handled, RetryLater, SendReply, command_fields
from bot.errors import BitrixError, TelegramApiError
from bot.metrics import Metrics
from bot.models import IncomingCommand, Reply
from bot.routing import TransportDisabled
from bot.storage import AuditEntry, Job, Storage
from bot.texts import render
from bot.usage import counting_rest_requests

log = structlog.get_logger(__name__)

NOT_KEPT_IN_AUDIT = "[a one-time link code: not kept]"  # a secret reply's audit text

Execute = Callable[[IncomingCommand, bool], Awaitable[Handled]]


def session_of(incoming: IncomingCommand) -> int | None:
    """The session a command acts on: commands on one session take effect in arrival order."""
    session: int | None = command_fields(incoming)["session_id"]
    return session


def _audit_text(incoming: IncomingCommand, command: str | None) -> str:
    """The command's text for the audit: a Telegram `/link <code>` or `/start <code>` holds a
    link code, a secret until used, which is not kept."""
    return (
        NOT_KEPT_IN_AUDIT if incoming.source == "telegram" and command == "link" else incoming.text
    )


@dataclass(frozen=True)
class RetryRules:
    """How long a job keeps trying while the portal is down, and how often."""

    first_wait: float = 2.0
    longest_wait: float = 300.0
    give_up_after: float = 1800.0  # then the supervisor is told it failed and why
    # A job whose run crashed (a bug, storage failing) is tried again; its crash number
    # `crash_attempts` ends it (postponements while the portal was down are not counted).
    crash_attempts: int = 3

    def wait(self, attempts: int) -> float:
        base: float = min(self.first_wait * 2.0 ** max(attempts - 1, 0), self.longest_wait)
        return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not secrecy


@dataclass
class _Attempt:
    """How far one run of a job got: its reply once decided (even when recording it failed),
    and whether sending that reply began. A crash is judged by this, not by the claim."""

    job: Job
    reply: Reply | None
    outcome: str
    sending: bool = False


class JobRunner:
    """A fixed number of tracked workers over the job storage; stopped with a grace period."""

    def __init__(
        self,
        storage: Storage,
        execute: Execute,
        send: SendReply,
        *,
        workers: int,
        rules: RetryRules,
        metrics: Metrics,
    ) -> None:
        self._metrics = metrics
        metrics.jobs_in_flight.set_function(lambda: self._busy)
        self._storage = storage
        self._execute = execute
        self._send = send
        self._rules = rules
        self._wake = asyncio.Event()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.accepting = True
        self._running: set[str] = set()  # the keys of the jobs the workers are on
        self._tasks = [
            asyncio.create_task(self._loop(), name=f"worker-{n}") for n in range(workers)
        ]
        self._heartbeat = asyncio.create_task(self._renew_leases(), name="lease-heartbeat")

    def wake(self) -> None:
        """New jobs were committed: let an idle worker look now rather than on its next poll."""
        self._wake.set()

    async def _loop(self) -> None:
        failures = 0  # storage failures in a row: the worker backs off, and goes on
        while self.accepting:
            try:
                job = await self._storage.claim(time.time())
            except Exception:
                failures += 1
                log.exception("job.claim_failed", failures=failures)
                # A command committed meanwhile shows the storage works again: wake for it.
                await self._rest(self._rules.wait(failures))
                continue
            failures = 0
            if job is None:
                await self._rest(1.0)
                continue
            if job.key in self._running:
                # Its lease ran out while another worker here runs it (the clock jumped, or
                # renewals failed): the claim is this process's again, and that worker's.
                log.warning("job.lease_ran_out_while_running", key=job.key)
                continue
            self._busy += 1
            self._running.add(job.key)
            self._idle.clear()
            attempt = _Attempt(job, job.reply, job.outcome or "")
            try:
                await self._run(attempt)
            except asyncio.CancelledError:
                # Stopped at the shutdown bound: the job goes back to the queue, due at once,
                # for the next start (a vote run twice stores the same values). The storage's
                # close puts it back, with every other claim of this instance, in one write
                # bounded in time: a write per job could each wait out a locked database.
                log.info("job.cut_at_shutdown", key=job.key)
                raise
            except Exception:  # the steps map their own errors; this is the last guard
                log.exception("job.crashed", key=job.key, attempt=job.attempts)
                await self._after_crash(attempt)
            finally:
                self._busy -= 1
                self._running.discard(job.key)
                if self._busy == 0:
                    self._idle.set()

    async def _rest(self, seconds: float) -> None:
        """Wait `seconds`, or until new jobs are committed (`wake`)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _after_crash(self, attempt: _Attempt) -> None:
        """Try a crashed job again later, or after `crash_attempts` give it up with a reply;
        if even that fails (storage down), the job stays claimed until its lease runs out, and
        is then due again."""
        job = attempt.job
        self._metrics.jobs_failed.labels(reason="crashed").inc()
        try:
            if job.crashes + 1 < self._rules.crash_attempts:
                wait = self._rules.wait(job.crashes + 1)
                await self._storage.postpone(
                    job.key, until=time.time() + wait, error="crashed", crashed=True
                )
            else:
                await self._give_up(attempt)
        except Exception:
            log.exception("job.crash_not_recorded", key=job.key)
            await asyncio.sleep(self._rules.wait(job.crashes + 1))

    async def _give_up(self, attempt: _Attempt) -> None:
        """End a job that keeps crashing. Its work undone: the internal-error reply, outcome
        `crashed`. Its reply decided, in this run or an earlier one (the vote was saved): that
        reply and outcome stand, never an internal-error reply about a vote that was saved;
        it is sent unless this run already began sending it, since sending may be what fails."""
        job = attempt.job
        self._metrics.jobs_failed.labels(reason="gave_up").inc()
        started = time.monotonic()
        reply, outcome = attempt.reply, attempt.outcome
        if reply is None:
            reply, outcome = Reply(text=render("error.internal", job.incoming.language)), "crashed"
        log.error("job.given_up", key=job.key, outcome=outcome, attempts=job.attempts)
        delivered = False
        with counting_rest_requests() as requests:
            if not attempt.sending:
                try:
                    await self._send(job.incoming.route, reply, job.incoming.received_at)
                    delivered = True
                except Exception:
                    log.exception("reply.failed", key=job.key)
        await self._finish(
            job, reply, outcome, delivered=delivered, requests=requests[0], started=started
        )

    async def _renew_leases(self) -> None:
        """Renew the lease of every job a worker is on three times per lease: a lease runs
        out only when this process is gone (or stalled for two thirds of a lease), or when
        it left a job claimed (recording a crash failed), which is then due again."""
        while True:
            await asyncio.sleep(self._storage.lease / 3)
            try:
                await self._storage.renew(list(self._running), time.time())
            except Exception:  # a passing storage failure: the next beat tries again
                log.exception("jobs.lease_renewal_failed")

    async def _run(self, attempt: _Attempt) -> None:
        job = attempt.job
        started = time.monotonic()
        may_retry = time.time() - job.created_at < self._rules.give_up_after
        with counting_rest_requests() as requests:
            reply, outcome = attempt.reply, attempt.outcome
            if reply is None:
                try:
                    handled = await self._execute(job.incoming, may_retry)
                except RetryLater as later:
                    await self._postpone(job, later.error)
                    return
                reply, outcome = handled.reply, handled.outcome
                attempt.reply, attempt.outcome = reply, outcome
                await self._storage.decide(job.key, reply, outcome, handled.follow_ups)
                if handled.follow_ups:
                    self.wake()  # a vote's feed line is queued: sent by another worker
            delivered = True
            attempt.sending = True
            try:
                await self._send(job.incoming.route, reply, job.incoming.received_at)
            except (BitrixError, TelegramApiError) as error:
                if error.retryable and may_retry:
                    await self._postpone(job, error)
                    return
                delivered = False
                log.warning("reply.failed", key=job.key, code=error.code, method=error.method)
            except TransportDisabled:  # queued before its transport was turned off: no retry
                delivered = False
        await self._finish(
            job, reply, outcome, delivered=delivered, requests=requests[0], started=started
        )

    async def _postpone(self, job: Job, error: BitrixError | TelegramApiError) -> None:
        wait = self._rules.wait(job.attempts)
        if isinstance(error, TelegramApiError) and error.retry_after is not None:
            # Telegram's 429 says how long to wait: that (spread a little, so the replies held
            # together do not all ask at once), not the growing wait of an outage, which would
            # keep a reply back for minutes after a long storm cleared; and never beyond the
            # longest wait, whatever a misbehaving server asks.
            spread = random.uniform(1.0, 1.1)  # noqa: S311 - jitter, not secrecy
            asked = max(error.retry_after, self._rules.first_wait)
            wait = min(asked * spread, self._rules.longest_wait)
        self._metrics.jobs_postponed.inc()
        await self._storage.postpone(job.key, until=time.time() + wait, error=error.code)
        log.warning(
            "command.postponed",
            key=job.key,
            code=error.code,
            attempt=job.attempts,
            retry_in_s=round(wait, 1),
        )

    async def _finish(
        self,
        job: Job,
        reply: Reply,
        outcome: str,
        *,
        delivered: bool,
        requests: int,
        started: float,
    ) -> None:
        incoming = job.incoming
        fields = command_fields(incoming)
        entry = AuditEntry(
            at=time.time(),
            key=job.key,
            source=incoming.source,
            user_id=incoming.author_id,
            b24_user_id=incoming.b24_user_id if incoming.source == "telegram" else None,
            text=_audit_text(incoming, fields["command"]),
            outcome=outcome,
            reply=NOT_KEPT_IN_AUDIT if reply.secret else reply.text,
            acted_as=reply.acted_as,
            **fields,
        )
        await self._store_finish(job.key, entry)
        self._metrics.command_latency.observe(max(entry.at - incoming.received_at, 0.0))
        if outcome.startswith("bitrix_error") or not delivered:
            self._metrics.jobs_failed.labels(reason="portal" if delivered else "reply").inc()
        log.info(
            "command.handled",
            **fields,
            outcome=outcome,
            source=incoming.source,
            user_id=incoming.author_id,
            key=job.key,
            attempts=job.attempts,
            delivered=delivered,
            rest_requests=requests,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )

    async def _store_finish(self, key: str, entry: AuditEntry) -> None:
        """Mark a job done. Its reply is out by now, and running the job again would answer
        twice: a failing storage is tried again here first, `crash_attempts` times in all."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._rules.crash_attempts),
            wait=lambda state: self._rules.wait(state.attempt_number),
            before_sleep=lambda state: log.warning(
                "job.finish_failed",
                key=key,
                tries=state.attempt_number,
                exc_info=state.outcome.exception() if state.outcome else None,
            ),
            reraise=True,
        )
        await retrying(self._storage.finish, key, entry)

    def alive(self) -> bool:
        """Every worker, and the heartbeat that keeps their leases, is still running."""
        return all(not task.done() for task in [*self._tasks, self._heartbeat])

    async def stop(self, grace: float) -> None:
        """Refuse new work; let running jobs finish within `grace` seconds, then cancel them
        (their portal calls with them) and put them back in the queue; queued ones wait in
        storage for the next start."""
        self.accepting = False
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        for task in [*self._tasks, self._heartbeat]:
            task.cancel()
        await asyncio.gather(*self._tasks, self._heartbeat, return_exceptions=True)
