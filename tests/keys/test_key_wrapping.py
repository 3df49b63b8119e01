"""RFC 5649 key wrap: the ``file`` provider's (``cryptography``) gives the RFC's published
vectors; the ``pkcs11`` provider's (inside SoftHSM2, ``CKM_AES_KEY_WRAP_PAD``) unwraps them, gives
the same bytes as ``cryptography`` for the keys authmodels makes, and each unwraps the other's."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives.keywrap import (
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)
from pkcs11 import Attribute, KeyType, ObjectClass

from authmodels.config import PKCS11_PIN_VAR
from authmodels.errors import KeyProviderError
from authmodels.security.keys import FileKek, Pkcs11Kek, Pkcs11Uri, WrappedKey
from authmodels.testing.softhsm import SoftHsm

# RFC 5649 section 6: a 192-bit KEK, a 20-octet and a 7-octet key
RFC_KEK = bytes.fromhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
RFC_VECTORS = [
    (
        bytes.fromhex("c37b7e6492584340bed12207808941155068f738"),
        bytes.fromhex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"),
    ),
    (bytes.fromhex("466f7250617369"), bytes.fromhex("afbeb0f07dfbf5419200f2ccb50bb24f")),
]


@pytest.mark.parametrize(("key", "wrapped"), RFC_VECTORS, ids=["20-octets", "7-octets"])
def test_the_file_providers_implementation_gives_the_rfc_5649_vectors(
    key: bytes, wrapped: bytes
) -> None:
    assert aes_key_wrap_with_padding(RFC_KEK, key) == wrapped
    assert aes_key_unwrap_with_padding(RFC_KEK, wrapped) == key


def _import_kek(hsm: SoftHsm, label: str, value: bytes) -> None:
    """Put a KEK of known value in the token (only tests do that: a real KEK is generated
    inside the token and cannot be read)."""
    token = pkcs11.lib(str(hsm.module)).get_token(token_label=hsm.token)
    with token.open(user_pin=hsm.pin, rw=True) as session:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.LABEL: label,
                Attribute.TOKEN: True,
                Attribute.VALUE: value,
                Attribute.WRAP: True,
                Attribute.UNWRAP: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
            }
        )


def _kek(hsm: SoftHsm, label: str) -> Pkcs11Kek:
    return Pkcs11Kek(Pkcs11Uri.parse(hsm.uri(label)), {PKCS11_PIN_VAR: hsm.pin})


@pytest.mark.parametrize(("key", "wrapped"), RFC_VECTORS, ids=["20-octets", "7-octets"])
def test_the_token_unwraps_the_rfc_5649_vectors(
    authmodels_softhsm: SoftHsm, kek_label: str, key: bytes, wrapped: bytes
) -> None:
    _import_kek(authmodels_softhsm, kek_label, RFC_KEK)
    kek = _kek(authmodels_softhsm, kek_label)
    assert kek.unwrap([WrappedKey(kek_label, wrapped)]) == [key]


@pytest.mark.parametrize(("key", "wrapped"), RFC_VECTORS, ids=["20-octets", "7-octets"])
def test_a_token_that_wraps_a_key_otherwise_than_rfc_5649_is_refused_before_anything_is_stored(
    authmodels_softhsm: SoftHsm, kek_label: str, key: bytes, wrapped: bytes
) -> None:
    """SoftHSM 2.6 pads a key to a multiple of 8 bytes before wrapping it, so its
    ``CKM_AES_KEY_WRAP_PAD`` output for these keys is not RFC 5649's and unwraps to a longer
    key: the provider checks every wrap by unwrapping it, and refuses one that does not give the
    key back (a conforming token gives the RFC's bytes)."""
    _import_kek(authmodels_softhsm, kek_label, RFC_KEK)
    kek = _kek(authmodels_softhsm, kek_label)
    try:
        result = kek.wrap([key])
    except KeyProviderError as refused:
        assert "does not give back a" in str(refused)
    else:
        assert result == [WrappedKey(kek_label, wrapped)]


def test_the_token_and_cryptography_wrap_alike_and_unwrap_each_other(
    authmodels_softhsm: SoftHsm, kek_label: str, tmp_path: Path
) -> None:
    kek_value = secrets.token_bytes(32)
    _import_kek(authmodels_softhsm, kek_label, kek_value)
    token = _kek(authmodels_softhsm, kek_label)
    data_keys = [secrets.token_bytes(n) for n in (32, 40, 48, 64)]

    in_token = token.wrap(data_keys)
    assert [w.wrapped for w in in_token] == [
        aes_key_wrap_with_padding(kek_value, k) for k in data_keys
    ]
    assert [aes_key_unwrap_with_padding(kek_value, w.wrapped) for w in in_token] == data_keys

    # the file provider, holding the same KEK under the same id, reads what the token wrapped
    key_file = tmp_path / "kek"
    key_file.write_text(f"{kek_label}:{base64.b64encode(kek_value).decode()}\n")
    key_file.chmod(0o600)
    file_kek = FileKek(key_file)
    assert file_kek.unwrap(in_token) == data_keys
    assert token.unwrap(file_kek.wrap(data_keys)) == data_keys


def test_a_kek_made_by_authmodels_cannot_be_read_out_of_the_token(
    authmodels_softhsm: SoftHsm, kek_label: str
) -> None:
    kek = _kek(authmodels_softhsm, kek_label)
    kek.create(kek_label)
    lib = pkcs11.lib(str(authmodels_softhsm.module))
    token = lib.get_token(token_label=authmodels_softhsm.token)
    with token.open(user_pin=authmodels_softhsm.pin) as session:
        stored = session.get_key(object_class=ObjectClass.SECRET_KEY, label=kek_label)
        assert (stored[Attribute.SENSITIVE], stored[Attribute.EXTRACTABLE]) == (True, False)
        assert (stored[Attribute.WRAP], stored[Attribute.UNWRAP]) == (True, True)
        assert (stored[Attribute.ENCRYPT], stored[Attribute.DECRYPT]) == (False, False)
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            stored[Attribute.VALUE]
    data_key = secrets.token_bytes(32)
    assert kek.unwrap(kek.wrap([data_key])) == [data_key]
