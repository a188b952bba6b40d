"""A fake Telegram Bot API beside the sandbox portal: the methods the service uses, served as
`{base}/bot<token>/<method>`, a world of users and chats to act in, and failures on demand.

`world.py` holds the state, `entities.py` Telegram's HTML and MarkdownV2 parsing, `methods.py`
the Bot API methods, `server.py` the HTTP side (the API, `/_sandbox/telegram/...`, webhook
delivery), `seed.py` the people of the sandbox portal's seed on the Telegram side.
"""
