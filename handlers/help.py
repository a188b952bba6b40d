"""`/help` (and `/start`, the short welcome)."""

from __future__ import annotations

from bot.commands import HelpCommand
from bot.models import Reply
from bot.texts import Lang, render


def help_reply(command: HelpCommand, lang: Lang) -> Reply:
    return Reply(text=render("welcome" if command.welcome else "help", lang))
