"""Token tables: refresh tokens, password-reset and e-mail verification tokens (seed 004), and
access tokens (seed 000's ``ia_tokens``).

Every token is stored only as a keyed digest (:class:`~authmodels.security.hashing.TokenHasher`).
Rows converted from seed 004's unkeyed SHA-256 hashes hold the keyed digest of that hex string
(``digest_scheme`` 2). Look a presented token up with :func:`token_lookup_clause` (the ORM) or
:func:`token_lookup_sql` with :func:`token_lookup_params` (text SQL): one indexed query over the
candidates of both schemes under every key, which also requires the stored ``digest_scheme`` to
be the scheme of the candidate that matched.

That second condition is what keeps a pre-upgrade copy of the database worthless. Before
revision 0005 the tables held ``sha256(raw).hexdigest()``; whoever has such a copy could present
that hex string itself as a token, and its scheme-1 candidate ``HMAC(key, hex)`` *is* the
scheme-2 digest stored for the real token. A lookup on ``token_hash = ANY(candidates)`` alone
would accept it; these functions do not.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg import postgres
from psycopg.adapt import Dumper
from sqlalchemy import (
    BindParameter,
    CheckConstraint,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy import table as sql_table
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.orm import Mapped, QueryableAttribute, mapped_column
from sqlalchemy.types import TypeEngine

from authmodels.errors import InvalidInputError, InvalidTokenError
from authmodels.models.base import Base, session_reference, user_reference, uuid_pk
from authmodels.models.checks import token_digest
from authmodels.security.hashing import TokenHasher

#: ``digest_scheme`` of a keyed digest of the raw token (every token issued since 0005).
DIGEST_SCHEME_RAW = 1
#: ``digest_scheme`` of a keyed digest of the legacy ``sha256(raw).hexdigest()`` (converted rows).
DIGEST_SCHEME_LEGACY_SHA256_HEX = 2


class Candidates(list[bytes]):
    """The digests a presented token is looked up by: a ``list`` of ``bytes``, sent to
    PostgreSQL as one ``bytea[]`` literal.

    psycopg adapts a ``list`` element by element in Python, which cost a validation about as
    much time as the statement's round trip (``benchmarks/bench_hot_path.py``); a list of this
    type is written as the array's text form in one pass (:class:`_CandidatesDumper`). It is
    still a list wherever else it goes (SQLAlchemy's ``ARRAY`` binds, comparisons).
    """

    __slots__ = ()


class _CandidatesDumper(Dumper):
    """A :class:`Candidates` as the text form of a ``bytea[]``: ``{"\\x<hex>",...}``."""

    oid = postgres.types["bytea"].array_oid

    def dump(self, obj: Any) -> bytes:
        return b"{" + b",".join(b'"\\\\x' + digest.hex().encode() + b'"' for digest in obj) + b"}"


psycopg.adapters.register_dumper(Candidates, _CandidatesDumper)


def token_lookup_params(hasher: TokenHasher, raw: str) -> dict[str, list[bytes]]:
    """The bind parameters of :func:`token_lookup_sql` for the presented token ``raw``.

    ``candidates`` holds the digests of both schemes under every key of ``hasher``;
    ``raw_candidates`` the scheme-1 ones among them (each a :class:`Candidates`).

    Raises:
        InvalidTokenError: ``raw`` is not text that can be a token (not a string, or not
            encodable as UTF-8).
    """
    try:
        legacy_hex = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    except (AttributeError, UnicodeEncodeError):
        raise InvalidTokenError("the token is not one this server issued") from None
    raw_candidates = hasher.candidates(raw)
    return {
        "candidates": Candidates([*raw_candidates, *hasher.candidates(legacy_hex)]),
        "raw_candidates": Candidates(raw_candidates),
    }


def _lookup_condition(
    token_hash: ColumnElement[bytes] | QueryableAttribute[bytes],
    digest_scheme: ColumnElement[int] | QueryableAttribute[int],
    candidates: BindParameter[Any],
    raw_candidates: BindParameter[Any],
) -> ColumnElement[bool]:
    """The rule, once: the token is a candidate, and its scheme is the matching candidate's.

    The candidates reach the index condition through a scalar subquery: the planner then cannot
    see the array's contents, so a prepared statement's custom plans cost the same as its
    generic plan and PostgreSQL keeps the generic one (``plan_cache_mode = auto``) instead of
    planning the statement again on every execution -- which cost the session lookup about
    two thirds of its server time (``docs/benchmarks.md``, "One round trip on the hot path").
    """
    hidden = cast(select(cast(candidates, _CANDIDATES_TYPE)).scalar_subquery(), _CANDIDATES_TYPE)
    return and_(
        token_hash == any_(hidden),
        digest_scheme
        == case(
            (token_hash == any_(raw_candidates), literal_column(str(DIGEST_SCHEME_RAW))),
            else_=literal_column(str(DIGEST_SCHEME_LEGACY_SHA256_HEX)),
        ),
    )


_CANDIDATES_TYPE: TypeEngine[Any] = ARRAY(LargeBinary)
#: PostgreSQL without a driver's bind casts, with ``:name`` placeholders as ``text()`` reads them.
_NAMED_PARAMS = PGDialect(paramstyle="named")  # type: ignore[no-untyped-call]


def token_lookup_clause(model: type[Base], hasher: TokenHasher, raw: str) -> ColumnElement[bool]:
    """The WHERE clause that finds the row of the presented token ``raw`` (ORM)::

        session = db.execute(
            select(Session).where(token_lookup_clause(Session, hasher, presented))
        ).scalar_one_or_none()

    Served by the ``token_hash`` index; the bind parameters are unique, so one statement may
    hold several lookups.

    Args:
        model: :class:`~authmodels.models.Session`, :class:`RefreshToken`,
            :class:`PasswordResetToken`, :class:`EmailVerificationToken`, or an alias of one.
        hasher: the key ring the tokens were digested with.
        raw: the token as presented.

    Raises:
        InvalidTokenError: ``raw`` cannot be a token (see :func:`token_lookup_params`).
        InvalidInputError: ``model`` has no ``token_hash`` and ``digest_scheme`` columns.
    """
    token_hash = getattr(model, "token_hash", None)
    digest_scheme = getattr(model, "digest_scheme", None)
    if token_hash is None or digest_scheme is None:
        raise InvalidInputError(
            f"{getattr(model, '__name__', model)!s} has no token_hash and digest_scheme: pass "
            "Session, RefreshToken, PasswordResetToken or EmailVerificationToken (or an alias)",
            field="model",
        )
    params = token_lookup_params(hasher, raw)
    return _lookup_condition(
        token_hash,
        digest_scheme,
        bindparam("candidates", params["candidates"], _CANDIDATES_TYPE, unique=True),
        bindparam("raw_candidates", params["raw_candidates"], _CANDIDATES_TYPE, unique=True),
    )


def token_lookup_sql(table: str) -> str:
    """The same condition as SQL text, for ``table`` (the name or alias used in the query),
    with the bind parameters ``:candidates`` and ``:raw_candidates`` of
    :func:`token_lookup_params`::

        db.execute(
            text(f"SELECT id FROM auth.sessions WHERE {token_lookup_sql('sessions')}"),
            token_lookup_params(hasher, presented),
        )

    Args:
        table: a table name or alias (an SQL identifier, not user input).
    """
    named = sql_table(
        table, column("token_hash", LargeBinary), column("digest_scheme", SmallInteger)
    )
    condition = _lookup_condition(
        named.c.token_hash,
        named.c.digest_scheme,
        bindparam("candidates", type_=_CANDIDATES_TYPE),
        bindparam("raw_candidates", type_=_CANDIDATES_TYPE),
    )
    return str(condition.compile(dialect=_NAMED_PARAMS))


def _digest_scheme() -> Mapped[int]:
    return mapped_column(SmallInteger, server_default=text(str(DIGEST_SCHEME_RAW)))


def _expires_after_created() -> CheckConstraint:
    return CheckConstraint("expires_at > created_at", name="expires_after_created")


def _digest_scheme_check() -> CheckConstraint:
    return CheckConstraint(
        f"digest_scheme IN ({DIGEST_SCHEME_RAW}, {DIGEST_SCHEME_LEGACY_SHA256_HEX})",
        name="digest_scheme_known",
    )


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), sort_order=100)


class RefreshToken(Base):
    """One refresh token of a session; rotation links each token to its parent (a family)."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        # serves the retention policy (revision 0016)
        Index("ix_refresh_tokens_retention", text("least(expires_at, used_at, revoked_at)")),
        _digest_scheme_check(),
        _expires_after_created(),
        token_digest("token_hash"),
        Index("ix_refresh_tokens_token_hash", "token_hash"),
        Index("ix_refresh_tokens_session_id", "session_id"),
        Index("ix_refresh_tokens_expires_at", "expires_at"),
        # the foreign keys' indexes (revision 0021)
        Index(
            "ix_refresh_tokens_parent_token_id",
            "parent_token_id",
            postgresql_where=text("parent_token_id IS NOT NULL"),
        ),
        Index("ix_refresh_tokens_user_id", "user_id"),
        # live tokens and their DPoP binding, read by auth.dpop_coverage() (revision 0030)
        Index(
            "ix_refresh_tokens_live_expires_at",
            "expires_at",
            postgresql_include=["dpop_jkt"],
            postgresql_where=text("used_at IS NULL AND revoked_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    """Primary key, generated by the database."""

    user_id: Mapped[uuid.UUID] = user_reference()
    """The user the token was issued to."""

    session_id: Mapped[uuid.UUID] = session_reference(cascade=True)
    """The session the token refreshes (deleted with it; checked by a trigger, revision 0018)."""

    parent_token_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("auth.refresh_tokens.id", ondelete="SET NULL")
    )
    """The token this one replaced at rotation (NULL for the first of a family)."""

    token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    """Keyed digest of the token (see ``digest_scheme``)."""

    digest_scheme: Mapped[int] = _digest_scheme()
    """1: digest of the raw token; 2: digest of its legacy SHA-256 hex (converted in 0005)."""

    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """End of the token's lifetime."""

    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the token was exchanged for its successor (a second use means theft)."""

    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the token (or its family) was revoked."""

    dpop_jkt: Mapped[str | None] = mapped_column(Text)
    """JWK thumbprint (RFC 7638) of the DPoP key the token is bound to (RFC 9449)."""

    created_at: Mapped[datetime] = _created_at()
    """When the token was issued."""


class PasswordResetToken(Base):
    """A single-use password-reset link."""

    __tablename__ = "password_reset_tokens"
    __table_args__ = (
        # serves the retention policy (revision 0016)
        Index("ix_password_reset_tokens_retention", text("least(expires_at, used_at)")),
        _digest_scheme_check(),
        _expires_after_created(),
        token_digest("token_hash"),
        token_digest("ip_hash"),
        token_digest("ua_hash"),
        Index("ix_password_reset_tokens_user_id", "user_id"),
        Index("ix_password_reset_tokens_token_hash", "token_hash"),
        Index("ix_password_reset_tokens_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    """Primary key, generated by the database."""

    user_id: Mapped[uuid.UUID] = user_reference()
    """The user whose password the link resets."""

    token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    """Keyed digest of the token (see ``digest_scheme``)."""

    digest_scheme: Mapped[int] = _digest_scheme()
    """1: digest of the raw token; 2: digest of its legacy SHA-256 hex (converted in 0005)."""

    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """End of the link's lifetime (one hour by default)."""

    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the link was used (it cannot be used twice)."""

    ip_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    """Keyed hash of the address the reset was requested from (:meth:`PrivacyHasher.ip_hash`)."""

    ua_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    """Keyed hash of the ``User-Agent`` the reset was requested with (revision 0025)."""

    created_at: Mapped[datetime] = _created_at()
    """When the link was issued."""


class EmailVerificationToken(Base):
    """A single-use link proving control of an e-mail address (sign-up or address change)."""

    __tablename__ = "email_verification_tokens"
    __table_args__ = (
        # serves the retention policy (revision 0016)
        Index("ix_email_verification_tokens_retention", text("least(expires_at, verified_at)")),
        _digest_scheme_check(),
        _expires_after_created(),
        token_digest("token_hash"),
        Index("ix_email_verification_tokens_user_id", "user_id"),
        Index("ix_email_verification_tokens_token_hash", "token_hash"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    """Primary key, generated by the database."""

    user_id: Mapped[uuid.UUID] = user_reference()
    """The user who asked for the verification."""

    email: Mapped[str] = mapped_column(Text)
    """The address being verified (may differ from ``users.email`` during a change)."""

    token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    """Keyed digest of the token (see ``digest_scheme``)."""

    digest_scheme: Mapped[int] = _digest_scheme()
    """1: digest of the raw token; 2: digest of its legacy SHA-256 hex (converted in 0005)."""

    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """End of the link's lifetime (24 hours by default)."""

    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the link was used."""

    created_at: Mapped[datetime] = _created_at()
    """When the link was issued."""


class AccessToken(Base):
    """A bearer access token issued to a client (seed 000's ``ia_tokens``)."""

    __tablename__ = "access_tokens"
    __table_args__ = (
        _expires_after_created(),
        token_digest("token_hash"),
        # serves the retention policy (revision 0016)
        Index("ix_access_tokens_retention", text("least(expires_at, revoked_at)")),
        Index("uq_access_tokens_token_hash", "token_hash", unique=True),
        Index("idx_tokens_user_expires", "user_id", "expires_at"),
        Index("idx_tokens_jkt", "dpop_jkt"),
        Index("idx_tokens_revoked", "revoked_at", postgresql_where=text("revoked_at IS NOT NULL")),
        Index("ix_access_tokens_session_id_created_at", "session_id", "created_at"),
        Index(
            "ix_access_tokens_rotated_from",
            "rotated_from",
            postgresql_where=text("rotated_from IS NOT NULL"),
        ),
        # live tokens and their DPoP binding, read by auth.dpop_coverage() (revision 0030)
        Index(
            "ix_access_tokens_live_expires_at",
            "expires_at",
            postgresql_include=["dpop_jkt"],
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    """Primary key, generated by the database."""

    token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    """Keyed digest of the token (``TokenHasher.digest(token)``)."""

    user_id: Mapped[uuid.UUID] = user_reference()
    """The user the token was issued to."""

    client_id: Mapped[str | None] = mapped_column(Text)
    """OAuth client the token was issued to."""

    scope: Mapped[str | None] = mapped_column(Text)
    """Space-separated scopes granted."""

    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """End of the token's lifetime."""

    dpop_jkt: Mapped[str | None] = mapped_column(Text)
    """JWK thumbprint (RFC 7638) of the DPoP key the token is bound to (RFC 9449)."""

    rotated_from: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("auth.access_tokens.id", ondelete="SET NULL")
    )
    """The token this one replaced (rotation lineage)."""

    session_id: Mapped[uuid.UUID | None] = session_reference(cascade=True)
    """The session the token was issued from (revoking the session revokes it, deleting it deletes
    the token; checked by a trigger, revision 0018); NULL for tokens issued before revision 0014
    or outside a session."""

    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the token was revoked."""

    created_at: Mapped[datetime] = _created_at()
    """When the token was issued."""
