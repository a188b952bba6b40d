"""The open-line rating bot: composition, transports, the Bitrix24 client and storage."""
