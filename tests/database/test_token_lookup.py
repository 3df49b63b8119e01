"""The public token lookup (``authmodels.models.token_lookup_*``): a token converted from seed
004's SHA-256 hashes (``digest_scheme`` 2) is found by its raw value, and the unkeyed hex string
a pre-upgrade copy of the database holds is refused, through the ORM clause and the text SQL
alike."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session, aliased

from authmodels.errors import InvalidInputError, InvalidTokenError
from authmodels.models import (
    DIGEST_SCHEME_LEGACY_SHA256_HEX,
    DIGEST_SCHEME_RAW,
    AccessToken,
    RefreshToken,
    User,
    token_lookup_clause,
    token_lookup_params,
    token_lookup_sql,
)
from authmodels.models import Session as SessionModel
from authmodels.security.hashing import TokenHasher
from authmodels.testing.factories import UserFactory
from authmodels.testing.plugin import TestKeys

RAW = "legacy-token-issued-by-the-seed-004-application"
LEGACY_HEX = hashlib.sha256(RAW.encode()).hexdigest()  # what a pre-0005 dump holds


@pytest.fixture
def hasher(authmodels_keys: TestKeys) -> TokenHasher:
    return TokenHasher.from_ring(authmodels_keys.hash_keys)


@pytest.fixture
def insert_session(
    authmodels_session: Session, authmodels_user_factory: UserFactory
) -> Callable[[bytes, int], SessionModel]:
    db = authmodels_session
    user: User = authmodels_user_factory()

    def insert(token_hash: bytes, scheme: int) -> SessionModel:
        row = db.execute(
            text(
                "INSERT INTO auth.sessions (user_id, token_hash, digest_scheme, expires_at) "
                "VALUES (:u, :h, :s, now() + interval '1 day') RETURNING id"
            ),
            {"u": user.id, "h": token_hash, "s": scheme},
        ).scalar_one()
        found = db.get(SessionModel, row)
        assert found is not None
        return found

    return insert


def test_a_converted_token_is_found_by_its_raw_value_and_not_by_its_legacy_hex(
    authmodels_session: Session,
    hasher: TokenHasher,
    insert_session: Callable[[bytes, int], SessionModel],
) -> None:
    db = authmodels_session
    # revision 0005 keyed the stored hex: token_hash = HMAC(key, sha256(raw).hexdigest())
    converted = insert_session(hasher.digest(LEGACY_HEX), DIGEST_SCHEME_LEGACY_SHA256_HEX)

    # the hex string's own scheme-1 candidate is that very digest: a lookup on the candidates
    # alone would take the dump's value for the token
    assert converted.token_hash in token_lookup_params(hasher, LEGACY_HEX)["candidates"]

    def orm(raw: str) -> list[SessionModel]:
        query = select(SessionModel).where(token_lookup_clause(SessionModel, hasher, raw))
        return list(db.execute(query).scalars())

    def sql(raw: str) -> list[object]:
        return list(
            db.execute(
                text(f"SELECT s.id FROM auth.sessions AS s WHERE {token_lookup_sql('s')}"),
                token_lookup_params(hasher, raw),
            ).scalars()
        )

    assert orm(RAW) == [converted] and sql(RAW) == [converted.id]
    assert orm(LEGACY_HEX) == [] and sql(LEGACY_HEX) == []


def test_a_token_issued_since_0005_is_found_and_its_sha256_hex_is_not(
    authmodels_session: Session,
    hasher: TokenHasher,
    insert_session: Callable[[bytes, int], SessionModel],
) -> None:
    db = authmodels_session
    issued = insert_session(hasher.digest(RAW), DIGEST_SCHEME_RAW)

    def orm(raw: str) -> list[SessionModel]:
        query = select(SessionModel).where(token_lookup_clause(SessionModel, hasher, raw))
        return list(db.execute(query).scalars())

    assert orm(RAW) == [issued]
    assert orm(LEGACY_HEX) == []


def test_the_clause_works_on_an_alias_and_twice_in_one_statement(
    authmodels_session: Session,
    hasher: TokenHasher,
    insert_session: Callable[[bytes, int], SessionModel],
) -> None:
    db = authmodels_session
    first = insert_session(hasher.digest(RAW), DIGEST_SCHEME_RAW)
    second = insert_session(hasher.digest("another-raw-token"), DIGEST_SCHEME_RAW)
    alias = aliased(SessionModel)
    found = db.execute(
        select(alias.id).where(
            or_(
                token_lookup_clause(alias, hasher, RAW),
                token_lookup_clause(alias, hasher, "another-raw-token"),
            )
        )
    ).scalars()
    assert set(found) == {first.id, second.id}
    assert (
        db.execute(
            select(RefreshToken.id).where(token_lookup_clause(RefreshToken, hasher, RAW))
        ).all()
        == []
    )


@pytest.mark.parametrize("raw", ["\ud800", 42, None], ids=["lone-surrogate", "int", "none"])
def test_a_value_that_cannot_be_a_token_is_an_invalid_token(
    hasher: TokenHasher, raw: object
) -> None:
    with pytest.raises(InvalidTokenError):
        token_lookup_params(hasher, raw)  # type: ignore[arg-type]
    with pytest.raises(InvalidTokenError):
        token_lookup_clause(SessionModel, hasher, raw)  # type: ignore[arg-type]


def test_a_model_without_a_digest_scheme_is_refused(hasher: TokenHasher) -> None:
    """Access tokens have one scheme only: look them up with ``hasher.candidates``."""
    with pytest.raises(InvalidInputError, match="has no token_hash and digest_scheme"):
        token_lookup_clause(AccessToken, hasher, RAW)
