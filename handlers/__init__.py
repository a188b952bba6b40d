"""Supervisor commands as platform-neutral use-cases, one module per command.

Rule (enforced by ruff's banned-api in pyproject.toml): nothing here imports aiohttp, aiogram,
`bot.bitrix` or `bot.telegram`. A use-case receives ports (Protocols) and returns values; the
transports translate. The grammar of the commands lives in `bot/commands.py`.
"""
