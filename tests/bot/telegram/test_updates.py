"""What counts as a command, attacked as a hostile member of the allowed group would: captions,
forwards, bots, inline bots, edits, replies and quotes, mentions, a group migrated to a
supergroup. Each message goes over HTTP through the fake Bot API to real aiogram; the adapter's
choice is what is seen (privacy mode off: every message reaches the bot)."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.sandbox.telegram.world import TelegramWorld, TgUser
from tests.bot.telegram.conftest import GROUP, LINKED, STRANGER, Service, Start
from tests.harness import eventually

OTHER_BOT = 7_100_000_001  # another bot in the group
INLINE_BOT = 7_100_000_002  # an inline bot anyone can write through (`@gifbot cats`)
SUPERGROUP = -1_002_001_001  # what GROUP becomes when it is migrated


@pytest.fixture
def world(telegram_world: TelegramWorld) -> TelegramWorld:
    telegram_world.privacy = False  # every message reaches the bot: the adapter must choose
    telegram_world.add_user(
        TgUser(OTHER_BOT, "Другой бот", username="OtherRatingBot", is_bot=True)
    )
    telegram_world.add_user(TgUser(INLINE_BOT, "Гифки", username="gifbot", is_bot=True))
    telegram_world.chat(GROUP).members.add(OTHER_BOT)
    return telegram_world


async def taken(service: Service, world: TelegramWorld, expected: int) -> list[str]:
    """The command texts the service took from everything typed so far, in the order typed.
    A `/help` typed last is stored after the rest (updates are handled in order); the jobs
    run on two workers, so the `expected` ones may finish after it."""
    marker = world.type(LINKED, GROUP, "/help")
    assert marker is not None
    last = f"tg:{marker['update_id']}:0"

    def others() -> tuple[list[str]] | None:  # a tuple: true even when no job was taken
        if not any(j.key == last for j in service.core.seen):
            return None
        jobs = [j for j in service.core.seen if j.key != last]
        if len(jobs) < expected:
            return None
        ordered = sorted(jobs, key=lambda j: [int(part) for part in j.key.split(":")[1:]])
        return ([j.text for j in ordered],)

    (texts,) = await eventually(others)
    return texts


@pytest.mark.parametrize(
    ("author", "text", "kinds", "expected"),
    [
        # A caption is typed by the photo's sender: a screenshot with its vote counts.
        (LINKED, "/rate 494 5 см. скриншот", {"caption": True}, ["/rate 494 5 см. скриншот"]),
        # A forward shows someone else's words: not the forwarder's command.
        (LINKED, "/rate 494 1", {"forward_from": 5002}, []),
        (5002, "/rate 494 1", {"forward_from": LINKED}, []),
        # An inline bot's result may preview as a cat and say `/rate 494 1`.
        (LINKED, "/rate 494 1", {"via_bot": INLINE_BOT}, []),
        # A bot is nobody's supervisor (and two bots must not answer each other).
        (OTHER_BOT, "/rate 494 1", {}, []),
        (OTHER_BOT, "/help", {}, []),
    ],
)
async def test_what_a_person_only_passed_on_is_not_their_command(
    start: Start,
    world: TelegramWorld,
    author: int,
    text: str,
    kinds: dict[str, Any],
    expected: list[str],
) -> None:
    service = await start()
    with capture_logs() as logs:
        world.type(author, GROUP, text, **kinds)
        assert await taken(service, world, len(expected)) == expected
    reasons = [e["reason"] for e in logs if e["event"] == "telegram.not_a_command"]
    assert len(reasons) == (0 if expected else 1)


async def test_a_reply_counts_by_its_own_text_never_by_what_it_replies_to_or_quotes(
    start: Start, world: TelegramWorld
) -> None:
    service = await start()
    original = world.type(LINKED, GROUP, "/rate 494 5")
    assert original is not None
    replied_to = original["message"]["message_id"]
    world.type(STRANGER, GROUP, "+1", reply_to=replied_to)
    world.type(STRANGER, GROUP, "согласен", reply_to=replied_to, quote="/rate 494 5")
    world.type(5002, GROUP, "/rate 494 4", reply_to=replied_to, quote="/rate 494 5")
    assert await taken(service, world, 2) == ["/rate 494 5", "/rate 494 4"]
    assert {j.author_id for j in service.core.seen} == {LINKED, 5002}


async def test_an_edited_command_is_not_asked_for_so_it_never_votes_again(
    start: Start, world: TelegramWorld
) -> None:
    service = await start()
    sent = world.type(LINKED, GROUP, "/rate 494 5")
    assert sent is not None
    await eventually(lambda: service.core.seen)
    # Telegram keeps no edited_message for a bot whose allowed_updates leave it out.
    assert world.edit(GROUP, sent["message"]["message_id"], "/rate 494 1") is None
    assert world.allowed_updates is not None
    assert "edited_message" not in world.allowed_updates
    assert await taken(service, world, 1) == ["/rate 494 5"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/RATE@SANDBOXRATINGBOT 494 5", ["/RATE 494 5"]),
        ("/rate @SandboxRatingBot 494 5", ["/rate 494 5"]),
        ("/rate @sandboxratingbot 494 5 Молодец", ["/rate 494 5 Молодец"]),
        ("/rate @OtherRatingBot 494 5", []),  # addressed to another bot
        ("/rate@OtherRatingBot 494 5", []),
        ("/rate @petr_sm 494 5", ["/rate @petr_sm 494 5"]),  # a person: the parser answers
        ("/rate 494 5 @SandboxRatingBot", ["/rate 494 5 @SandboxRatingBot"]),  # a comment
    ],
)
async def test_a_command_addressed_to_a_bot_by_mention_is_ours_only_when_it_names_us(
    start: Start, world: TelegramWorld, text: str, expected: list[str]
) -> None:
    service = await start()
    world.type(LINKED, GROUP, text)
    assert await taken(service, world, len(expected)) == expected


async def test_a_migrated_group_tells_the_operator_the_setting_to_use(
    start: Start, world: TelegramWorld
) -> None:
    service = await start()
    with capture_logs() as logs:
        world.migrate(GROUP, SUPERGROUP, by_user_id=5003)
        world.type(LINKED, SUPERGROUP, "/rate 494 5")  # not allowed until the operator acts
        marker = world.type(LINKED, LINKED, "/help")  # handled after the two above
        assert marker is not None
        await eventually(lambda: service.core.seen)
    assert [j.text for j in service.core.seen] == ["/help"]
    (hint,) = [e for e in logs if e["event"] == "telegram.chat_migrated"]
    assert hint["log_level"] == "warning"
    assert (hint["old_chat_id"], hint["new_chat_id"]) == (GROUP, SUPERGROUP)
    # The conftest allows GROUP and the channel: the same list with the new id.
    assert hint["TELEGRAM_ALLOWED_CHAT_IDS"] == f"-1002003,{SUPERGROUP}"
    assert any(e["event"] == "telegram.chat_not_allowed" for e in logs)
