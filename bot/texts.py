"""Every user-facing string, in Russian and English.

Texts use Bitrix24's BB-codes sparingly ([b]); the Telegram side converts what it needs.
Parameters are filled with `str.format`; a supervisor's own words (a comment in an example)
are substituted, never interpreted as a template, and never as markup: `render` neutralises
every string parameter (bot/markup.py), so our own markup belongs in templates, never in
parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from bot.markup import neutralise, shorten

Lang = Literal["ru", "en"]

DEFAULT_LANG: Final[Lang] = "en"

# Parameters that are counts and read better grouped (10 000 / 10,000).
_GROUPED_PARAMS = frozenset({"length", "limit", "skipped"})

_HELP_RU = """\
[b]Оценка диалогов открытых линий[/b]
/rate <сессия> <оценка> <комментарий> — поставить оценку сессии и оставить комментарий
Примеры:
/rate 494 5 Молодец — оценка 5 и комментарий
/rate 494 5 — только оценка (прежний комментарий сохранится)
/rate 494 Долго отвечал — только комментарий (оценка не изменится)
/rate 494 — выбрать оценку кнопками
Сессию можно писать как 494 или #494, оценку — 5, 5/5 или ★★★★★.
В чате самой открытой линии сессию можно не указывать: /rate 5 Молодец
/help — эта справка."""

_HELP_EN = """\
[b]Rating open-line dialogs[/b]
/rate <session> <rating> <comment> — rate a session and leave a comment
Examples:
/rate 494 5 Well done — rating 5 and a comment
/rate 494 5 — rating only (an earlier comment is kept)
/rate 494 Slow to answer — comment only (the rating stays as it is)
/rate 494 — pick a rating with buttons
Write the session as 494 or #494, the rating as 5, 5/5 or ★★★★★.
Inside the open-line chat itself the session may be left out: /rate 5 Well done
/help shows this text."""

TEXTS: Final[Mapping[str, Mapping[Lang, str]]] = {
    "help": {"ru": _HELP_RU, "en": _HELP_EN},
    # Only where a typed /оценка reaches the bot (handlers/help.py).
    "help.alias": {
        "ru": "В этом чате вместо /rate можно писать /оценка; в группах и открытых линиях — "
        "только /rate.",
        "en": "In this chat /оценка works as well as /rate; in group and open-line chats, "
        "write /rate.",
    },
    # The private chat with the Telegram bot takes only the account commands
    # (bot/telegram/updates.py): its help says what it is for, and where rating happens.
    "help.telegram_private": {
        "ru": "Здесь Telegram связывают с Битрикс24: напишите /link боту оценок в Битрикс24 и "
        "отправьте мне полученный код: /link КОД. /unlink отменяет привязку. Оценки ставят в "
        "группе супервизоров: /rate 494 5 Молодец, справка там — /help.",
        "en": "This chat links Telegram to Bitrix24: write /link to the rating bot in Bitrix24 "
        "and send me the code it answers: /link CODE. /unlink undoes the link. Ratings are "
        "given in the supervisors' group: /rate 494 5 Well done; /help there explains more.",
    },
    "parse.not_a_command": {
        "ru": "Я понимаю только команды, например: /rate 494 5 Молодец. Справка: /help",
        "en": "I understand commands only, for example: /rate 494 5 Well done. Help: /help",
    },
    "parse.unknown_command": {
        "ru": "Не знаю команду {command}. Список команд: /help",
        "en": "Unknown command {command}. The list of commands: /help",
    },
    "parse.missing_session": {
        "ru": "Укажите номер сессии после /rate, например: /rate 494 5 Молодец",
        "en": "Put the session number after /rate, for example: /rate 494 5 Well done",
    },
    "parse.invalid_session": {
        "ru": "«{token}» — не номер сессии: нужно целое число больше нуля, "
        "например: /rate 494 5 Молодец",
        "en": "“{token}” is not a session number: it must be a whole number above zero, "
        "for example: /rate 494 5 Well done",
    },
    "parse.session_out_of_range": {
        "ru": "Номер сессии {token} слишком большой (не больше {maximum}). "
        "Проверьте номер, например: /rate 494 5 Молодец",
        "en": "Session number {token} is too large (at most {maximum}). "
        "Check the number, for example: /rate 494 5 Well done",
    },
    "parse.rating_out_of_range": {
        "ru": "Оценка «{token}» не подходит: нужно целое число от 1 до 5. Исправленный "
        "вариант: {example}",
        "en": "Rating “{token}” does not fit: it must be a whole number from 1 to 5. "
        "Corrected: {example}",
    },
    "parse.rating_or_session": {
        "ru": "Оценка «{token}» не подходит: нужно целое число от 1 до 5, например: {example}\n"
        "Если {token} — номер другой сессии, поставьте перед ним #: {session_example}",
        "en": "Rating “{token}” does not fit: it must be a whole number from 1 to 5, for "
        "example: {example}\nIf {token} is another session's number, put # before it: "
        "{session_example}",
    },
    "parse.hidden_characters": {
        "ru": "В «{token}» есть невидимые символы ({codes}): так бывает при копировании. "
        "Ничего не сохранено; наберите команду заново вручную.",
        "en": "“{token}” holds invisible characters ({codes}), as copied text sometimes does. "
        "Nothing was saved; type the command again by hand.",
    },
    "parse.comment_too_long": {
        "ru": "Комментарий слишком длинный: {length} символов, а Битрикс24 хранит не больше "
        "{limit}. Сократите его и отправьте снова: {example}",
        "en": "The comment is too long: {length} characters, and Bitrix24 keeps at most "
        "{limit}. Shorten it and send again: {example}",
    },
    "welcome": {
        "ru": "Здравствуйте! Я сохраняю оценки диалогов открытых линий. Напишите, например: "
        "/rate 494 5 Молодец — сессия 494, оценка 5 и комментарий. Все команды: /help",
        "en": "Hello! I save ratings of open-line dialogs. Write, for example: /rate 494 5 Well "
        "done — session 494, rating 5 and a comment. All commands: /help",
    },
    "rate.saved": {
        "ru": "✅ Сохранено. Сессия {session}: {rating}, {comment}.",
        "en": "✅ Saved. Session {session}: {rating}, {comment}.",
    },
    "rate.prompt": {
        "ru": "Сессия {session}: сейчас {rating}, {comment}. Выберите оценку:",
        "en": "Session {session}: now {rating}, {comment}. Choose a rating:",
    },
    "rate.stars": {"ru": "{stars} {value}/5", "en": "{stars} {value}/5"},
    "rate.no_rating": {"ru": "без оценки", "en": "no rating"},
    "rate.comment": {"ru": "комментарий «{comment}»", "en": "comment “{comment}”"},
    "rate.no_comment": {"ru": "без комментария", "en": "no comment"},
    "rate.not_supervisor": {
        "ru": "Оценивать сессии могут только руководители из списка бота. Ваш id в Битрикс24: "
        "{user_id}. Попросите администратора добавить его в B24_SUPERVISOR_IDS.",
        "en": "Only supervisors on the bot's list may rate sessions. Your Bitrix24 user id is "
        "{user_id}: ask the administrator to add it to B24_SUPERVISOR_IDS.",
    },
    "rate.session_not_found": {
        "ru": "Сессия {session} не найдена. Проверьте номер: он указан в карточке диалога.",
        "en": "Session {session} was not found. Check the number: it is on the dialog's card.",
    },
    "rate.session_not_visible": {
        "ru": "Сессия {session} не найдена или недоступна учётной записи бота: Битрикс24 "
        "отвечает на оба случая одинаково. Проверьте номер: он указан в карточке диалога. "
        "Если номер верный, попросите администратора дать учётной записи бота доступ к "
        "истории этой открытой линии.",
        "en": "Session {session} was not found, or the bot's account may not see it: Bitrix24 "
        "answers both the same way. Check the number: it is on the dialog's card. If it is "
        "right, ask the administrator to give the bot's account access to this open line's "
        "history.",
    },
    "rate.not_allowed": {
        "ru": "❌ Не сохранено: в настройках линии сессии {session} у учётной записи бота нет "
        "права оценивать диалоги (или тариф не позволяет). Сейчас: {rating}, {comment}.",
        "en": "❌ Not saved: the line of session {session} does not let the bot's account rate "
        "dialogs (or the plan does not allow it). Now: {rating}, {comment}.",
    },
    "rate.not_saved": {
        "ru": "❌ Не сохранено: Битрикс24 ответил «готово», но оценка сессии {session} не "
        "изменилась. Обычно так бывает, когда нет права оценивать на этой линии, тариф без этой "
        "возможности или сессии нет. Сейчас: {rating}, {comment}.",
        "en": "❌ Not saved: Bitrix24 answered “done”, but the vote of session {session} did not "
        "change. This usually means no right to rate on this line, a plan without the feature, "
        "or no such session. Now: {rating}, {comment}.",
    },
    "rate.not_staff": {
        "ru": "Оценивать сессии могут только сотрудники портала, а не гостевые (экстранет) "
        "пользователи.",
        "en": "Only the portal's staff may rate sessions, not extranet (guest) users.",
    },
    "intake.too_many_commands": {
        "ru": "Из одного сообщения выполняются только первые {taken} команд; ещё {skipped} не "
        "выполнены: отправьте их другим сообщением.",
        "en": "Only the first {taken} commands of a message are run; {skipped} were not: send "
        "them in another message.",
    },
    "rate.refused": {
        "ru": "❌ Не сохранено: Битрикс24 отказал в оценке сессии {session}. Возможные "
        "причины: такой сессии нет; у учётной записи бота нет права оценивать диалоги этой "
        "линии или смотреть их историю; тариф без оценки руководителем. Проверьте номер "
        "сессии или обратитесь к администратору.",
        "en": "❌ Not saved: Bitrix24 refused the vote on session {session}. Possible causes: "
        "there is no such session; the bot's account has no right to rate this line's dialogs "
        "or to view their history; the plan does not include rating by a supervisor. Check "
        "the session number, or ask the administrator.",
    },
    # Application mode (issue 12): the vote ran under the supervisor's own token, so a refusal
    # is about them, not the bot's account.
    "rate.refused.own": {
        "ru": "❌ Не сохранено: Битрикс24 отказал в оценке сессии {session}. У вас нет права "
        "оценивать диалоги этой линии (или такой сессии нет). Проверьте номер сессии; право "
        "даёт администратор в настройках открытой линии.",
        "en": "❌ Not saved: Bitrix24 refused the vote on session {session}. You have no right "
        "to rate on that line (or the session does not exist). Check the session number; the "
        "right is given by the administrator in the open line's settings.",
    },
    "rate.session_not_visible.own": {
        "ru": "Сессия {session} не найдена или недоступна вам: Битрикс24 отвечает на оба "
        "случая одинаково. Проверьте номер: он указан в карточке диалога.",
        "en": "Session {session} was not found, or you may not see it: Bitrix24 answers both "
        "the same way. Check the number: it is on the dialog's card.",
    },
    "rate.not_allowed.own": {
        "ru": "❌ Не сохранено: у вас нет права оценивать диалоги линии сессии {session} (или "
        "тариф не позволяет). Сейчас: {rating}, {comment}.",
        "en": "❌ Not saved: you have no right to rate dialogs on the line of session {session} "
        "(or the plan does not allow it). Now: {rating}, {comment}.",
    },
    "rate.not_saved.own": {
        "ru": "❌ Не сохранено: Битрикс24 ответил «готово», но оценка сессии {session} не "
        "изменилась. Обычно так бывает, когда у вас нет права оценивать на этой линии, тариф "
        "без этой возможности или сессии нет. Сейчас: {rating}, {comment}.",
        "en": "❌ Not saved: Bitrix24 answered “done”, but the vote of session {session} did not "
        "change. This usually means you have no right to rate on this line, a plan without the "
        "feature, or no such session. Now: {rating}, {comment}.",
    },
    "oauth.link_needed": {
        "ru": "Оценки сохраняются от вашего имени, поэтому один раз разрешите боту действовать "
        "от вас в Битрикс24: нажмите кнопку (ссылка действует 10 минут). После этого команда "
        "выполнится сама, повторять её не нужно.",
        "en": "Ratings are saved in your own name, so once, let the bot act for you in "
        "Bitrix24: press the button (the link works for 10 minutes). Your command then runs "
        "by itself; there is no need to send it again.",
    },
    "oauth.relink_needed": {
        "ru": "Битрикс24 больше не принимает разрешение, которое вы давали боту (его отозвали "
        "или оно устарело). Ничего не сохранено. Нажмите кнопку, чтобы разрешить снова: "
        "команда выполнится сама.",
        "en": "Bitrix24 no longer accepts the permission you gave the bot (it was revoked or "
        "has expired). Nothing was saved. Press the button to give it again: your command "
        "then runs by itself.",
    },
    "oauth.link_sent_privately": {
        "ru": "Оценки сохраняются от вашего имени: кнопку, чтобы один раз разрешить это в "
        "Битрикс24, я отправил вам в личный чат с ботом (здесь её видели бы все). После "
        "этого команда выполнится сама.",
        "en": "Ratings are saved in your own name: the button to allow it once in Bitrix24 is "
        "in your private chat with the bot (here everyone would see it). Your command then "
        "runs by itself.",
    },
    "oauth.button": {"ru": "Разрешить в Битрикс24", "en": "Allow in Bitrix24"},
    "oauth.logged_out": {
        "ru": "Готово: бот забыл ваше разрешение в Битрикс24. Следующая оценка попросит "
        "разрешить снова.",
        "en": "Done: the bot has forgotten your Bitrix24 permission. Your next rating will ask "
        "for it again.",
    },
    "oauth.nothing_to_forget": {
        "ru": "Бот не хранит вашего разрешения в Битрикс24: забывать нечего.",
        "en": "The bot holds no Bitrix24 permission of yours: there is nothing to forget.",
    },
    # The page the browser shows after Bitrix24's authorisation (bot/bitrix/oauth_callback.py).
    "oauth.page.title": {"ru": "Бот оценок", "en": "Rating bot"},
    "oauth.page.linked_waiting": {
        "ru": "Готово: бот будет сохранять ваши оценки от вашего имени. Ваша команда уже "
        "выполняется — ответ придёт в чат. Эту вкладку можно закрыть.",
        "en": "Done: the bot will save your ratings in your own name. Your command is running "
        "now; the answer comes in the chat. You may close this tab.",
    },
    "oauth.page.linked": {
        "ru": "Готово: бот будет сохранять ваши оценки от вашего имени. Вернитесь в чат и "
        "отправьте команду /rate. Эту вкладку можно закрыть.",
        "en": "Done: the bot will save your ratings in your own name. Go back to the chat and "
        "send your /rate command. You may close this tab.",
    },
    "oauth.page.expired": {
        "ru": "Эта ссылка устарела или уже использована. Ничего не изменилось: отправьте "
        "команду в чате ещё раз и нажмите новую кнопку.",
        "en": "This link has expired or was already used. Nothing has changed: send your "
        "command in the chat again and press the new button.",
    },
    "oauth.page.declined": {
        "ru": "Разрешение не дано, ничего не изменилось.",
        "en": "Permission was not given; nothing has changed.",
    },
    "oauth.page.refused": {
        "ru": "Не получилось: Битрикс24 не подтвердил разрешение для той учётной записи, что "
        "просила ссылку. Ничего не сохранено. Войдите в Битрикс24 под своей учётной записью, "
        "отправьте команду в чате ещё раз и нажмите новую кнопку.",
        "en": "That did not work: Bitrix24 did not confirm the permission for the account "
        "that asked for the link. Nothing was saved. Log in to Bitrix24 as yourself, send your "
        "command in the chat again and press the new button.",
    },
    "oauth.page.unavailable": {
        "ru": "Битрикс24 сейчас не отвечает, разрешение не сохранено. Через минуту отправьте "
        "команду в чате ещё раз и нажмите новую кнопку.",
        "en": "Bitrix24 does not answer right now; the permission was not saved. In a minute, "
        "send your command in the chat again and press the new button.",
    },
    "link.code": {
        "ru": "Код для Telegram: {code} (действует 10 минут, один раз). Откройте {url} и "
        "нажмите «Старт» — или отправьте боту в Telegram в личном чате: /start {code}",
        "en": "Your Telegram code: {code} (valid for 10 minutes, once). Open {url} and press "
        "Start, or send the Telegram bot in a private chat: /start {code}",
    },
    "link.code_no_bot": {
        "ru": "Код для Telegram: {code} (действует 10 минут, один раз). Отправьте его "
        "Telegram-боту оценок в личном чате: /link {code}",
        "en": "Your Telegram code: {code} (valid for 10 minutes, once). Send it to the rating "
        "bot in Telegram in a private chat: /link {code}",
    },
    "link.private_only": {
        "ru": "Привязка делается только в личном чате с ботом: код в общем чате увидят другие. "
        "Напишите мне /link лично.",
        "en": "Linking works in a private chat with the bot only: others would see a code in a "
        "shared chat. Write /link to me privately.",
    },
    "link.code_voided": {
        "ru": "Этот код видели другие в общем чате, поэтому он больше не действует. Новый код: "
        "напишите /link боту оценок в Битрикс24 и отправьте его мне лично.",
        "en": "Others in this shared chat saw that code, so it no longer works. For a new one, "
        "write /link to the rating bot in Bitrix24 and send it to me privately.",
    },
    "link.how_to": {
        "ru": "Чтобы привязать Telegram к Битрикс24, напишите /link боту оценок в Битрикс24 и "
        "отправьте мне полученный код в личном чате: /link КОД",
        "en": "To link Telegram to Bitrix24, write /link to the rating bot in Bitrix24 and send "
        "me the code it answers in a private chat: /link CODE",
    },
    "link.linked": {
        "ru": "✅ Готово: этот Telegram привязан к пользователю Битрикс24 с id {user_id}.",
        "en": "✅ Done: this Telegram account is linked to the Bitrix24 user with id {user_id}.",
    },
    "link.code_invalid": {
        "ru": "Код неверный, уже использован или устарел. Новый код: напишите /link боту "
        "оценок в Битрикс24.",
        "en": "The code is wrong, already used or expired. For a new one, write /link to the "
        "rating bot in Bitrix24.",
    },
    "link.too_many_attempts": {
        "ru": "Слишком много неверных кодов, и этот код больше не действует. Через {minutes} "
        "мин. напишите /link боту оценок в Битрикс24 и отправьте мне новый код.",
        "en": "Too many wrong codes, and this code no longer works. In {minutes} minutes, write "
        "/link to the rating bot in Bitrix24 and send me the new code.",
    },
    "link.static": {
        "ru": "Эту привязку задал администратор (TELEGRAM_USER_MAP): изменить её может только он.",
        "en": "This link is set by the administrator (TELEGRAM_USER_MAP): only they can change "
        "it.",
    },
    "link.not_linked": {
        "ru": "Ваш Telegram не привязан к пользователю Битрикс24, поэтому оценивать нельзя. "
        "Напишите /link боту оценок в Битрикс24 и отправьте мне код в личном чате.",
        "en": "Your Telegram account is not linked to a Bitrix24 user, so it may not rate. "
        "Write /link to the rating bot in Bitrix24 and send me the code in a private chat.",
    },
    "link.unlinked": {
        "ru": "Привязка Telegram отменена.",
        "en": "The Telegram link is undone.",
    },
    "link.nothing_to_unlink": {
        "ru": "Привязки Telegram нет: отменять нечего.",
        "en": "There is no Telegram link to undo.",
    },
    "feed.vote": {
        "ru": "Пользователь Битрикс24 {user_id} ({source}): сессия {session} — {rating}, "
        "{comment}",
        "en": "Bitrix24 user {user_id} ({source}): session {session} — {rating}, {comment}",
    },
    "feed.source.bitrix": {"ru": "Битрикс24", "en": "Bitrix24"},
    "feed.source.telegram": {"ru": "Telegram", "en": "Telegram"},
    "error.portal_busy": {
        "ru": "Битрикс24 сейчас перегружен запросами, оценка не сохранена. Повторите через "
        "минуту.",
        "en": "Bitrix24 is overloaded with requests right now; nothing was saved. Try again in "
        "a minute.",
    },
    "error.portal_unavailable": {
        "ru": "Битрикс24 не отвечает, оценка не сохранена. Повторите позже.",
        "en": "Bitrix24 does not answer; nothing was saved. Try again later.",
    },
    "notice.button_not_offered": {
        "ru": "Эта кнопка больше не работает. Напишите команду, например: /rate 494 5",
        "en": "This button no longer works. Type the command instead, e.g. /rate 494 5",
    },
    "notice.no_author": {
        "ru": "Оценки ставят из группы, где видно, кто пишет: в канале и от имени чата "
        "команда не знает автора. Добавьте бота в группу супервизоров.",
        "en": "Ratings are given from a group, where the author is known: in a channel or "
        "when posting as the chat, a command has no author. Add the bot to the supervisors' "
        "group.",
    },
    "telegram.command.rate": {"ru": "оценить сессию", "en": "rate a session"},
    "telegram.command.help": {"ru": "как пользоваться", "en": "how to use the bot"},
    "telegram.command.link": {
        "ru": "связать с Битрикс24: /link <код>",
        "en": "link to Bitrix24: /link <code>",
    },
    "telegram.command.unlink": {"ru": "отвязать от Битрикс24", "en": "unlink from Bitrix24"},
    "error.internal": {
        "ru": "Что-то пошло не так, оценка не сохранена. Администратор найдёт подробности в "
        "журнале.",
        "en": "Something went wrong; nothing was saved. The administrator will find the details "
        "in the log.",
    },
}


def pick_language(code: str | None) -> Lang:
    """The reply language for a portal language code (`ru`, `ru-RU`, `en`, `de`, …).

    Russian portals get Russian; every other language, known or not, falls back to English.
    """
    if code is None:
        return DEFAULT_LANG
    primary = code.strip().replace("_", "-").split("-", 1)[0].casefold()
    return "ru" if primary == "ru" else DEFAULT_LANG


# Parameters that quote a token the user typed: cut, so `/rat<10,000 letters>` is answered in
# a line, not with the 10,000 letters.
_ECHOED_TOKENS = frozenset({"token", "command"})
TOKEN_LIMIT: Final = 40


def render(key: str, lang: Lang, **params: str | int) -> str:
    """The text for `key` in `lang`, with its parameters filled in.

    Every string parameter is taken for user text and neutralised (quoted tokens also cut);
    neutralising is idempotent, so a text rendered into another keeps a single set of marks.
    """
    values = {name: _value(name, value, lang) for name, value in params.items()}
    return TEXTS[key][lang].format_map(values)


def _value(name: str, value: str | int, lang: Lang) -> str | int:
    if isinstance(value, int):
        return _group(value, lang) if name in _GROUPED_PARAMS else value
    return shorten(value, TOKEN_LIMIT) if name in _ECHOED_TOKENS else neutralise(value)


def _group(number: int, lang: Lang) -> str:
    grouped = f"{number:,}"
    # Russian groups digits with a (non-breaking) space.
    return grouped.replace(",", "\u00a0") if lang == "ru" else grouped
