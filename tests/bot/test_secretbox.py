"""Tokens sealed at rest (bot/secretbox.py): what is sealed opens only with the same key, for
the same row and field, unchanged; every failure is a typed error that says nothing of the
token or the key; the key comes from BOT_SECRET_KEY or a key file, with errors in words."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import SealKeyChanged, SealTampered, SealUnreadable, SecretKeyUnusable
from bot.secretbox import MIN_SECRET, Context, SecretBox, load_secret_key

SECRET = "k3y-for-the-tests-0123456789-abcdefghijklmnop"
OTHER_SECRET = "another-key-for-the-tests-0123456789-qrstuvwx"
TOKEN = "a1b2c3d4e5f6-access-token-of-anna"
ROW: Context = ("user_tokens", "portal.example", 27, "access")


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(SECRET.encode())


@pytest.mark.parametrize(
    "plaintext",
    ["", TOKEN, "токен с пробелами и кириллицей", "🔑" * 100, "x" * 10_000, "\x00\n\t"],
)
def test_a_sealed_value_opens_to_what_was_sealed(box: SecretBox, plaintext: str) -> None:
    sealed = box.seal(plaintext, ROW)
    assert box.open(sealed, ROW, key_id=box.key_id) == plaintext
    if plaintext:
        assert plaintext.encode() not in sealed


def test_each_seal_has_its_own_nonce(box: SecretBox) -> None:
    seals = {box.seal(TOKEN, ROW) for _ in range(50)}
    assert len(seals) == 50


@settings(max_examples=200)
@given(
    plaintext=st.text(),
    context=st.lists(st.one_of(st.text(), st.integers()), max_size=5).map(tuple),
)
def test_any_text_in_any_context_round_trips(plaintext: str, context: Context) -> None:
    box = SecretBox(SECRET.encode())
    assert box.open(box.seal(plaintext, context), context, key_id=box.key_id) == plaintext


@pytest.mark.parametrize(
    "elsewhere",
    [
        ("user_tokens", "portal.example", 28, "access"),  # another user's row
        ("user_tokens", "other.example", 27, "access"),  # the same user id on another portal
        ("user_tokens", "portal.example", 27, "refresh"),  # the other field of the row
        ("user_tokens", "portal.example", "27", "access"),  # 27 and "27" are not one row
        ("user_tokens", "portal.example|27", "access"),  # no ambiguity in how parts join
        ("user_tokens", "portal.example", 27),
        (),
    ],
)
def test_a_value_moved_to_another_row_or_field_does_not_open(
    box: SecretBox, elsewhere: Context
) -> None:
    sealed = box.seal(TOKEN, ROW)
    with pytest.raises(SealTampered):
        box.open(sealed, elsewhere, key_id=box.key_id)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b[:-1],  # the tag cut short
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # one bit of the tag
        lambda b: b[:20] + bytes([b[20] ^ 0x80]) + b[21:],  # one bit of the ciphertext
        lambda b: b[:5] + bytes([b[5] ^ 1]) + b[6:],  # one bit of the nonce
        lambda b: b"\x02" + b[1:],  # another format
        lambda b: b[:29],  # shorter than a nonce and a tag
        lambda _: b"",
        lambda b: b + b"\x00",
    ],
)
def test_a_changed_value_does_not_open(box: SecretBox, tamper: Callable[[bytes], bytes]) -> None:
    sealed = box.seal(TOKEN, ROW)
    with pytest.raises(SealTampered):
        box.open(tamper(sealed), ROW, key_id=box.key_id)


def test_a_value_sealed_under_another_key_is_told_apart_from_a_changed_one(box: SecretBox) -> None:
    other = SecretBox(OTHER_SECRET.encode())
    sealed = other.seal(TOKEN, ROW)
    with pytest.raises(SealKeyChanged):
        box.open(sealed, ROW, key_id=other.key_id)
    with pytest.raises(SealTampered):  # a row that claims the current key id and lies
        box.open(sealed, ROW, key_id=box.key_id)


def _refusal(opening: Callable[[], str]) -> SealUnreadable:
    with pytest.raises(SealUnreadable) as caught:
        opening()
    return caught.value


def test_no_error_and_no_repr_tells_the_token_or_the_key(box: SecretBox) -> None:
    other = SecretBox(OTHER_SECRET.encode())
    sealed = box.seal(TOKEN, ROW)
    errors = [
        _refusal(lambda: other.open(sealed, ROW, key_id=box.key_id)),
        _refusal(lambda: box.open(sealed + b"!", ROW, key_id=box.key_id)),
        _refusal(lambda: box.open(sealed, ("elsewhere",), key_id=box.key_id)),
    ]
    said = " ".join([repr(box), str(box), *(f"{e!s} {e!r}" for e in errors)])
    for secret in (TOKEN, SECRET, OTHER_SECRET, SECRET[:12]):
        assert secret not in said


def test_the_key_id_is_a_short_stable_fingerprint_of_the_key() -> None:
    first, again = SecretBox(SECRET.encode()), SecretBox(SECRET.encode())
    other = SecretBox(OTHER_SECRET.encode())
    assert first.key_id == again.key_id != other.key_id
    assert len(first.key_id) == 12
    assert int(first.key_id, 16) >= 0
    assert first.key_id not in SECRET.encode().hex()
    assert again.open(first.seal(TOKEN, ROW), ROW, key_id=first.key_id) == TOKEN  # a restart


def test_a_key_shorter_than_the_floor_is_refused() -> None:
    with pytest.raises(SecretKeyUnusable):
        SecretBox(b"x" * (MIN_SECRET - 1))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "secret.key"


@pytest.mark.parametrize(
    ("key", "file_holds", "expected"),
    [
        (SECRET, None, SECRET.encode()),
        (f"  {SECRET}\n", None, SECRET.encode()),  # whitespace around is not part of it
        (None, f"{SECRET}\n", SECRET.encode()),  # `echo ... > file`: the same key
        ("", bytes(range(256)), bytes(range(256))),  # raw random bytes; "" is unset
        (None, b"\xff" * MIN_SECRET, b"\xff" * MIN_SECRET),
    ],
)
def test_the_key_comes_from_the_setting_or_the_file(
    key_file: Path, key: str | None, file_holds: str | bytes | None, expected: bytes
) -> None:
    if file_holds is not None:
        key_file.write_bytes(file_holds if isinstance(file_holds, bytes) else file_holds.encode())
    assert load_secret_key(key, key_file if file_holds is not None else None) == expected


@pytest.mark.parametrize(
    ("key", "file_holds", "says"),
    [
        (None, None, "BOT_SECRET_KEY or BOT_SECRET_KEY_FILE is required"),
        ("   ", None, "BOT_SECRET_KEY or BOT_SECRET_KEY_FILE is required"),
        (SECRET, SECRET, "set BOT_SECRET_KEY or BOT_SECRET_KEY_FILE, not both"),
        ("short-key-31-characters-long-xx", None, "BOT_SECRET_KEY has 31 characters"),
        (None, "missing", "BOT_SECRET_KEY_FILE: there is no file"),
        (None, "directory", "cannot be read"),
        (None, "short-key-in-a-file\n", "holds 19 bytes"),
        (None, "\n\n", "holds 0 bytes"),
    ],
)
def test_an_unusable_key_is_refused_in_words_without_the_key(
    key_file: Path, key: str | None, file_holds: str | None, says: str
) -> None:
    if file_holds == "directory":
        key_file.mkdir()
    elif file_holds not in (None, "missing"):
        key_file.write_text(file_holds)
    with pytest.raises(SecretKeyUnusable) as refused:
        load_secret_key(key, key_file if file_holds is not None else None)
    message = str(refused.value)
    assert says in message
    assert isinstance(refused.value, ValueError)  # a settings validator may raise it as is
    for secret in filter(None, (key and key.strip(), file_holds and file_holds.strip())):
        if secret not in ("missing", "directory"):
            assert secret not in message
    if "required" in says or "characters" in says or "bytes" in says:
        assert "secrets.token_urlsafe" in message  # how to make one
