"""The Telegram side: aiogram inside the service (bot/telegram/side.py is the entry)."""
