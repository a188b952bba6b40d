"""A local stand-in for a Bitrix24 portal, faithful to ../shared/docs/bitrix24-protocol.md.

Used by tests, benchmarks and newcomers: `python -m bot.sandbox` runs it with seed data.
"""
