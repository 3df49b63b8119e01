"""Access tokens (issue, validate, revoke, DPoP binding) and DPoP proofs with the ``jti`` replay
store, on a real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from authmodels import rls
from authmodels.errors import (
    DPoPBindingMismatch,
    DPoPMalformedError,
    DPoPMethodMismatch,
    DPoPReplayError,
    InvalidTokenError,
    NotAuthorizedError,
    TokenExpiredError,
    TokenRevokedError,
)
from authmodels.models import User
from authmodels.security.dpop import sign_proof
from authmodels.services import FlowSettings, sessions, tokens, use_settings
from authmodels.testing.plugin import null_pool_engine
from tests.services.helpers import assert_no_raw_values, audit_events, count, snapshot

URL = "https://api.example.com/resource"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def other_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def proof(key: ec.EllipticCurvePrivateKey, **claims: object) -> str:
    return sign_proof(key, htm=claims.pop("htm", "GET"), htu=URL, **claims)  # type: ignore[arg-type]


# --- access tokens -----------------------------------------------------------------------------


def test_issued_access_token_validates_and_is_stored_as_a_digest(
    db: Session, user: User, settings: FlowSettings
) -> None:
    issued = tokens.issue_access_token(db, user, client_id="cli", scope="read")

    found = tokens.validate_access_token(db, issued.token)

    assert (found.id, found.user_id, found.client_id, found.scope) == (
        issued.id,
        user.id,
        "cli",
        "read",
    )
    assert issued.token_type == "Bearer" and found.expires_at == issued.expires_at
    assert settings.hasher.matches(issued.token, found.token_hash)
    assert_no_raw_values(db, [issued.token])
    assert issued.token not in repr(issued)


def test_access_token_lifetime_is_configurable(db: Session, user: User) -> None:
    issued = tokens.issue_access_token(db, user, ttl=timedelta(seconds=30))
    created = db.execute(
        text("SELECT created_at FROM auth.access_tokens WHERE id = :i"), {"i": issued.id}
    ).scalar_one()
    assert issued.expires_at - created == timedelta(seconds=30)


def test_unknown_access_token_is_invalid(db: Session, user: User) -> None:
    tokens.issue_access_token(db, user)
    before = snapshot(db)
    for presented in ("nope", "", "é" * 600):
        with pytest.raises(InvalidTokenError):
            tokens.validate_access_token(db, presented)
    assert snapshot(db) == before


def test_expired_access_token_is_refused(db: Session, user: User) -> None:
    issued = tokens.issue_access_token(db, user)
    db.execute(
        text(
            "UPDATE auth.access_tokens SET created_at = now() - interval '1 h', "
            "expires_at = now() - interval '1 s' WHERE id = :i"
        ),
        {"i": issued.id},
    )
    before = snapshot(db)
    with pytest.raises(TokenExpiredError):
        tokens.validate_access_token(db, issued.token)
    assert snapshot(db) == before


def test_revoked_access_token_is_refused_and_revocation_is_idempotent(
    db: Session, user: User
) -> None:
    issued = tokens.issue_access_token(db, user)

    assert tokens.revoke_access_token(db, issued.token) is True
    before = snapshot(db)
    assert tokens.revoke_access_token(db, issued.token) is False
    assert tokens.revoke_access_token(db, "never-issued") is False
    assert snapshot(db) == before
    with pytest.raises(TokenRevokedError):
        tokens.validate_access_token(db, issued.token)
    assert audit_events(db, user.id) == [("access_token_revoked", "success")]


def test_access_token_of_a_revoked_session_is_refused(db: Session, user: User) -> None:
    session = sessions.create_session(db, user, ttl=timedelta(hours=1))
    issued = tokens.issue_access_token(db, user, session_id=session.session.id)
    # revoke only the session row: the session is the kill switch, whatever the token's row says
    db.execute(
        text("UPDATE auth.sessions SET is_active = false, revoked_at = now() WHERE id = :i"),
        {"i": session.session.id},
    )
    with pytest.raises(TokenRevokedError):
        tokens.validate_access_token(db, issued.token)


def test_access_token_does_not_outlive_its_session(db: Session, user: User) -> None:
    session = sessions.create_session(db, user, ttl=timedelta(minutes=5))
    issued = tokens.issue_access_token(
        db, user, session_id=session.session.id, ttl=timedelta(hours=1)
    )
    assert tokens.validate_access_token(db, issued.token).id == issued.id
    # the session ends (its own expiry), while the token's hour is not over
    db.execute(
        text(
            "UPDATE auth.sessions SET created_at = now() - interval '1 h', "
            "expires_at = now() - interval '1 s' WHERE id = :i"
        ),
        {"i": session.session.id},
    )
    with pytest.raises(TokenExpiredError):
        tokens.validate_access_token(db, issued.token)


def test_dpop_bound_access_token_needs_a_proof_of_its_key(db: Session, user: User) -> None:
    jkt, other = "a" * 43, "b" * 43
    issued = tokens.issue_access_token(db, user, dpop_jkt=jkt)
    assert issued.token_type == "DPoP"
    before = snapshot(db)

    for presented in (None, other):
        with pytest.raises(DPoPBindingMismatch):
            tokens.validate_access_token(db, issued.token, dpop_jkt=presented)

    assert snapshot(db) == before
    assert audit_events(db, user.id) == [("dpop_binding_mismatch", "blocked")] * 2
    assert tokens.validate_access_token(db, issued.token, dpop_jkt=jkt).id == issued.id


def test_rotated_from_records_the_lineage(db: Session, user: User) -> None:
    first = tokens.issue_access_token(db, user)
    second = tokens.issue_access_token(db, user, rotated_from=first.id)
    assert tokens.validate_access_token(db, second.token).rotated_from == first.id


# --- DPoP proofs and the replay store -------------------------------------------------------


def test_valid_proof_is_accepted_once_and_its_jti_recorded(
    db: Session, key: ec.EllipticCurvePrivateKey, settings: FlowSettings
) -> None:
    made = proof(key, jti="jti-1")

    verified = tokens.check_dpop_proof(db, made, htm="GET", htu=URL)

    row = db.execute(text("SELECT * FROM auth.dpop_jtis")).one()
    assert (row.jkt, row.jti) == (verified.jkt, "jti-1")
    assert row.expires_at == verified.iat + settings.dpop_max_age + settings.dpop_leeway
    before = snapshot(db)
    with pytest.raises(DPoPReplayError, match="already used"):
        tokens.check_dpop_proof(db, made, htm="GET", htu=URL)
    assert snapshot(db) == before
    assert audit_events(db) == [("dpop_proof_replayed", "blocked")]


def test_the_same_jti_from_another_key_is_another_proof(
    db: Session, key: ec.EllipticCurvePrivateKey, other_key: ec.EllipticCurvePrivateKey
) -> None:
    tokens.check_dpop_proof(db, proof(key, jti="shared"), htm="GET", htu=URL)
    tokens.check_dpop_proof(db, proof(other_key, jti="shared"), htm="GET", htu=URL)
    assert count(db, "dpop_jtis", "jti = 'shared'") == 2


def test_a_stale_jti_may_be_used_again_by_a_new_proof(
    db: Session, key: ec.EllipticCurvePrivateKey
) -> None:
    tokens.check_dpop_proof(db, proof(key, jti="again"), htm="GET", htu=URL)
    db.execute(text("UPDATE auth.dpop_jtis SET expires_at = now() - interval '1 s'"))
    tokens.check_dpop_proof(db, proof(key, jti="again"), htm="GET", htu=URL)
    assert count(db, "dpop_jtis", "jti = 'again' AND expires_at > now()") == 1


def test_invalid_proof_is_refused_before_anything_is_recorded(
    db: Session, key: ec.EllipticCurvePrivateKey
) -> None:
    before = snapshot(db)
    with pytest.raises(DPoPMethodMismatch):
        tokens.check_dpop_proof(db, proof(key, htm="POST"), htm="GET", htu=URL)
    with pytest.raises(DPoPMalformedError, match="jti"):
        tokens.check_dpop_proof(db, proof(key, jti="j" * 257), htm="GET", htu=URL)
    assert snapshot(db) == before


def test_proof_for_an_access_token_checks_ath_and_binds(
    db: Session, user: User, key: ec.EllipticCurvePrivateKey
) -> None:
    probe = tokens.check_dpop_proof(db, proof(key), htm="GET", htu=URL)
    issued = tokens.issue_access_token(db, user, dpop_jkt=probe.jkt)

    verified = tokens.check_dpop_proof(
        db, proof(key, access_token=issued.token), htm="GET", htu=URL, access_token=issued.token
    )

    assert tokens.validate_access_token(db, issued.token, dpop_jkt=verified.jkt).id == issued.id


def test_32_concurrent_presentations_of_one_proof_accept_exactly_one(
    fresh: Callable[..., sessionmaker[Session]], key: ec.EllipticCurvePrivateKey
) -> None:
    factory = fresh()
    made = proof(key, jti="raced")
    threads = 32
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []
    lock = threading.Lock()

    def present() -> None:
        with factory() as db:
            barrier.wait()
            try:
                tokens.check_dpop_proof(db, made, htm="GET", htu=URL)
                db.commit()
                result = "accepted"
            except DPoPReplayError:
                result = "replay"
            with lock:
                outcomes.append(result)

    workers = [threading.Thread(target=present) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert outcomes.count("accepted") == 1 and outcomes.count("replay") == threads - 1
    with factory() as db:
        assert count(db, "dpop_jtis") == 1
        assert audit_events(db).count(("dpop_proof_replayed", "blocked")) == threads - 1


def test_purge_removes_expired_jtis_only(db: Session, key: ec.EllipticCurvePrivateKey) -> None:
    for jti in ("old-1", "old-2", "live"):
        tokens.check_dpop_proof(db, proof(key, jti=jti), htm="GET", htu=URL)
    db.execute(
        text("UPDATE auth.dpop_jtis SET expires_at = now() - interval '1 s' WHERE jti <> 'live'")
    )
    assert db.execute(text("SELECT auth.purge_expired_dpop_jtis(1)")).scalar_one() == 1
    assert db.execute(text("SELECT auth.purge_expired_dpop_jtis()")).scalar_one() == 1
    assert db.execute(text("SELECT jti FROM auth.dpop_jtis")).scalars().all() == ["live"]


# --- row-level security -------------------------------------------------------------------------


@pytest.fixture
def roles(authmodels_fresh_engine: Engine) -> Iterator[tuple[Engine, str]]:
    """An application login role (RLS applies to it) that is a member of a service role."""
    suffix = uuid.uuid4().hex[:10]
    app, service = f"app_{suffix}", f"svc_{suffix}"
    with authmodels_fresh_engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {app} LOGIN"))
        conn.execute(text(f"CREATE ROLE {service}"))
        rls.grant_app_role(conn, app)
        rls.grant_service_role(conn, service)
        conn.execute(text(f"GRANT {service} TO {app}"))
    engine = null_pool_engine(authmodels_fresh_engine.url.set(username=app))
    try:
        yield engine, service
    finally:
        engine.dispose()
        with authmodels_fresh_engine.begin() as conn:
            rls.revoke_service_role(conn, service)
            for role in (app, service):
                conn.execute(text(f"DROP OWNED BY {role}"))
                conn.execute(text(f"DROP ROLE {role}"))


def test_replay_store_is_closed_to_the_application_role_and_open_to_the_service_path(
    roles: tuple[Engine, str], settings: FlowSettings, key: ec.EllipticCurvePrivateKey
) -> None:
    engine, service = roles
    with Session(engine) as db:
        use_settings(db, settings)
        with pytest.raises(NotAuthorizedError, match="row-level security"):
            tokens.check_dpop_proof(db, proof(key), htm="GET", htu=URL)
        db.rollback()

        with db.begin(), rls.service_role(db, service):
            verified = tokens.check_dpop_proof(db, proof(key, jti="svc"), htm="GET", htu=URL)
        with db.begin():
            # outside the service path the application sees no row of the store
            assert db.execute(text("SELECT count(*) FROM auth.dpop_jtis")).scalar_one() == 0
        assert verified.jti == "svc"


def test_session_flows_run_on_the_service_path(
    roles: tuple[Engine, str], settings: FlowSettings, authmodels_fresh_engine: Engine
) -> None:
    engine, service = roles
    with Session(authmodels_fresh_engine, expire_on_commit=False) as owner:
        user = User(email="rls@example.com", password_hash="!unusable")
        owner.add(user)
        owner.commit()
    with Session(engine) as db:
        use_settings(db, settings)
        with db.begin(), rls.service_role(db, service):
            issued = sessions.create_session(db, user, ttl=timedelta(hours=1))
        with db.begin(), rls.service_role(db, service):
            pair = sessions.rotate_refresh_token(db, issued.refresh_token)
            assert sessions.validate_session(db, issued.session_token).user_id == user.id
        with db.begin():  # as the user: own rows only
            rls.set_current_user(db, user.id)
            assert tokens.validate_access_token(db, pair.access_token).user_id == user.id
        with db.begin(), pytest.raises(InvalidTokenError):  # no user, no service role: no row
            sessions.validate_session(db, issued.session_token)
    assert datetime.now(UTC) < pair.expires_at
