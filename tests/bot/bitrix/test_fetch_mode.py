"""Fetch mode end to end (issue 9): the service pulls its Chatbots 2.0 events from the sandbox
portal, stores them, then acknowledges them; nothing reaches it by push."""

from __future__ import annotations

import asyncio

import aiohttp

from bot.sandbox.portal import Fault, Portal
from bot.state import BITRIX, POLLER
from tests.harness import Service, ServiceFactory, drained, eventually, job_rows, post_form

# The sandbox drains 50 requests a second in tests: a poller told so polls every 0.08 s idle.
FETCH = {"B24_EVENT_MODE": "fetch", "B24_RATE_LIMIT": "50"}


async def start_fetching(start_service: ServiceFactory, **env: str) -> Service:
    return await start_service(**(FETCH | env))


def stored(portal: Portal, session_id: int) -> tuple[int, str]:
    session = portal.sessions[session_id]
    return session.vote_head, session.comment_head


def queued(portal: Portal, bot_id: int) -> int:
    """Events the portal still keeps for the bot: not acknowledged yet."""
    return len(portal.queue_of(bot_id).events)


async def test_a_command_is_fetched_saved_and_answered_through_chatbots_2(
    start_service: ServiceFactory,
) -> None:
    service = await start_fetching(start_service)
    bot = service.portal.bots[service.bot_id]
    assert (bot.event_mode, bot.registered_v2, bot.openline) == ("fetch", True, True)
    reply = await service.reply_to(27, service.bot_id, "/rate 494 5 Молодец")
    assert stored(service.portal, 494) == (5, "Молодец")
    assert reply.text == "✅ Сохранено. Сессия 494: ★★★★★ 5/5, комментарий «Молодец»."
    assert reply.via == "imbot.v2.Command.answer"
    assert reply.chat_id == service.portal.private_chat(27, service.bot_id).id
    await eventually(lambda: queued(service.portal, service.bot_id) == 0)  # acknowledged


async def test_no_event_handler_is_served_in_fetch_mode(
    start_service: ServiceFactory, http: aiohttp.ClientSession
) -> None:
    """Nothing reaches the service by push: the handler path of webhook mode is not there."""
    service = await start_fetching(start_service)
    url = service.server.make_url(service.settings.b24_handler_path())
    status = await post_form(http, str(url), data={"event": "ONIMCOMMANDADD"})
    assert status == 404


async def test_three_rate_lines_in_one_message_are_three_votes_and_three_answers(
    start_service: ServiceFactory,
) -> None:
    service = await start_fetching(start_service)
    text = "/rate 494 5 Первый\n/rate 495 2 Второй\n/rate 496 3 Третий"
    await service.say(1, service.bot_id, text)  # user 1 heads both lines
    await eventually(lambda: len(service.bot_messages()) >= 3)
    await drained(service)
    assert stored(service.portal, 494) == (5, "Первый")
    assert stored(service.portal, 495) == (2, "Второй")
    assert stored(service.portal, 496) == (3, "Третий")
    assert service.votes() == 3
    assert len(service.bot_messages()) == 3


async def test_inside_an_open_line_the_answer_is_private_and_the_customer_sees_nothing(
    start_service: ServiceFactory,
) -> None:
    service = await start_fetching(start_service)
    reply = await service.reply_to(27, "chat1157", "/rate 5 Молодец")
    assert stored(service.portal, 494) == (5, "Молодец")
    assert reply.chat_id == service.portal.private_chat(27, service.bot_id).id
    assert service.bot_messages(1157) == []
    assert not any(m.to_customer for m in service.portal.messages.values())


async def test_commands_typed_while_the_service_is_stopped_are_saved_once_after_it_starts(
    start_service: ServiceFactory,
) -> None:
    first = await start_fetching(start_service)
    bot_id = first.bot_id
    await first.server.close()
    for session, rating in [(494, 5), (495, 1), (496, 4)]:
        await first.say(1, bot_id, f"/rate {session} {rating} Пока вас не было")
    assert queued(first.portal, bot_id) == 3  # the portal keeps them (24 h)
    second = await start_fetching(start_service)
    assert second.bot_id == bot_id  # the same bot, found again
    await eventually(lambda: len(second.bot_messages()) >= 3)
    await drained(second)
    assert [stored(second.portal, s)[0] for s in (494, 495, 496)] == [5, 1, 4]
    assert second.votes() == 3
    assert len(second.bot_messages()) == 3
    await eventually(lambda: queued(second.portal, bot_id) == 0)


async def test_a_classic_bot_of_ours_is_replaced_by_one_fetch_mode_bot(
    start_service: ServiceFactory,
) -> None:
    classic = await start_service(B24_EVENT_MODE="webhook")
    old_id = classic.bot_id
    await classic.server.close()
    service = await start_fetching(start_service)
    bots = [b for b in service.portal.bots.values() if b.code == "rating_bot"]
    assert [b.id for b in bots] == [service.bot_id] != [old_id]
    assert service.portal.speaks_v2(bots[0])
    reply = await service.reply_to(27, service.bot_id, "/rate 494 4 После миграции")
    assert reply.via == "imbot.v2.Command.answer"
    assert stored(service.portal, 494) == (4, "После миграции")


async def test_a_bot_deleted_in_the_portal_is_registered_again_and_answers(
    start_service: ServiceFactory,
) -> None:
    service = await start_fetching(start_service)
    old_id = service.bot_id
    await service.events.delete_bot(old_id)
    state = service.server.app[BITRIX]
    await eventually(lambda: state.bot_id() not in (None, old_id), within=10)
    reply = await service.reply_to(27, service.bot_id, "/rate 494 3 Снова здесь")
    assert stored(service.portal, 494) == (3, "Снова здесь")
    assert reply.via == "imbot.v2.Command.answer"


async def test_two_instances_on_one_database_one_consumes_and_each_vote_is_once(
    start_service: ServiceFactory,
) -> None:
    first = await start_fetching(start_service)
    second = await start_fetching(start_service)
    await eventually(
        lambda: (
            {first.server.app[POLLER].status().state, second.server.app[POLLER].status().state}
            == {"active", "passive"}
        )
    )
    for session in (494, 495):
        await first.say(27, first.bot_id, f"/rate {session} 5 Один раз")
    await eventually(lambda: len(first.bot_messages()) >= 2)
    await drained(first)
    await drained(second)
    assert first.votes() == 2
    assert len(first.bot_messages()) == 2


async def test_an_idle_service_polls_within_its_share_of_the_portal_budget(
    start_service: ServiceFactory,
) -> None:
    """The defaults: 2 requests a second, a quarter of it for polling: one request per 2 s.
    An upper bound only: a slow machine polls less, never more."""
    service = await start_service(B24_EVENT_MODE="fetch")  # B24_RATE_LIMIT 2, B24_POLL_BUDGET 0.25
    await eventually(lambda: service.server.app[POLLER].status().state == "active")
    begin = len(service.portal.calls)
    await asyncio.sleep(6)
    requests = [c for c in service.portal.calls[begin:] if c.batch_of is None]  # HTTP requests
    assert len(requests) <= 6 * 2 * 0.25 + 1
    assert requests  # it does poll


async def test_commands_queued_in_one_mode_are_answered_after_a_switch_to_the_other(
    start_service: ServiceFactory,
) -> None:
    """Fetch mode, then webhook mode on the same database: the command still waiting (the
    portal was overloaded) is run by the classic bot and answered by a message, since its
    command belonged to the replaced bot."""
    fetching = await start_fetching(start_service)
    overloaded = Fault(
        method="imopenlines.session.head.vote",
        error="QUERY_LIMIT_EXCEEDED",
        status=503,
        times=-1,
        inside_batch=True,
    )
    fetching.portal.faults.append(overloaded)
    await fetching.say(27, fetching.bot_id, "/rate 494 5 Дождался")
    database = fetching.settings.bot_database_url
    # Tried, refused by the overloaded portal, and put back: postponed, not lost.
    await eventually(lambda: [(r[1], r[3] > 0) for r in job_rows(database)] == [("queued", True)])
    await fetching.server.close()
    fetching.portal.faults.clear()
    classic = await start_service(B24_EVENT_MODE="webhook")
    await eventually(classic.bot_messages)
    [reply] = classic.bot_messages()
    assert reply.text.startswith("✅ Сохранено. Сессия 494")
    assert reply.via == "imbot.message.add"
    assert reply.chat_id == classic.portal.private_chat(27, classic.bot_id).id
    assert stored(classic.portal, 494) == (5, "Дождался")


async def test_a_passing_bot_not_found_for_a_bot_still_there_does_not_silence_the_poller(
    start_service: ServiceFactory,
) -> None:
    """A BOT_NOT_FOUND from Event.get while the bot still exists (a glitch of the portal):
    registering again adopts the same bot id, and the poller must fetch for it again."""
    service = await start_fetching(start_service)
    bot_id = service.bot_id
    # Event.get travels inside the coalescer's `batch` requests (bot/bitrix/coalesce.py).
    glitch = Fault("imbot.v2.event.get", status=400, error="BOT_NOT_FOUND", inside_batch=True)
    service.portal.faults.append(glitch)
    await eventually(lambda: not service.portal.faults, within=10)
    state = service.server.app[BITRIX]
    await eventually(lambda: state.bot_id() == bot_id, within=10)
    reply = await service.reply_to(27, bot_id, "/rate 494 4 После сбоя")
    assert stored(service.portal, 494) == (4, "После сбоя")
    assert reply.via == "imbot.v2.Command.answer"
    assert service.server.app[POLLER].status().state == "active"
