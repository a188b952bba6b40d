"""Everything Bitrix24: the REST client and form encoding; events, webhook and registration."""
