"""Seed data: a small contact centre to rate sessions in.

Users: 1 the administrator (owner of the main webhook, head of both lines), 27 a supervisor who
may rate on line 1, 28 a supervisor who sees line 1 without the right to rate, 101/102
operators, 301 an extranet (guest) user. Line 1
"Сайт" and line 2 "Telegram"; open-line chats 1157-1159 holding sessions 494-496 (495 already
rated 4, "Вежливо"), each with its customer (users 1211-1213, connector users); group chat 2001
of the supervisors.
"""

from __future__ import annotations

import secrets

from bot.sandbox.portal import Chat, OpenLine, Portal, Session, User, Webhook

SCOPES = frozenset({"imbot", "imopenlines", "im"})


def seeded_portal(*, webhook_code: str | None = None, language: str = "ru") -> Portal:
    """A portal with the seed data and two webhooks: user 1's (main) and user 28's."""
    portal = Portal(language=language)
    for user in (
        User(1, "Анна", "Админова", gender="F", is_admin=True, work_position="Администратор"),
        User(27, "Светлана", "Иванова", gender="F", work_position="Руководитель смены"),
        User(28, "Пётр", "Смирнов", work_position="Руководитель группы"),
        User(101, "Олег", "Операторов", work_position="Оператор"),
        User(102, "Мария", "Ответова", gender="F", work_position="Оператор"),
    ):
        portal.users[user.id] = user
    portal.lines[1] = OpenLine(1, "Сайт", heads={1, 27}, supervisors={28}, operators={101, 102})
    portal.lines[2] = OpenLine(2, "Telegram", heads={1}, operators={101})
    for chat_id, session_id, line_id, operator_id in (
        (1157, 494, 1, 101),
        (1158, 495, 1, 102),
        (1159, 496, 2, 101),
    ):
        portal.chats[chat_id] = Chat(
            id=chat_id,
            title=f"Клиент {session_id}",
            type="L",
            members={operator_id},
            entity_type="LINES",
            entity_id=f"livechat|{line_id}|{chat_id + 216}|{chat_id + 54}",
            entity_data_1=f"Y|LEAD|1209|N|N|{session_id}|1773682918|0|0|0",
            entity_data_2="LEAD|1209|COMPANY|0|CONTACT|0|DEAL|0",
            entity_data_3="N",
        )
        portal.sessions[session_id] = Session(session_id, line_id, chat_id, operator_id)
        customer = chat_id + 54  # the connector user, the last field of CHAT_ENTITY_ID
        portal.users[customer] = User(customer, "Клиент", str(session_id), connector=True)
        portal.chats[chat_id].members.add(customer)
    portal.sessions[495].vote_head, portal.sessions[495].comment_head = 4, "Вежливо"
    portal.users[301] = User(301, "Гость", "Партнёров", extranet=True)
    portal.chats[2001] = Chat(2001, "Руководители", type="C", members={1, 27, 28}, author_id=1)
    portal.webhooks.append(Webhook(1, webhook_code or secrets.token_hex(8), SCOPES))
    portal.webhooks.append(Webhook(28, secrets.token_hex(8), SCOPES))
    return portal


# A few lines of each open-line dialog, for people trying the sandbox (the chat page shows
# them, and the customer's side of each): (session, who, text); 0 is the session's customer.
_DIALOGS = (
    (494, 0, "Здравствуйте! Заказ 1209 не пришёл."),
    (494, 101, "Добрый день! Проверяю: заказ у курьера, будет сегодня до 18:00."),
    (494, 0, "Спасибо!"),
    (495, 0, "Можно поменять адрес доставки?"),
    (495, 102, "Да, поменяла. Хорошего дня!"),
    (496, 0, "Добрый вечер, вы работаете в субботу?"),
    (496, 101, "Да, с 10 до 16."),
)


def add_dialogs(portal: Portal) -> None:
    """Post the open-line dialogs: the customer's messages and the operators' answers, which
    the connector forwarded to the customer (tests start from empty chats instead)."""
    for session_id, author_id, text in _DIALOGS:
        session = portal.sessions[session_id]
        chat = portal.chats[session.chat_id]
        customer = next(m for m in chat.members if portal.users[m].connector)
        author = author_id or customer
        portal.post(chat.id, author, text, via="user", to_customer=author != customer)
