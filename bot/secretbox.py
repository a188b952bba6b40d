"""Supervisors' OAuth tokens sealed at rest (issue 12), with the `cryptography` package.

- AES-256-GCM, not Fernet: Fernet takes no associated data, and the associated data is what
  binds a ciphertext to its row and field (portal, user, "access"/"refresh"). Whoever can
  write to the database file cannot swap one supervisor's sealed token into another's row, or
  an access token into the refresh field: it does not open there.
- The key is derived with HKDF-SHA256 from the configured secret (BOT_SECRET_KEY, or the bytes
  of BOT_SECRET_KEY_FILE), under a label naming this use: the secret itself keys nothing, and
  another use may derive a key of its own from it.
- A random 96-bit nonce per seal. A user's tokens are sealed again on each refresh (about
  hourly at most), far below the 2^32 seals a random nonce allows under one key.
- A key id (a fingerprint derived under another label; nothing about the key can be learnt
  from it) is stored beside each ciphertext, so that a changed key is told apart from a
  tampered row.

Rotation: a new key makes every stored token unreadable (`SealKeyChanged`): each supervisor
is asked to link again, once, at their next command; restoring the old key makes the tokens
readable again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bot.errors import SealKeyChanged, SealTampered, SecretKeyUnusable

MIN_SECRET: Final = 32  # characters of BOT_SECRET_KEY, bytes of BOT_SECRET_KEY_FILE
KEY_SETTING: Final = "BOT_SECRET_KEY"
FILE_SETTING: Final = "BOT_SECRET_KEY_FILE"
_HOW: Final = (
    "a random string of at least 32 characters, e.g. "
    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
)
_FORMAT: Final = b"\x01"  # the first byte of every sealed value: this layout
_NONCE: Final = 12
_TAG: Final = 16
_SEAL_LABEL: Final = b"openline-rating-bot: tokens at rest, AES-256-GCM, v1"
_ID_LABEL: Final = b"openline-rating-bot: tokens at rest, key id, v1"

# What a sealed value belongs to, e.g. ("user_tokens", "portal.bitrix24.ru", 27, "access").
Context = tuple[str | int, ...]


def _derive(secret: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)


def _associated(context: Context) -> bytes:
    # JSON of the parts: unambiguous ("a", "b|c") and ("a|b", "c") differ, and so do 27 and
    # "27"; the format byte ties it to this layout.
    return _FORMAT + json.dumps(context, ensure_ascii=False).encode()


class SecretBox:
    """Seals and opens short secrets under one key; holds no plaintext."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET:  # load_secret_key says so in words first
            raise SecretKeyUnusable(f"the key must be at least {MIN_SECRET} bytes")
        self._aead = AESGCM(_derive(secret, _SEAL_LABEL))
        self.key_id: Final = _derive(secret, _ID_LABEL)[:6].hex()

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id!r})"

    def seal(self, plaintext: str, context: Context) -> bytes:
        """The plaintext encrypted and authenticated, bound to `context`."""
        nonce = os.urandom(_NONCE)
        ciphertext = self._aead.encrypt(nonce, plaintext.encode(), _associated(context))
        return _FORMAT + nonce + ciphertext

    def open(self, sealed: bytes, context: Context, *, key_id: str) -> str:
        """The plaintext of a value sealed with `key_id` for this `context`. Raises
        SealKeyChanged (sealed under another key) or SealTampered (anything else)."""
        if key_id != self.key_id:
            raise SealKeyChanged(f"sealed under key {key_id}, the current key is {self.key_id}")
        if len(sealed) < 1 + _NONCE + _TAG or not sealed.startswith(_FORMAT):
            raise SealTampered("not a sealed value")
        nonce, ciphertext = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        try:
            return self._aead.decrypt(nonce, ciphertext, _associated(context)).decode()
        except (InvalidTag, UnicodeDecodeError):
            raise SealTampered("does not open: changed, or sealed for another row") from None


def load_secret_key(key: str | None, key_file: str | Path | None) -> bytes:
    """The secret from BOT_SECRET_KEY (`key`) or BOT_SECRET_KEY_FILE (`key_file`), exactly one
    of them, for the composition root. Surrounding whitespace is not part of the secret, so a
    file ending in a newline holds the same key as the setting. Raises SecretKeyUnusable."""
    key = (key or "").strip()
    if key and key_file:
        raise SecretKeyUnusable(f"set {KEY_SETTING} or {FILE_SETTING}, not both")
    if key_file:
        return _read_key_file(Path(key_file))
    if not key:
        raise SecretKeyUnusable(f"{KEY_SETTING} or {FILE_SETTING} is required: {_HOW}")
    if len(key) < MIN_SECRET:
        raise SecretKeyUnusable(f"{KEY_SETTING} has {len(key)} characters; it needs {_HOW}")
    return key.encode()


def _read_key_file(path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except FileNotFoundError:
        raise SecretKeyUnusable(f"{FILE_SETTING}: there is no file {path}") from None
    except OSError as error:
        raise SecretKeyUnusable(
            f"{FILE_SETTING}: {path} cannot be read ({error.strerror})"
        ) from None
    if len(secret) < MIN_SECRET:
        raise SecretKeyUnusable(
            f"{FILE_SETTING}: {path} holds {len(secret)} bytes; it needs {_HOW}"
        )
    return secret
