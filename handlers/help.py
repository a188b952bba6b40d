"""`/help` (and `/start`, the short welcome)."""

from __future__ import annotations

from bot.commands import HelpCommand
from bot.models import IncomingCommand, Reply
from bot.texts import render


def help_reply(command: HelpCommand, incoming: IncomingCommand) -> Reply:
    """The help; it offers `/оценка` only where a typed `/оценка` reaches the bot."""
    lang = incoming.language
    if command.welcome:
        return Reply(text=render("welcome", lang))
    if incoming.source == "telegram" and incoming.in_private_chat():
        return Reply(text=render("help.telegram_private", lang))  # no rating there
    text = render("help", lang)
    if typed_alias_arrives(incoming):
        text += "\n" + render("help.alias", lang)
    return Reply(text=text)


def typed_alias_arrives(incoming: IncomingCommand) -> bool:
    """Whether `/оценка` typed where this command was typed reaches the bot.

    Only in the private chat with the Bitrix24 bot. A command name Bitrix24 registers is
    Latin letters and digits (protocol notes §6.4; Chatbots 2.0's Command.register documents
    no rule [UNCONFIRMED], and the bot registers `/rate` and `/help` only), so `/оценка` is
    never a registered command: it reaches the bot as a plain message, which Bitrix24 sends a
    bot from its private chat, but from a group or an open-line chat only when the bot is
    mentioned (§1.5, §0 item 14); there it is just a message of the chat (in an open line,
    one to the customer). `/help` typed in an open line is answered in the private chat, yet
    is about the open line, so the alias is not offered there either.

    Never in Telegram: a bot command is Latin letters, digits and `_` (setMyCommands refuses
    anything else), so in a group with privacy mode on (BotFather's default) the bot never
    receives `/оценка`; and its private chat takes only the account commands
    (bot/telegram/updates.py). A group with privacy mode off, or with the bot an
    administrator, does deliver it, and it works there; that is per bot and per chat, so the
    help keeps to what works everywhere.
    """
    return incoming.source == "bitrix" and incoming.in_private_chat()
