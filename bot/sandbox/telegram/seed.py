"""The Telegram side of the sandbox's seed (bot/sandbox/seed.py).

The bot @SandboxRatingBot (id 7000000001). Users: 5001 Светлана (svetlana_iv, the portal's
supervisor 27), 5002 Пётр (petr_sm, 28), 5003 Анна (anna_admin, 1), 5009 a stranger
(stranger_tg). Chats: -2001 the supervisors' group (basic group, all four), -1002002 the
contact centre (a supergroup with topics 2 "Оценки" and 3 "Разное", all four), -2004 the vote
feed (a group with Светлана and Анна), -1002003 a channel of Анна's (the bot is its administrator).
"""

from __future__ import annotations

from typing import Final

from bot.sandbox.telegram.world import TelegramWorld, TgChat, TgUser

BOT_ID: Final = 7_000_000_001
TOKEN: Final = f"{BOT_ID}:AAFsandbox-token-0123456789abcdefghij"
SUPERVISORS_GROUP: Final = -2001
FORUM: Final = -1_002_002
CHANNEL: Final = -1_002_003
FEED: Final = -2004
# The Telegram accounts of the portal's people (bot/sandbox/seed.py): Telegram user -> user.
PORTAL_USERS: Final = {5001: 27, 5002: 28, 5003: 1}


def seeded_world(*, token: str = TOKEN, privacy: bool = True) -> TelegramWorld:
    bot_id = int(token.split(":", 1)[0])
    world = TelegramWorld(
        TgUser(bot_id, "Оценки", username="SandboxRatingBot", is_bot=True), token, privacy=privacy
    )
    people = (
        TgUser(5001, "Светлана", "Иванова", username="svetlana_iv"),
        TgUser(5002, "Пётр", "Смирнов", username="petr_sm"),
        TgUser(5003, "Анна", "Админова", username="anna_admin"),
        TgUser(5009, "Незнакомец", username="stranger_tg", language_code="en"),
    )
    for person in people:
        world.add_user(person)
    everyone = {p.id for p in people}
    world.add_chat(TgChat(SUPERVISORS_GROUP, "group", "Руководители", members=set(everyone)))
    world.add_chat(
        TgChat(
            FORUM,
            "supergroup",
            "Контакт-центр",
            members=set(everyone),
            is_forum=True,
            topics={2: "Оценки", 3: "Разное"},
        )
    )
    world.add_chat(TgChat(FEED, "group", "Лента оценок", members={5001, 5003}))
    world.add_chat(
        TgChat(
            CHANNEL,
            "channel",
            "Новости смены",
            username="shift_news",
            members={5003},
            bot_status="administrator",
        )
    )
    return world
