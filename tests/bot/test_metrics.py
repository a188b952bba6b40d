"""/readyz and /metrics, read over HTTP as a load balancer and Prometheus read them."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from bot.app import create_app
from bot.bitrix.registration import handler_url
from bot.config import Settings
from bot.sandbox.portal import Fault
from bot.state import METRICS
from tests.harness import Service, eventually, write_locked


async def scrape(
    http: aiohttp.ClientSession, service: Service
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with http.get(service.server.make_url("/metrics")) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        text = await answer.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def readiness(
    http: aiohttp.ClientSession, service: Service
) -> tuple[int, dict[str, object]]:
    async with http.get(service.server.make_url("/readyz")) as answer:
        return answer.status, await answer.json()


async def test_readyz_with_nothing_configured_says_what_is_missing(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    """`make run` with no settings used to answer {"ready": true} while it could do nothing:
    it serves only the probes, with no portal, no database and no Telegram."""
    client = await aiohttp_client(create_app(settings))
    answer = await client.get("/readyz")
    body = await answer.json()
    assert (answer.status, body["ready"]) == (503, False)
    assert body["portal"].startswith("not configured: set B24_WEBHOOK_URL")
    assert "imbot, imopenlines, im" in body["portal"]


async def test_readyz_reports_storage_portal_workers_and_senders(
    service: Service, http: aiohttp.ClientSession
) -> None:
    assert await readiness(http, service) == (
        200,
        {"ready": True, "storage": "ok", "portal": "ok", "workers": "ok", "senders": "ok"},
    )
    service.portal.faults.append(Fault(status=502, times=-1))
    await service.say(27, service.bot_id, "/rate 494 5")
    metrics = service.server.app[METRICS]
    await eventually(lambda: not metrics.portal_reachable)
    status, body = await readiness(http, service)
    assert (status, body["ready"], body["portal"]) == (503, False, "unreachable")
    service.portal.faults.clear()
    await eventually(service.bot_messages)
    assert (await readiness(http, service))[0] == 200


async def test_readyz_says_storage_is_failing_while_it_cannot_take_a_write(
    service: Service, http: aiohttp.ClientSession
) -> None:
    """The attack: another process holds the database's write lock (a disk that is full
    does the same): reads still answer, but every event is refused 503 storage_error.
    /readyz must not say ready meanwhile."""
    with write_locked(service.settings.bot_database_url):
        status, body = await readiness(http, service)
    assert (status, body["ready"], body["storage"]) == (503, False, "failing")
    assert (await readiness(http, service))[0] == 200


async def test_metrics_count_events_rest_calls_and_latency(
    service: Service, http: aiohttp.ClientSession
) -> None:
    await service.reply_to(27, service.bot_id, "/rate 494 5")
    await service.events.post(
        handler_url(service.settings), {"event": "ONIMCOMMANDADD"}
    )  # no CLIENT_ID
    samples = await scrape(http, service)
    assert samples[("bot_events_received_total", (("event", "ONIMCOMMANDADD"),))] == 1
    assert samples[("bot_events_rejected_total", (("reason", "client_id"),))] == 1
    # Registration, who the author is (im.user.get), the vote and the reply: all batch
    # requests (lookups and replies are coalesced too).
    assert samples[("bot_rest_calls_total", (("method", "batch"), ("outcome", "ok")))] == 4
    assert samples[("bot_command_latency_seconds_count", ())] == 1
    assert samples[("bot_limiter_wait_seconds_count", ())] >= 3
    assert samples[("bot_jobs_unfinished", ())] == 0
    assert samples[("bot_jobs_in_flight", ())] == 0
    assert samples.get(("bot_rest_rate_limited_total", ()), 0) == 0
