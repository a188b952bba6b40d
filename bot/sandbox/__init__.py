"""A local stand-in for a Bitrix24 portal, faithful to docs/bitrix24-notes.md.

Used by tests, benchmarks and newcomers: `python -m bot.sandbox` runs it with seed data.
"""
