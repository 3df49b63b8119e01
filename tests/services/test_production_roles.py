"""Every public flow as production runs it: a login role that is a member of the application
role, row-level security on, the service path only where a flow looks up before its user is
known.

Each test names the flows it covers (:func:`covers`); the last test derives the public flows from
``authmodels.services`` (every function of a module's ``__all__`` that takes a database session)
and fails if one is not run here, so a new flow cannot be left to the owner-only tests.

Where each flow runs -- what the docstrings of the services say:

- on the **service path** (``rls.service_role``, no user named): the lookups of a presented
  credential (sessions, refresh and access tokens, DPoP proofs, API keys, WebAuthn assertions),
  login, the device flow (its requests belong to no user until one is approved), role changes,
  password changes (they write the password history), the OAuth refresh job; the account
  lifecycle's requests and links (sign-up, reset, magic links, recovery, verification links),
  the devices seen at login, the delivery logs' status changes;
- **as the user** (``rls.set_current_user``): everything done for a signed-in user (asking for a
  verification link or an address change, trusting and revoking devices, cancelling a
  recovery, logging a mail to oneself).
"""

from __future__ import annotations

import inspect
import pkgutil
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import import_module
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL as DatabaseURL
from sqlalchemy.orm import Session
from webauthn import verify_registration_response

from authmodels import errors, rls
from authmodels.db import create_db_engine, pooler_of
from authmodels.locking import RowNotFoundError
from authmodels.models import User
from authmodels.security import e2ee as e2ee_keys
from authmodels.security import totp
from authmodels.security.dpop import sign_proof
from authmodels.services import (
    FlowSettings,
    admin,
    api_keys,
    audit,
    delivery,
    device_flow,
    devices,
    e2ee,
    email_verification,
    magic_links,
    mfa,
    oauth,
    password_reset,
    passwords,
    recovery,
    reencryption,
    security_events,
    sessions,
    signup,
    step_up,
    tokens,
    use_settings,
    webauthn,
)
from authmodels.testing.factories import (
    DEFAULT_PASSWORD,
    TEST_PASSWORD_HASHER,
    ServicePathUserFactory,
)
from authmodels.testing.pgbouncer import PgBouncer
from authmodels.testing.roles import TestRoles
from tests.services.test_sessions import JKT
from tests.services.test_webauthn import ORIGIN, RP_ID, SoftwareAuthenticator

TTL = timedelta(hours=1)
URL = "https://api.example.com/resource"
IP = "203.0.113.9"

COVERED: set[str] = set()


# --- every test twice: on a direct connection, and through PgBouncer in transaction mode -------


@pytest.fixture(scope="module", params=["direct", "pgbouncer"])
def authmodels_connect_url(request: pytest.FixtureRequest) -> Callable[[DatabaseURL], DatabaseURL]:
    """The plugin's engine fixtures connect directly, then through a real PgBouncer
    (``pool_mode = transaction``): each transaction may run on another server connection."""
    if request.param == "direct":
        return lambda url: url
    bouncer: PgBouncer = request.getfixturevalue("authmodels_pgbouncer")
    return bouncer.url


@pytest.fixture(scope="module")
def authmodels_app_engine(
    authmodels_database_url: DatabaseURL,
    authmodels_roles: TestRoles,
    authmodels_connect_url: Callable[[DatabaseURL], DatabaseURL],
) -> Iterator[Engine]:
    """The plugin's fixture again, at the scope of the route above."""
    engine = create_db_engine(authmodels_connect_url(authmodels_roles.url(authmodels_database_url)))
    try:
        yield engine
    finally:
        engine.dispose()


def covers(*flows: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a test as running ``flows`` (``"module.function"``) under the production roles."""
    COVERED.update(flows)
    return lambda test: test


@dataclass
class Production:
    """A session of the application's login role, and the two ways a request runs."""

    db: Session
    roles: TestRoles
    users: ServicePathUserFactory

    @contextmanager
    def service(self) -> Iterator[Session]:
        """The service path, naming no user."""
        with rls.service_role(self.db, self.roles.service), rls.as_user(self.db, None):
            yield self.db

    @contextmanager
    def as_user(self, user: User) -> Iterator[Session]:
        """A request of ``user``."""
        with rls.as_user(self.db, user.id):
            yield self.db

    def role(self) -> str:
        return str(self.db.execute(text("SELECT current_user")).scalar_one())


@pytest.fixture
def prod(
    authmodels_app_session: Session,
    authmodels_roles: TestRoles,
    authmodels_app_user_factory: ServicePathUserFactory,
    settings: FlowSettings,
) -> Production:
    use_settings(
        authmodels_app_session,
        settings.replace(password_hasher=TEST_PASSWORD_HASHER, refresh_grace_window=timedelta(0)),
    )
    assert authmodels_app_session.execute(text("SELECT current_user")).scalar_one() == (
        authmodels_roles.login
    )
    return Production(authmodels_app_session, authmodels_roles, authmodels_app_user_factory)


def owner_count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def test_the_flows_take_the_route_the_module_names(
    authmodels_app_engine: Engine, request: pytest.FixtureRequest
) -> None:
    route = request.node.callspec.params["authmodels_connect_url"]
    with authmodels_app_engine.connect() as conn:
        assert pooler_of(conn) == {"direct": "direct", "pgbouncer": "transaction"}[route]
        prepared = conn.connection.driver_connection.prepare_threshold
    assert (prepared is None) == (route == "pgbouncer")


# --- sign in, sessions, refresh ---------------------------------------------------------------


@covers(
    "passwords.authenticate",
    "sessions.create_session",
    "sessions.validate_session",
    "sessions.rotate_refresh_token",
    "sessions.touch",
    "sessions.revoke_session",
)
def test_sign_in_refresh_and_sign_out(prod: Production) -> None:
    ada = prod.users(email="ada@example.com")
    with prod.service() as db:  # the login form: nobody is known yet
        user = passwords.authenticate(
            db, "ADA@example.com", DEFAULT_PASSWORD, ip=IP, user_agent="UA"
        )
        issued = sessions.create_session(db, user, ttl=TTL, ip=IP, user_agent="UA")
    assert user.id == ada.id and prod.role() == prod.roles.login

    with prod.service() as db:  # a request presents its session token
        session = sessions.validate_session(db, issued.session_token)
        pair = sessions.rotate_refresh_token(db, issued.refresh_token)
    assert session.user_id == ada.id and pair.user_id == ada.id

    with prod.as_user(ada) as db:  # the rest of the request runs as Ada
        assert sessions.touch(db, session.id) is True
        assert sessions.revoke_session(db, session.id, reason="logout") is True
    with prod.service() as db, pytest.raises(errors.SessionRevokedError):
        sessions.validate_session(db, issued.session_token)


@covers("sessions.validate_session_alone")
def test_a_request_validates_its_session_alone_only_on_the_service_path(prod: Production) -> None:
    ada = prod.users()
    with prod.service() as db:
        issued = sessions.create_session(db, ada, ttl=TTL)
    with prod.service() as db:  # inside the service path's transaction
        session = sessions.validate_session_alone(db, issued.session_token)
    assert session.user_id == ada.id and prod.role() == prod.roles.login
    prod.db.commit()
    # on its own as the application's role, the lookup sees no session: refused, not an error
    with pytest.raises(errors.InvalidTokenError):
        sessions.validate_session_alone(prod.db, issued.session_token)
    with prod.as_user(ada) as db:
        assert sessions.revoke_session(db, session.id, reason="logout") is True
    with prod.service() as db, pytest.raises(errors.SessionRevokedError):
        sessions.validate_session_alone(db, issued.session_token)


@covers("sessions.SessionValidator.validate")
def test_a_validator_finds_sessions_only_through_a_service_role_login(
    prod: Production,
    authmodels_fresh_engine: Engine,
    authmodels_fresh_database: DatabaseURL,
    authmodels_connect_url: Callable[[DatabaseURL], DatabaseURL],
    authmodels_test_server: Any,
    settings: FlowSettings,
) -> None:
    """The validator's pool logs in as a role registered with ``auth.grant_service_role`` (what
    docs/flows.md sets up); the application's login role finds no session before the user is
    known. Through PgBouncer when this module's route is (a pooler that knows the new login)."""
    with Session(authmodels_fresh_engine, expire_on_commit=False) as owner:
        use_settings(owner, settings)
        ada = ServicePathUserFactory(owner, prod.roles.service)()
        issued = sessions.create_session(owner, ada, ttl=TTL, dpop_jkt=JKT)
        owner.execute(text("UPDATE auth.sessions SET last_activity_at = now() - interval '3 min'"))
        owner.commit()
    role, password = f"lookup_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(16)
    with authmodels_fresh_engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        conn.execute(text("SELECT auth.grant_service_role(:r)"), {"r": role})
    lookup_url = authmodels_fresh_database.set(username=role, password=password)
    app_url = prod.roles.url(authmodels_fresh_database)
    bouncer = None
    if authmodels_connect_url(app_url) != app_url:  # this module's PgBouncer route
        bouncer = PgBouncer(
            authmodels_test_server.url, {role: password, prod.roles.login: prod.roles.password}
        ).start()
        lookup_url, app_url = bouncer.url(lookup_url), bouncer.url(app_url)
    lookups, app = create_db_engine(lookup_url), create_db_engine(app_url)
    try:
        validator = sessions.SessionValidator(lookups, settings=settings)
        for _ in range(8):  # past psycopg's prepare threshold
            assert validator.validate(issued.session_token, dpop_jkt=JKT).user_id == ada.id
        with pytest.raises(errors.DPoPBindingMismatch):  # audited on the service path too
            validator.validate(issued.session_token)
        validator.close()
        as_app = sessions.SessionValidator(app, settings=settings)
        with pytest.raises(errors.InvalidTokenError):
            as_app.validate(issued.session_token)
        as_app.close()
    finally:
        lookups.dispose()
        app.dispose()
        if bouncer is not None:
            bouncer.stop()
        with authmodels_fresh_engine.begin() as conn:
            conn.execute(text("SELECT auth.revoke_service_role(:r)"), {"r": role})
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
    touched, audited = (
        owner_count(
            authmodels_fresh_engine,
            "SELECT count(*) FROM auth.sessions WHERE last_activity_at > now() - interval '1 min'",
        ),
        owner_count(
            authmodels_fresh_engine,
            "SELECT count(*) FROM auth.session_audits WHERE action = 'dpop_mismatch'",
        ),
    )
    assert (touched, audited) == (1, 1)


@covers("sessions.revoke_all_sessions", "passwords.set_password")
def test_a_password_change_signs_the_user_out_everywhere(prod: Production) -> None:
    ada = prod.users()
    with prod.service() as db:
        first = sessions.create_session(db, ada, ttl=TTL)
        second = sessions.create_session(db, ada, ttl=TTL)
    with prod.service() as db:  # a password change writes the password history
        assert passwords.set_password(db, ada, "a new password", except_session=second.session.id)
    with prod.as_user(ada) as db:
        assert sessions.revoke_all_sessions(db, ada, reason="user_request") == 1
    with prod.service() as db:
        with pytest.raises(errors.SessionRevokedError):
            sessions.validate_session(db, first.session_token)
        with pytest.raises(errors.SessionRevokedError):
            sessions.validate_session(db, second.session_token)
        assert passwords.authenticate(db, ada.email, "a new password", ip=None, user_agent=None)


def test_login_refusals_are_recorded_on_the_service_path(prod: Production) -> None:
    ada = prod.users()
    with prod.service() as db:
        for _ in range(5):
            with pytest.raises(errors.InvalidCredentialsError):
                passwords.authenticate(db, ada.email, "wrong", ip=IP, user_agent="UA")
        with pytest.raises(errors.AccountLockedError):
            passwords.authenticate(db, ada.email, DEFAULT_PASSWORD, ip=IP, user_agent="UA")
        with pytest.raises(errors.InvalidCredentialsError):
            passwords.authenticate(db, "nobody@example.com", "x", ip=IP, user_agent="UA")
    assert prod.role() == prod.roles.login  # the service path ended with its block
    with prod.as_user(ada) as db:  # Ada reads her own attempts and events, nobody else's
        results = db.execute(
            text("SELECT attempt_result::text FROM auth.login_attempts ORDER BY created_at")
        ).scalars()
        assert sorted(results) == ["failed_locked"] + ["failed_password"] * 5
        kinds = db.execute(text("SELECT event_type FROM auth.security_events")).scalars().all()
        assert sorted(kinds) == ["login.account_locked", "login.locked_account_attempt"]


def test_a_reused_refresh_token_revokes_the_family_on_the_service_path(prod: Production) -> None:
    ada = prod.users()
    with prod.service() as db:
        issued = sessions.create_session(db, ada, ttl=TTL)
        sessions.rotate_refresh_token(db, issued.refresh_token)
        with pytest.raises(errors.RefreshTokenReused):
            sessions.rotate_refresh_token(db, issued.refresh_token)
        with pytest.raises(errors.SessionRevokedError):
            sessions.validate_session(db, issued.session_token)
    with prod.as_user(ada) as db:
        assert db.execute(text("SELECT event_type FROM auth.security_events")).scalars().all() == [
            "refresh_token.reused"
        ]


# --- access tokens and DPoP -------------------------------------------------------------------


@covers(
    "tokens.issue_access_token",
    "tokens.validate_access_token",
    "tokens.check_dpop_proof",
    "tokens.revoke_access_token",
)
def test_access_tokens_and_dpop(prod: Production) -> None:
    ada = prod.users()
    key = ec.generate_private_key(ec.SECP256R1())
    with prod.service() as db:
        proof = tokens.check_dpop_proof(
            db, sign_proof(key, htm="POST", htu=URL), htm="POST", htu=URL
        )
        issued = sessions.create_session(db, ada, ttl=TTL, dpop_jkt=proof.jkt)
    with prod.as_user(ada) as db:
        access = tokens.issue_access_token(
            db, ada, session_id=issued.session.id, dpop_jkt=proof.jkt, scope="read"
        )
    with prod.service() as db:
        assert tokens.validate_access_token(db, access.token, dpop_jkt=proof.jkt).user_id == ada.id
        with pytest.raises(errors.DPoPBindingMismatch):
            tokens.validate_access_token(db, access.token)
        with pytest.raises(errors.DPoPReplayError):
            tokens.check_dpop_proof(db, sign_proof(key, htm="GET", htu=URL, jti=proof.jti),
                                    htm="GET", htu=URL)  # fmt: skip
    with prod.as_user(ada) as db:
        assert tokens.revoke_access_token(db, access.token) is True
    with prod.service() as db, pytest.raises(errors.TokenRevokedError):
        tokens.validate_access_token(db, access.token, dpop_jkt=proof.jkt)


# --- the device flow ----------------------------------------------------------------------------


@covers("device_flow.start", "device_flow.approve", "device_flow.deny", "device_flow.poll")
def test_device_authorization_grant(prod: Production) -> None:
    ada = prod.users()
    with prod.service() as db:  # the device asks; nobody is known
        first = device_flow.start(db, client_id="tv", scope="read")
        second = device_flow.start(db, client_id="tv", scope="read")
        with pytest.raises(errors.AuthorizationPending):
            device_flow.poll(db, first.device_code)
    with prod.service() as db:  # Ada, signed in on her phone, types the codes
        device_flow.approve(db, first.user_code, ada)
        device_flow.deny(db, second.user_code, ada)
        with pytest.raises(errors.InvalidUserCode):
            device_flow.approve(db, "BCDF-GHJK", ada)
    with prod.service() as db:
        pair = device_flow.poll(db, first.device_code)
        with pytest.raises(errors.AccessDenied):
            device_flow.poll(db, second.device_code)
    assert pair.user_id == ada.id
    with prod.service() as db:
        assert tokens.validate_access_token(db, pair.access_token).user_id == ada.id


# --- step-up tokens and role changes ----------------------------------------------------------


@covers("step_up.issue", "step_up.consume", "admin.change_role")
def test_step_up_and_a_role_change(prod: Production) -> None:
    grace = prod.users(role="admin")
    ada = prod.users()
    with prod.as_user(grace) as db:  # Grace re-authenticated: a step-up token for her
        token = step_up.issue(db, grace, ttl=timedelta(minutes=5))
        spare = step_up.issue(db, grace, ttl=timedelta(minutes=5), purpose="account.delete")
        step_up.consume(db, grace, spare, purpose="account.delete")
        with pytest.raises(errors.StepUpTokenUsed):
            step_up.consume(db, grace, spare, purpose="account.delete")
    with prod.service() as db:  # changing someone else's role: the service path, no user named
        promoted = admin.change_role(db, actor=grace, target=ada, role="admin", step_up_token=token)
    assert promoted.role == "admin"


# --- second factors ---------------------------------------------------------------------------


@covers(
    "mfa.enroll",
    "mfa.confirm",
    "mfa.verify",
    "mfa.use_backup_code",
    "mfa.regenerate_backup_codes",
    "mfa.disable",
)
def test_totp_and_backup_codes_as_the_user(prod: Production) -> None:
    ada = prod.users()
    now = int(time.time())
    with prod.as_user(ada) as db:
        enrollment = mfa.enroll(db, ada, issuer="Shop")
        codes = mfa.confirm(db, ada, totp.code_at(enrollment.secret, now - 30), now=now)
        code = totp.code_at(enrollment.secret, now)
        assert mfa.verify(db, ada, code, now=now)
        with pytest.raises(errors.InvalidTotpCodeError):
            mfa.verify(db, ada, code, now=now)  # replayed: a security event of Ada's
        assert mfa.use_backup_code(db, ada, codes[0]) == len(codes) - 1
        with pytest.raises(errors.InvalidBackupCodeError):
            mfa.use_backup_code(db, ada, codes[0])
        assert len(mfa.regenerate_backup_codes(db, ada)) == len(codes)
        assert mfa.disable(db, ada) is True
        events = db.execute(text("SELECT event_type FROM auth.security_events")).scalars().all()
    assert sorted(events) == ["mfa.backup_code_replayed", "mfa.totp_replayed"]


@covers(
    "webauthn.store_registration",
    "webauthn.verify_authentication",
    "webauthn.record_authentication",
)
def test_passkeys(prod: Production) -> None:
    ada = prod.users()
    authenticator = SoftwareAuthenticator()
    challenge = secrets.token_bytes(32)
    verified = verify_registration_response(
        credential=authenticator.register(challenge),
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
    )
    with prod.as_user(ada) as db:
        webauthn.store_registration(db, ada, verified, device_name="laptop")
    with prod.service() as db:  # the sign-in page: the credential names its user
        challenge = secrets.token_bytes(32)
        credential = webauthn.verify_authentication(
            db,
            authenticator.assert_(challenge),
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
        )
        assert credential.user_id == ada.id
        with pytest.raises(errors.SignCountRegressionError):
            challenge = secrets.token_bytes(32)
            webauthn.verify_authentication(
                db,
                authenticator.assert_(challenge, count=1),  # a clone
                expected_challenge=challenge,
                expected_rp_id=RP_ID,
                expected_origin=ORIGIN,
            )
    with prod.as_user(ada) as db:
        kinds = db.execute(text("SELECT event_type FROM auth.security_events")).scalars().all()
    assert kinds == [webauthn.SIGN_COUNT_REGRESSION_EVENT]


# --- API keys, OAuth connections, E2EE keys, the audit trail -----------------------------------


@covers("api_keys.create", "api_keys.authenticate", "api_keys.revoke")
def test_api_keys(prod: Production) -> None:
    ada = prod.users()
    with prod.as_user(ada) as db:
        created = api_keys.create(db, ada, name="ci", scopes=["read"])
    with prod.service() as db:
        assert api_keys.authenticate(db, created.key, scopes=["read"]).user_id == ada.id
    with prod.as_user(ada) as db:
        assert api_keys.revoke(db, ada, created.api_key.id) is True
    with prod.service() as db, pytest.raises(errors.ApiKeyRevokedError):
        api_keys.authenticate(db, created.key)


@covers("oauth.store_tokens", "oauth.read_tokens", "oauth.refresh_due", "oauth.record_refresh")
def test_oauth_connections(prod: Production) -> None:
    ada = prod.users()
    soon = datetime.now(UTC) + timedelta(minutes=2)
    with prod.as_user(ada) as db:
        connection = oauth.store_tokens(
            db, ada, provider="github", provider_user_id="42", access_token="gho_a",
            refresh_token="ghr_a", expires_at=soon,
        )  # fmt: skip
        assert oauth.read_tokens(db, connection.id, user=ada).access_token == "gho_a"
    with prod.service() as db:  # the refresh job works for every user
        [due] = oauth.refresh_due(db, within=timedelta(minutes=5))
        assert due.id == connection.id
        oauth.record_refresh(
            db, connection.id, status="success", access_token="gho_b",
            expires_at=soon + timedelta(hours=1),
        )  # fmt: skip
    with prod.as_user(ada) as db:
        assert oauth.read_tokens(db, connection.id, user=ada).access_token == "gho_b"


@covers("reencryption.reencrypt")
def test_reencryption_is_the_owners_job_and_refuses_the_application_role(
    prod: Production,
) -> None:
    with prod.service() as db, pytest.raises(errors.ConfigurationError, match="does not own"):
        reencryption.reencrypt(db)


@covers(
    "e2ee.register_device_key",
    "e2ee.private_key",
    "e2ee.record_key_exchange",
    "e2ee.record_failed_exchange",
)
def test_e2ee_device_keys_and_exchanges(prod: Production) -> None:
    ada, bob = prod.users(), prod.users()
    private, public = e2ee_keys.generate_key_pair()
    with prod.as_user(ada) as db:
        key = e2ee.register_device_key(db, ada, device_id="phone", public_key=public,
                                       private_key=private)  # fmt: skip
        assert e2ee.private_key(db, key) == private
        conversation = db.execute(
            text("INSERT INTO auth.conversations (created_by) VALUES (:u) RETURNING id"),
            {"u": ada.id},
        ).scalar_one()
        for member in (ada, bob):
            db.execute(
                text("INSERT INTO auth.conversation_participants (conversation_id, user_id) "
                     "VALUES (:c, :u)"),
                {"c": conversation, "u": member.id},
            )  # fmt: skip
        e2ee.record_key_exchange(db, conversation_id=conversation, initiator=ada, peer=bob,
                                 shared_secret_hash=secrets.token_bytes(32))  # fmt: skip
        e2ee.record_failed_exchange(
            db, ada, conversation_id=conversation, peer=bob, device_id="phone",
            reason="the peer's key did not verify",
        )  # fmt: skip
    with prod.as_user(bob) as db:  # Bob took part: he sees the exchange, not Ada's keys
        assert db.execute(text("SELECT count(*) FROM auth.key_exchanges")).scalar_one() >= 1
        assert db.execute(text("SELECT count(*) FROM auth.device_keys")).scalar_one() == 0


@covers("audit.record", "security_events.record", "security_events.report")
def test_the_audit_trail_and_security_events_of_a_user(prod: Production) -> None:
    ada, bob = prod.users(), prod.users()
    with prod.as_user(ada) as db:
        audit.record(db, "logout", user_id=ada.id, ip=IP, user_agent="UA")
        security_events.report(
            db, "app.suspicious_export", security_events.SecurityEventSeverity.MEDIUM,
            user_id=ada.id,
        )  # fmt: skip
        with db.begin_nested():
            security_events.record(
                db, "app.note", security_events.SecurityEventSeverity.LOW, user_id=ada.id
            )
        actor = db.execute(text("SELECT actor_user_id FROM auth.audit_logs")).scalar_one()
        assert actor == ada.id  # revision 0024: an entry written as Ada has Ada as its actor
        with (
            pytest.raises(errors.NotAuthorizedError, match="row-level security"),
            db.begin_nested(),
        ):
            audit.record(db, "logout", user_id=bob.id)  # someone else's trail: refused
        with (
            pytest.raises(errors.NotAuthorizedError, match="row-level security"),
            db.begin_nested(),
        ):
            security_events.record(
                db, "app.note", security_events.SecurityEventSeverity.LOW, user_id=bob.id
            )
    with prod.as_user(bob) as db:
        assert db.execute(text("SELECT count(*) FROM auth.security_events")).scalar_one() == 0


@covers("passwords.password_hash_schemes")
def test_legacy_hashes_are_counted_on_the_service_path(prod: Production) -> None:
    prod.users()
    with prod.as_user(prod.users()) as db:  # a user sees their own account only
        assert passwords.password_hash_schemes(db) == {"argon2": 1}
    with prod.service() as db:
        assert passwords.password_hash_schemes(db)["argon2"] >= 2


@covers("passwords.set_password")
def test_a_signed_in_user_changes_their_own_password(prod: Production) -> None:
    ada = prod.users()
    with prod.as_user(ada) as db:  # 0028: the password history takes the user's own rows
        passwords.set_password(db, ada, "a new password")
        with pytest.raises(errors.PasswordReusedError):
            passwords.set_password(db, ada, DEFAULT_PASSWORD)


def test_an_unknown_id_and_another_users_row_get_typed_errors(prod: Production) -> None:
    ada, bob = prod.users(), prod.users()
    with prod.as_user(ada) as db:
        with (
            pytest.raises(errors.NotAuthorizedError, match="row-level security"),
            db.begin_nested(),
        ):
            sessions.create_session(db, bob, ttl=TTL)  # a session for someone else
        with (
            pytest.raises(RowNotFoundError, match="does not exist, or is not visible"),
            db.begin_nested(),
        ):
            step_up.issue(db, ada, ttl=timedelta(minutes=5), session_id=uuid.uuid4())


# --- the account lifecycle -------------------------------------------------------------------


@covers(
    "signup.register",
    "email_verification.verify",
    "email_verification.request_verification",
    "email_verification.request_email_change",
    "delivery.mark_sent",
    "delivery.record_callback",
)
def test_sign_up_verify_and_change_the_address(prod: Production) -> None:
    with prod.service() as db:  # the sign-up form: nobody is signed in
        signed_up = signup.register(db, "Grace@Example.com", "a long passphrase", ip=IP)
        taken = signup.register(db, "grace@example.com", "another passphrase", ip=IP)
        delivery.mark_sent(db, signed_up.message.id, provider_message_id="m-1")
        assert delivery.record_callback(
            db, channel="email", provider="email", provider_message_id="m-1", status="delivered"
        )
    assert signed_up.created and not taken.created and taken.message.to == "grace@example.com"
    grace = signed_up.user
    assert grace is not None and signed_up.verification is not None
    with prod.as_user(grace) as db:  # a new link, asked for by the signed-in user
        link = email_verification.request_verification(db, grace, ip=IP)
    assert link is not None
    with prod.service() as db:  # the link is clicked: no session needed
        assert not email_verification.verify(db, link.token).changed
    with prod.as_user(grace) as db:
        change = email_verification.request_email_change(db, grace, "grace@new.example", ip=IP)
    with prod.service() as db:
        verified = email_verification.verify(db, change.token)
    assert verified.changed and verified.user.email == "grace@new.example"
    assert verified.notice is not None and verified.notice.to == "grace@example.com"
    with prod.as_user(verified.user) as db:  # the limit, reached by the signed-in user
        for _ in range(3):
            email_verification.request_email_change(db, grace, "grace@third.example", ip=IP)
        with pytest.raises(errors.TooManyRequestsError):
            email_verification.request_email_change(db, grace, "grace@third.example", ip=IP)


@covers("password_reset.request", "password_reset.complete", "delivery.mark_failed")
def test_a_password_reset_by_link(prod: Production) -> None:
    ada = prod.users()
    with prod.service() as db:
        asked = password_reset.request(db, ada.email, ip=IP, user_agent="UA")
        nobody = password_reset.request(db, "nobody@example.com", ip=IP, user_agent="UA")
        assert asked.token is not None and asked.message is not None and nobody.token is None
        assert delivery.mark_failed(db, asked.message.id, error="mailbox full")
        done = password_reset.complete(db, asked.token, "a brand new passphrase", ip=IP)
        assert done.user_id == ada.id
        with pytest.raises(errors.TokenAlreadyUsedError):
            password_reset.complete(db, asked.token, "yet another passphrase")
        assert passwords.authenticate(db, ada.email, "a brand new passphrase", ip=None,
                                      user_agent=None)  # fmt: skip
    with prod.as_user(ada) as db:  # Ada sees her own events and the limit's ledger
        kinds = db.execute(text("SELECT event_type FROM auth.security_events")).scalars().all()
        assert sorted(kinds) == ["password_reset.completed", "password_reset.token_reused"]
        assert db.execute(text("SELECT count(*) FROM auth.flow_requests")).scalar_one() == 1


@covers("magic_links.request", "magic_links.redeem")
def test_a_magic_link_bound_to_its_browser(prod: Production) -> None:
    ada = prod.users()
    with prod.service() as db:
        link = magic_links.request(db, ada.email, ip=IP, bind_to="cookie-1")
        assert link.token is not None
        with pytest.raises(errors.MagicLinkClientMismatch):
            magic_links.redeem(db, link.token, client="cookie-2")
        assert magic_links.redeem(db, link.token, client="cookie-1", ip=IP).id == ada.id


@covers("recovery.start", "recovery.complete", "recovery.start_with_code", "recovery.cancel")
def test_recovery_by_verified_address_and_by_code(prod: Production) -> None:
    ada = prod.users(email_verified=True)
    with prod.service() as db:
        started = recovery.start(db, ada.email, ip=IP)
        assert started.token is not None
        recovered = recovery.complete(db, started.token, "a recovered passphrase")
    assert recovered.method == "email" and recovered.user_id == ada.id
    with prod.as_user(ada) as db:  # cooling off: the signed-in user cannot change credentials
        for change in (
            lambda: passwords.set_password(db, ada, "a third passphrase"),
            lambda: mfa.enroll(db, ada, issuer="Shop"),
        ):
            with pytest.raises(errors.RecoveryCoolingOffError), db.begin_nested():
                change()
    now = int(time.time())
    bob = prod.users()
    with prod.as_user(bob) as db:
        secret = mfa.enroll(db, bob, issuer="Shop").secret
        codes = mfa.confirm(db, bob, totp.code_at(secret, now - 30), now=now)
    with prod.service() as db:
        token = recovery.start_with_code(db, bob.email, codes[0], ip=IP)
        other = recovery.start_with_code(db, bob.email, codes[1], ip=IP)
    with prod.as_user(bob) as db:  # "that was not me": the pending request goes
        assert recovery.cancel(db, bob) == 1
    with prod.service() as db:
        with pytest.raises(errors.TokenRevokedError):
            recovery.complete(db, other, "a recovered passphrase")
        with pytest.raises(errors.TokenRevokedError):  # the newer request had cancelled it
            recovery.complete(db, token, "a recovered passphrase")


@covers(
    "devices.record_login",
    "devices.trust",
    "devices.is_trusted",
    "devices.list_devices",
    "devices.revoke",
    "delivery.log_email",
    "delivery.log_sms",
)
def test_trusted_devices_and_their_sessions(prod: Production) -> None:
    ada = prod.users()
    with prod.service() as db:  # the login: the device is seen, its session names it
        seen = devices.record_login(db, ada, "laptop-cookie", ip=IP, user_agent="UA")
        issued = sessions.create_session(db, ada, ttl=TTL, device=seen.device)
        delivery.log_sms(db, "+442071838750", template="new_device", user=ada)
    assert seen.new
    with prod.as_user(ada) as db:  # Ada trusts it, after re-authenticating
        token = step_up.issue(db, ada, ttl=timedelta(minutes=5), purpose=devices.TRUST_PURPOSE)
        trusted = devices.trust(db, ada, seen.device, step_up_token=token)
        assert [d.id for d in devices.list_devices(db, ada)] == [seen.device.id]
        delivery.log_email(db, ada.email, template="device_trusted", user=ada)
    with prod.service() as db:
        assert devices.is_trusted(db, ada, "laptop-cookie", trusted.token)
        assert not devices.is_trusted(db, ada, "phone-cookie", trusted.token)
    with prod.as_user(ada) as db:  # revoking the device ends its session
        assert devices.revoke(db, ada, seen.device) == 1
    with prod.service() as db, pytest.raises(errors.SessionRevokedError):
        sessions.validate_session(db, issued.session_token)


# --- the flows' own transactions, for real, under the production roles ------------------------


@covers("durable.durable")
def test_refusals_commit_on_their_own_and_leave_the_callers_transaction_alone(
    authmodels_app_fresh_engine: Engine,
    authmodels_fresh_engine: Engine,
    authmodels_roles: TestRoles,
    settings: FlowSettings,
) -> None:
    with Session(authmodels_fresh_engine, expire_on_commit=False) as owner:
        ada = ServicePathUserFactory(owner, authmodels_roles.service)()
        owner.commit()
    chosen = settings.replace(password_hasher=TEST_PASSWORD_HASHER)
    with Session(authmodels_app_fresh_engine) as db:
        use_settings(db, chosen)
        roles_seen = []
        with (  # a request that fails: its transaction is rolled back
            pytest.raises(errors.InvalidCredentialsError),
            db.begin(),
            rls.service_role(db, authmodels_roles.service),
        ):
            db.execute(text("INSERT INTO auth.app_logs (level, message) VALUES ('info', 'mine')"))
            try:
                passwords.authenticate(db, ada.email, "wrong", ip=IP, user_agent="UA")
            finally:  # the flow committed nothing of the caller's: the service path is still on
                roles_seen.append(db.execute(text("SELECT current_user")).scalar_one())
        assert roles_seen == [authmodels_roles.service]
    with Session(authmodels_fresh_engine) as owner:
        counted = owner.execute(
            text("SELECT failed_login_attempts FROM auth.users WHERE id = :u"), {"u": ada.id}
        ).scalar_one()
        attempts = owner.execute(text("SELECT count(*) FROM auth.login_attempts")).scalar_one()
        mine = owner.execute(
            text("SELECT count(*) FROM auth.app_logs WHERE message = 'mine'")
        ).scalar_one()
    assert (counted, attempts, mine) == (1, 1, 0)


def test_a_reuse_revocation_survives_the_rollback_of_a_service_path_request(
    authmodels_app_fresh_engine: Engine,
    authmodels_fresh_engine: Engine,
    authmodels_roles: TestRoles,
    settings: FlowSettings,
) -> None:
    with Session(authmodels_fresh_engine, expire_on_commit=False) as owner:
        ada = ServicePathUserFactory(owner, authmodels_roles.service)()
        owner.commit()
    with Session(authmodels_app_fresh_engine) as db:
        use_settings(db, settings.replace(refresh_grace_window=timedelta(0)))
        with db.begin(), rls.service_role(db, authmodels_roles.service):
            issued = sessions.create_session(db, ada, ttl=TTL)
            session_id = issued.session.id
            sessions.rotate_refresh_token(db, issued.refresh_token)
        with (
            pytest.raises(errors.RefreshTokenReused),
            db.begin(),
            rls.service_role(db, authmodels_roles.service),
        ):
            sessions.rotate_refresh_token(db, issued.refresh_token)
    with Session(authmodels_fresh_engine) as owner:
        live = owner.execute(
            text("SELECT is_active FROM auth.sessions WHERE id = :s"), {"s": session_id}
        ).scalar_one()
        kinds = owner.execute(text("SELECT event_type FROM auth.security_events")).scalars()
        assert (live, list(kinds)) == (False, ["refresh_token.reused"])


# --- every public flow is run above ----------------------------------------------------------


def _public_flows() -> set[str]:
    import authmodels.services as package

    flows = set()
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = import_module(f"authmodels.services.{info.name}")
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if inspect.isclass(value):  # made on an engine: its public methods reach it
                init = inspect.signature(value.__init__).parameters
                if "engine" in init:
                    flows.update(
                        f"{info.name}.{name}.{method}"
                        for method, _ in inspect.getmembers(value, inspect.isfunction)
                        if not method.startswith("_") and method != "close"
                    )
                continue
            if not inspect.isfunction(value):
                continue
            first = next(iter(inspect.signature(value).parameters.values()), None)
            if first is not None and first.name == "db":  # it reaches the database
                flows.add(f"{info.name}.{name}")
    return flows


#: Public functions that take a session but never reach the database through it.
NOT_FLOWS = {
    "settings.settings_for": "reads the session's info",
    "settings.use_settings": "writes the session's info",
    "durable.after_commit": "registers a callback",
}


def test_every_public_flow_turns_database_refusals_into_typed_errors() -> None:
    from authmodels.services._database_errors import database_errors

    wrapper = database_errors(lambda: None).__code__
    unwrapped = sorted(
        flow
        for flow in _public_flows() - NOT_FLOWS.keys() - {"durable.durable"}
        if _function(flow).__code__ is not wrapper
    )
    assert not unwrapped, f"decorate with @database_errors: {unwrapped}"


def _function(flow: str) -> Any:
    module, *names = flow.split(".")
    found: Any = import_module(f"authmodels.services.{module}")
    for name in names:
        found = getattr(found, name)
    return found


def test_every_public_flow_runs_under_the_production_roles() -> None:
    missing = sorted(_public_flows() - COVERED - NOT_FLOWS.keys())
    assert not missing, f"run these flows in {__name__} under the production roles: {missing}"
    assert not COVERED - _public_flows(), "covers() names a flow that is not public"
    assert NOT_FLOWS.keys() <= _public_flows()
