"""Argon2id password hashing. Cheap parameters (allow_weak) wherever cost is not under test."""

from __future__ import annotations

import argon2
import pytest

from authmodels.errors import InsecureParametersError, MalformedHashError
from authmodels.security import UNUSABLE_PASSWORD, PasswordHasher, is_usable, make_unusable

CHEAP = {"time_cost": 1, "memory_cost": 64, "parallelism": 1, "allow_weak": True}


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(**CHEAP)  # type: ignore[arg-type]


def test_hash_and_verify(hasher: PasswordHasher) -> None:
    stored = hasher.hash("correct horse")
    assert stored.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert hasher.verify(stored, "correct horse")
    assert hasher.verify(stored, "correct horse ") is False
    assert hasher.verify(stored, "") is False
    assert hasher.hash("correct horse") != stored  # random salt


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plaintext",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkq",  # a bcrypt hash cut short
        "pbkdf2_sha256$many$salt$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs=",
        "pbkdf2_sha256$99999999999$salt$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs=",
        "$pbkdf2-sha256$1000$salt$not*base64",
        "$argon2id$v=19$m=64,t=1,p=1$abc",
        "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$",
    ],
)
def test_malformed_hash_raises(hasher: PasswordHasher, stored: str) -> None:
    with pytest.raises(MalformedHashError):
        hasher.verify(stored, "pw")


def test_needs_rehash_and_verify_and_update_on_parameter_change(hasher: PasswordHasher) -> None:
    stored = hasher.hash("pw")
    stronger = PasswordHasher(time_cost=2, memory_cost=128, allow_weak=True)
    assert not hasher.needs_rehash(stored)
    assert stronger.needs_rehash(stored)

    assert stronger.verify_and_update(stored, "wrong") == (False, None)
    ok, new = stronger.verify_and_update(stored, "pw")
    assert ok and new is not None
    assert new.startswith("$argon2id$v=19$m=128,t=2,p=1$")
    assert stronger.verify(new, "pw")
    assert not stronger.needs_rehash(new)
    assert stronger.verify_and_update(new, "pw") == (True, None)


def test_unusable_password(hasher: PasswordHasher) -> None:
    assert make_unusable() == UNUSABLE_PASSWORD
    assert UNUSABLE_PASSWORD.startswith("!")
    assert not is_usable(UNUSABLE_PASSWORD)
    assert not is_usable(None)
    assert is_usable(hasher.hash("x"))
    for password in ("", "!unusable", UNUSABLE_PASSWORD, "anything"):
        assert hasher.verify(UNUSABLE_PASSWORD, password) is False
    assert hasher.verify(None, "x") is False
    assert hasher.verify_and_update(UNUSABLE_PASSWORD, "x") == (False, None)
    assert hasher.needs_rehash(UNUSABLE_PASSWORD) is False
    with pytest.raises(argon2.exceptions.InvalidHashError):
        argon2.extract_parameters(UNUSABLE_PASSWORD)  # can never be an Argon2 hash


def test_unusable_and_dummy_run_a_real_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    """verify(UNUSABLE) and verify_dummy verify against a hash made with the same parameters."""
    hasher = PasswordHasher(**CHEAP)  # type: ignore[arg-type]
    seen: list[str] = []
    real_verify = argon2.PasswordHasher.verify

    def spy(self: argon2.PasswordHasher, stored: str, password: str) -> bool:
        seen.append(stored)
        return real_verify(self, stored, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", spy)
    assert hasher.verify_dummy("pw") is False
    assert hasher.verify(UNUSABLE_PASSWORD, "pw") is False
    assert len(seen) == 2 and seen[0] == seen[1]
    params = argon2.extract_parameters(seen[0])
    assert params == hasher.parameters


def test_weak_parameters_refused_without_allow_weak() -> None:
    for kwargs in (
        {"time_cost": 1},
        {"memory_cost": 19455},
        {"salt_len": 8},
        {"hash_len": 8},
    ):
        with pytest.raises(InsecureParametersError, match="allow_weak"):
            PasswordHasher(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InsecureParametersError, match="positive"):
        PasswordHasher(parallelism=0, allow_weak=True)
    assert PasswordHasher(time_cost=1, memory_cost=64, allow_weak=True).parameters.time_cost == 1


def test_defaults_are_owasp_minimum() -> None:
    params = PasswordHasher().parameters  # constructing costs nothing; no hash is computed
    assert (params.type, params.memory_cost, params.time_cost, params.parallelism) == (
        argon2.Type.ID,
        19456,
        2,
        1,
    )
    assert (params.hash_len, params.salt_len) == (32, 16)
