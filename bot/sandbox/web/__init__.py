"""The sandbox chat page: a Bitrix24-messenger look-alike served by the sandbox at `/`."""
