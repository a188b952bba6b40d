"""A message's keyboard as Bitrix24 keeps it (`Im\\Bot\\Keyboard::getKeyboardByJson` and
`addButton`; docs `chats/messages/keyboards.md`, `chat-bots-v2/imbot.v2/messages/
message-keyboards.md`).

Each button needs a TEXT and one action; the first that holds wins, in the server's order: a
LINK (`http://`, `https://` or a path `/...`), an APP_ID, an ACTION with a value, a COMMAND.
A button with none of them (a `javascript:` LINK and no COMMAND, say) is dropped without a
word; a LINK that holds makes the button a link whatever else it carries. Only a keyboard
left with nothing is refused (KEYBOARD_ERROR). A click on a link button opens the link in
the user's browser and tells the bot nothing; only a COMMAND button sends an event.

Kept as the caller sent it otherwise: the full form `{"BOT_ID", "BUTTONS"}` or a bare list.
[UNCONFIRMED] Bitrix24 also fills its defaults (TYPE, BLOCK, CONTEXT, DISPLAY, ...) and keeps
LINK through `htmlspecialcharsbx` (`&` as `&amp;` in what it hands back); the sandbox keeps
the link as sent, which is what the user's browser opens.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from bot.sandbox import php
from bot.sandbox.portal import RestError

_LINK: Final = re.compile(r"^(?:/|https?://)")  # addButton's own pattern
_ACTIONS: Final = ("PUT", "SEND", "COPY", "CALL", "DIALOG", "LIVECHAT", "HELP")
# Every field that names what a button does: the winner's stay, the others go.
_ACTION_FIELDS: Final = {
    "LINK": ("LINK",),
    "APP_ID": ("APP_ID", "APP_PARAMS"),
    "ACTION": ("ACTION", "ACTION_VALUE"),
    "COMMAND": ("COMMAND", "COMMAND_PARAMS"),
}


def keyboard_of(value: Any, bot_id: int) -> Any:
    """The keyboard as stored, from a request's KEYBOARD (or v2 `keyboard`): the buttons
    Bitrix24 keeps, in the shape they came in. KEYBOARD_ERROR when nothing is left (or it is
    no keyboard at all)."""
    if isinstance(value, str):
        # A JSON string is read as the keyboard (message-keyboards.md).
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    value = php.as_list(value)
    full = isinstance(value, dict) and "BUTTONS" in value
    buttons = value["BUTTONS"] if full else value
    if isinstance(buttons, dict):
        buttons = list(buttons.values())
    listed = buttons if isinstance(buttons, list) else []
    kept = [b for b in (_kept(button, bot_id) for button in listed) if b is not None]
    if not kept:
        raise RestError("KEYBOARD_ERROR", "Incorrect keyboard params")
    return value | {"BUTTONS": kept} if full else kept


def _kept(button: Any, bot_id: int) -> dict[str, Any] | None:
    if not isinstance(button, dict):
        return None
    if button.get("TYPE") == "NEWLINE":
        return button
    if "FUNCTION" in button:
        return None  # JS functions: only for Bitrix24's own bots (ENABLE_FUNCTIONS)
    text = button.get("TEXT")
    if not isinstance(text, str) or not php.trim(text):
        return None
    action = action_of(button, bot_id)
    if action is None:
        return None
    losers = {f for key, fields in _ACTION_FIELDS.items() if key != action for f in fields}
    kept = {k: v for k, v in button.items() if k not in losers}
    if action == "COMMAND":
        kept["COMMAND"] = str(kept["COMMAND"]).removeprefix("/")
    return kept


def action_of(button: dict[str, Any], bot_id: int) -> str | None:
    """What a click on `button` does (`LINK`, `APP_ID`, `ACTION`, `COMMAND`), as addButton
    decides it; None: Bitrix24 drops the button."""
    link = button.get("LINK")
    if isinstance(link, str) and _LINK.match(link):
        return "LINK"
    if php.truthy(button.get("APP_ID")):
        return "APP_ID"
    action, value = button.get("ACTION"), button.get("ACTION_VALUE")
    if action in _ACTIONS and php.trim(value if isinstance(value, str | int) else ""):
        return "ACTION"
    command = button.get("COMMAND")
    if bot_id > 0 and isinstance(command, str) and php.trim(command):
        return "COMMAND"
    return None


def buttons_of(keyboard: Any) -> list[Any]:
    """The stored keyboard's buttons, in order (NEWLINEs included)."""
    buttons = keyboard.get("BUTTONS") if isinstance(keyboard, dict) else keyboard
    return list(buttons) if isinstance(buttons, list) else []
