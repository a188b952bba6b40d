"""Fetch mode attacked (issue 9): hostile messages and odd pages from the portal, over HTTP
against the sandbox, with real SQLite. The rig is test_fetch.py's.
"""

from __future__ import annotations

import dataclasses

import pytest

from bot.intake import MAX_COMMANDS_PER_MESSAGE
from bot.metrics import Metrics
from tests.bot.bitrix.test_fetch import FAST_POLL, GROUP, Rig, rig, sample, texts
from tests.harness import eventually

__all__ = ["rig"]  # the fixture, shared with test_fetch.py

SMALL_PAGES = dataclasses.replace(FAST_POLL, page_limit=7)


@pytest.mark.parametrize(
    ("author", "jobs"),
    [
        # a supervisor: MAX_COMMANDS_PER_MESSAGE commands and one notice, across every page
        (27, MAX_COMMANDS_PER_MESSAGE + 1),
        (101, 1),  # an operator, who may not rate: one reply for the message, not one per page
        (301, 1),  # an extranet user: the same
    ],
)
async def test_a_message_whose_command_events_span_pages_is_bounded_as_one_message(
    rig: Rig, author: int, jobs: int
) -> None:
    """v2 sends one event per command line: 30 `/help` lines are 30 events, over 5 pages of 7.
    The bound is the message's, not each page's."""
    rig.start(rig.poller(await rig.storage(), tuning=SMALL_PAGES))
    await rig.say(author, GROUP, "\n".join(["/help"] * 30))
    await eventually(lambda: texts(rig) and not rig.unacknowledged(), within=20)
    assert len(texts(rig)) == jobs


@pytest.mark.parametrize(
    "odd_id",
    [
        2**53,  # past what JSON holds exactly: the event is malformed, the page is not
        2**62,
    ],
)
async def test_an_event_with_an_odd_id_is_skipped_and_does_not_stall_the_queue(
    rig: Rig, odd_id: int
) -> None:
    assert rig.bot_id is not None
    await rig.say(27, GROUP, "/rate 494 5")
    queue = rig.portal.queue_of(rig.bot_id)
    queue.push(dataclasses.replace(queue.events[-1], event_id=odd_id))
    metrics = Metrics()
    rig.start(rig.poller(await rig.storage(), metrics=metrics))
    await eventually(lambda: texts(rig) and not rig.unacknowledged())
    assert texts(rig) == ["/rate 494 5"]
    assert sample(metrics, "bot_events_rejected_total", reason="malformed_event") == 1
