"""Legacy password hashes brought from other systems: read with published vectors and hashes
made by an independent library (passlib), and replaced by Argon2id at the next login."""

from __future__ import annotations

import pytest
from passlib.hash import django_pbkdf2_sha256, pbkdf2_sha256

from authmodels.errors import MalformedHashError
from authmodels.security.passwords import LEGACY_SCHEMES, PasswordHasher, hash_scheme

CHEAP = {"time_cost": 1, "memory_cost": 64, "parallelism": 1, "allow_weak": True}

#: Openwall's crypt_blowfish test vectors (wrapper.c), the reference bcrypt implementations use.
BCRYPT_VECTORS = [
    ("$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"),
    ("$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK", "U*U*"),
    ("$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a", "U*U*U"),
    ("$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy", ""),
    # bcrypt reads 72 bytes: the systems that made these hashes ignored the rest
    (
        "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui",
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        "chars after 72 are ignored",
    ),
]
#: PBKDF2-HMAC-SHA256(P="password", S="salt", c=1, dkLen=32), the widely published vector
#: (120fb6cf fcf8b32c 43e72252 56c4f837 a86548c9 2ccc3548 0805987c b70be17b), in Django's format.
DJANGO_VECTOR = "pbkdf2_sha256$1$salt$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs="


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(**CHEAP)  # type: ignore[arg-type]


@pytest.mark.parametrize(("stored", "password"), BCRYPT_VECTORS)
def test_bcrypt_vectors_verify(hasher: PasswordHasher, stored: str, password: str) -> None:
    assert hash_scheme(stored) == "bcrypt"
    assert hasher.verify(stored, password)
    assert not hasher.verify(stored, password + "x" if len(password) < 72 else "x" + password)


def test_bcrypt_2b_and_2y_prefixes_are_the_same_algorithm(hasher: PasswordHasher) -> None:
    stored, password = BCRYPT_VECTORS[0]
    for prefix in ("$2b$", "$2y$"):
        assert hasher.verify(prefix + stored[4:], password)


def test_django_pbkdf2_vector_and_passlib_hashes_verify(hasher: PasswordHasher) -> None:
    assert hash_scheme(DJANGO_VECTOR) == "django_pbkdf2_sha256"
    assert hasher.verify(DJANGO_VECTOR, "password")
    assert not hasher.verify(DJANGO_VECTOR, "Password")
    for password in ("lètmein", "correct horse battery staple", "x" * 200):
        django = django_pbkdf2_sha256.using(rounds=1000).hash(password)
        passlib = pbkdf2_sha256.using(rounds=1000).hash(password)
        assert (hash_scheme(django), hash_scheme(passlib)) == (
            "django_pbkdf2_sha256",
            "passlib_pbkdf2_sha256",
        )
        assert hasher.verify(django, password) and hasher.verify(passlib, password)
        assert not hasher.verify(django, password[:-1]) and not hasher.verify(passlib, "nope")


def test_django_argon2_hashes_verify(hasher: PasswordHasher) -> None:
    stored = "argon2" + hasher.hash("pw")  # what Django's Argon2PasswordHasher stores
    assert hash_scheme(stored) == "django_argon2"
    assert hasher.verify(stored, "pw") and not hasher.verify(stored, "px")


@pytest.mark.parametrize(
    "stored",
    [BCRYPT_VECTORS[0][0], DJANGO_VECTOR, pbkdf2_sha256.using(rounds=1000).hash("password")],
)
def test_a_legacy_hash_is_replaced_by_argon2id_on_a_right_password_only(
    hasher: PasswordHasher, stored: str
) -> None:
    password = "U*U" if stored.startswith("$2") else "password"
    assert hasher.needs_rehash(stored)
    ok, new = hasher.verify_and_update(stored, password)
    assert ok and new is not None and hash_scheme(new) == "argon2"
    assert hasher.verify(new, password) and not hasher.needs_rehash(new)
    assert hasher.verify_and_update(stored, "wrong") == (False, None)


def test_a_hasher_without_legacy_schemes_refuses_them(hasher: PasswordHasher) -> None:
    strict = PasswordHasher(**CHEAP, legacy_schemes=())  # type: ignore[arg-type]
    for stored in (BCRYPT_VECTORS[0][0], DJANGO_VECTOR):
        with pytest.raises(MalformedHashError, match="does not read"):
            strict.verify(stored, "password")
    assert set(LEGACY_SCHEMES) == {
        "bcrypt",
        "django_pbkdf2_sha256",
        "passlib_pbkdf2_sha256",
        "django_argon2",
    }


def test_unknown_and_unusable_values_have_their_scheme() -> None:
    assert hash_scheme(None) == hash_scheme("!unusable") == "unusable"
    assert hash_scheme("md5$abc") == "unknown"
