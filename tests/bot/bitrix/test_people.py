"""Who an author is (bot/bitrix/people.py) over HTTP against the sandbox: im.user.get's flags,
read as Bitrix24 answers them; anything it will not say means the author may not rate."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.bitrix.client import BitrixClient, RetryPolicy, WebhookAuth
from bot.bitrix.people import USER_GET, BitrixPeople
from bot.errors import BitrixError
from bot.sandbox.portal import Bot, Fault, Portal, User
from tests.harness import webhook_url


def lookups(portal: Portal) -> int:
    return sum(1 for call in portal.calls if call.method == USER_GET)


@pytest.mark.parametrize(
    ("user_id", "webhook_owner", "kind"),
    [
        (27, 1, "staff"),
        (301, 1, "extranet"),  # a guest account: never rates
        (302, 1, "extranet"),  # a Bitrix24.Network account, another portal's: never rates
        (1211, 1, "customer"),  # an open line's connector user
        (301, 28, "unverified"),  # ACCESS_DENIED: 28 may not see the guest
        (99999, 1, "unverified"),  # USER_NOT_EXISTS
    ],
)
async def test_a_user_s_kind_is_what_im_user_get_says(
    make_client: Callable[..., BitrixClient],
    sandbox: TestServer,
    portal: Portal,
    user_id: int,
    webhook_owner: int,
    kind: str,
) -> None:
    portal.users[302] = User(302, "Гость", "Сети", network=True)
    [hook] = [h for h in portal.webhooks if h.user_id == webhook_owner]
    auth = WebhookAuth(SecretStr(webhook_url(sandbox, hook.user_id, hook.code)))
    people = BitrixPeople(make_client(auth))
    assert await people.kind(user_id) == kind


async def test_a_bot_is_not_someone_who_rates(
    make_client: Callable[..., BitrixClient], portal: Portal
) -> None:
    portal.bots[7000] = Bot(id=7000, code="other", app_id="customother", name="Другой бот")
    assert await BitrixPeople(make_client()).kind(7000) == "unverified"


async def test_an_answer_is_remembered_and_a_refusal_is_not(
    make_client: Callable[..., BitrixClient], portal: Portal
) -> None:
    people = BitrixPeople(make_client())
    assert [await people.kind(27), await people.kind(27)] == ["staff", "staff"]
    assert lookups(portal) == 1
    assert [await people.kind(99999), await people.kind(99999)] == ["unverified"] * 2
    assert lookups(portal) == 3


async def test_a_portal_that_does_not_answer_is_retried_later_not_taken_for_a_no(
    make_client: Callable[..., BitrixClient], portal: Portal
) -> None:
    portal.faults.append(Fault(method=USER_GET.lower(), times=-1, status=503))
    people = BitrixPeople(make_client(retry=RetryPolicy(attempts=2, initial_wait=0.01)))
    with pytest.raises(BitrixError) as raised:
        await people.kind(27)
    assert raised.value.retryable
    portal.faults.clear()
    assert await people.kind(27) == "staff"
