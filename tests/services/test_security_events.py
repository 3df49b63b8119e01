"""Security events: every refusal that is one writes its row, committed on its own, and the
alert hook hears of the high and critical ones once they are committed; seed 004's brute-force
and credential-stuffing questions are answered from what the login flow writes."""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from authmodels import errors
from authmodels.models import User
from authmodels.security import totp
from authmodels.security.dpop import sign_proof
from authmodels.services import (
    FlowSettings,
    admin,
    api_keys,
    device_flow,
    devices,
    email_verification,
    magic_links,
    mfa,
    password_reset,
    passwords,
    recovery,
    sessions,
    step_up,
    tokens,
    use_settings,
)
from authmodels.services.security_events import SecurityEventAlert
from authmodels.testing.factories import DEFAULT_PASSWORD, TEST_PASSWORD_HASHER, UserFactory

URL = "https://api.example.com/resource"
TTL = timedelta(hours=1)
IP = "198.51.100.20"


def events(db: Session, user_id: uuid.UUID | None = None) -> list[tuple[str, str]]:
    """(event_type, severity) of the security events, oldest first (of one user if given)."""
    rows = db.execute(
        text(
            "SELECT event_type, severity::text FROM auth.security_events "
            "WHERE CAST(:u AS uuid) IS NULL OR user_id = :u ORDER BY created_at, id"
        ),
        {"u": user_id},
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


# --- every refusal that is a security event writes one ---------------------------------------


def _reused_refresh_token(db: Session, users: UserFactory) -> uuid.UUID:
    user = users()
    issued = sessions.create_session(db, user, ttl=TTL)
    sessions.rotate_refresh_token(db, issued.refresh_token)
    with pytest.raises(errors.RefreshTokenReused):
        sessions.rotate_refresh_token(db, issued.refresh_token)
    return user.id


def _dpop_binding_mismatch(db: Session, users: UserFactory) -> uuid.UUID:
    user = users()
    jkt = secrets.token_urlsafe(32)  # the thumbprint of the client's DPoP key
    issued = sessions.create_session(db, user, ttl=TTL, dpop_jkt=jkt)
    with pytest.raises(errors.DPoPBindingMismatch):
        sessions.validate_session(db, issued.session_token)  # no proof
    return user.id


def _dpop_proof_replayed(db: Session, users: UserFactory) -> None:
    proof = sign_proof(ec.generate_private_key(ec.SECP256R1()), htm="GET", htu=URL)
    tokens.check_dpop_proof(db, proof, htm="GET", htu=URL)
    with pytest.raises(errors.DPoPReplayError):
        tokens.check_dpop_proof(db, proof, htm="GET", htu=URL)


def _wrong_passwords(db: Session, user: User, times: int) -> None:
    for _ in range(times):
        with pytest.raises((errors.InvalidCredentialsError, errors.AccountLockedError)):
            passwords.authenticate(db, user.email, "not the password", ip=IP, user_agent="UA")


def _account_locked(db: Session, users: UserFactory) -> uuid.UUID:
    user = users()
    _wrong_passwords(db, user, 5)  # the fifth locks the account
    return user.id


def _locked_account_attempt(db: Session, users: UserFactory) -> uuid.UUID:
    user = users()
    _wrong_passwords(db, user, 5)
    with pytest.raises(errors.AccountLockedError):
        passwords.authenticate(db, user.email, DEFAULT_PASSWORD, ip=IP, user_agent="UA")
    return user.id


def _deleted_account_attempt(db: Session, users: UserFactory) -> uuid.UUID:
    user = users()
    db.execute(text("UPDATE auth.users SET deleted_at = now() WHERE id = :u"), {"u": user.id})
    with pytest.raises(errors.AccountDeletedError):
        passwords.authenticate(db, user.email, DEFAULT_PASSWORD, ip=IP, user_agent="UA")
    return user.id


def _user_code_attempts_exceeded(db: Session, users: UserFactory) -> uuid.UUID:
    user = users()
    for _ in range(5):
        with pytest.raises(errors.InvalidUserCode):
            device_flow.approve(db, "BCDF-GHJK", user)
    with pytest.raises(errors.TooManyUserCodeAttempts):
        device_flow.approve(db, "BCDF-GHJK", user)
    return user.id


def _totp_replayed(db: Session, users: UserFactory) -> uuid.UUID:
    user = users()
    now = int(time.time())
    enrollment = mfa.enroll(db, user, issuer="authmodels")
    mfa.confirm(db, user, totp.code_at(enrollment.secret, now - 30), now=now)
    code = totp.code_at(enrollment.secret, now)
    mfa.verify(db, user, code, now=now)
    with pytest.raises(errors.InvalidTotpCodeError):
        mfa.verify(db, user, code, now=now + 1)  # the same code again, seen by someone else
    return user.id


def _backup_code_replayed(db: Session, users: UserFactory) -> uuid.UUID:
    user = users()
    now = int(time.time())
    enrollment = mfa.enroll(db, user, issuer="authmodels")
    codes = mfa.confirm(db, user, totp.code_at(enrollment.secret, now - 30), now=now)
    mfa.use_backup_code(db, user, codes[0])
    with pytest.raises(errors.InvalidBackupCodeError):
        mfa.use_backup_code(db, user, codes[0])
    return user.id


def _step_up_token_reused(db: Session, users: UserFactory) -> uuid.UUID:
    user = users()
    token = step_up.issue(db, user, ttl=timedelta(minutes=5))
    step_up.consume(db, user, token)
    with pytest.raises(errors.StepUpTokenUsed):
        step_up.consume(db, user, token)
    return user.id


def _revoked_api_key_used(db: Session, users: UserFactory) -> uuid.UUID:
    user = users()
    created = api_keys.create(db, user, name="ci")
    api_keys.revoke(db, user, created.api_key.id)
    with pytest.raises(errors.ApiKeyRevokedError):
        api_keys.authenticate(db, created.key)
    return user.id


def _unauthorized_role_change(db: Session, users: UserFactory) -> uuid.UUID:
    actor, target = users(), users()
    token = step_up.issue(db, actor, ttl=timedelta(minutes=5))
    with pytest.raises(errors.NotAuthorizedError):
        admin.change_role(db, actor=actor, target=target, role="admin", step_up_token=token)
    return actor.id


def _admin_guard_refused(db: Session, users: UserFactory) -> uuid.UUID:
    master = users(role="admin", is_master_admin=True)
    actor = users(role="admin")
    token = step_up.issue(db, actor, ttl=timedelta(minutes=5))
    with pytest.raises(errors.MasterAdminProtectedError):
        admin.change_role(db, actor=actor, target=master, role="user", step_up_token=token)
    return actor.id


def _request_limit_reached(db: Session, users: UserFactory) -> None:
    for _ in range(3):  # FlowSettings.request_limit_per_account
        password_reset.request(db, "anyone@example.com", ip=IP)
    with pytest.raises(errors.TooManyRequestsError):
        password_reset.request(db, "anyone@example.com", ip=IP)


def _reset(db: Session, users: UserFactory) -> tuple[uuid.UUID, str]:
    user = users()
    token = password_reset.request(db, user.email).token
    assert token is not None
    password_reset.complete(db, token, "a brand new passphrase")
    return user.id, token


def _reset_completed(db: Session, users: UserFactory) -> uuid.UUID:
    return _reset(db, users)[0]


def _reset_token_reused(db: Session, users: UserFactory) -> uuid.UUID:
    user_id, token = _reset(db, users)
    with pytest.raises(errors.TokenAlreadyUsedError):
        password_reset.complete(db, token, "another new passphrase")
    return user_id


def _email_changed(db: Session, users: UserFactory) -> uuid.UUID:
    user = users()
    link = email_verification.request_email_change(db, user, f"moved-{user.id}@example.com")
    email_verification.verify(db, link.token)
    return user.id


def _magic_link(db: Session, users: UserFactory, bind_to: str | None = None) -> tuple[User, str]:
    user = users()
    token = magic_links.request(db, user.email, bind_to=bind_to).token
    assert token is not None
    return user, token


def _magic_link_reused(db: Session, users: UserFactory) -> uuid.UUID:
    user, token = _magic_link(db, users)
    magic_links.redeem(db, token)
    with pytest.raises(errors.TokenAlreadyUsedError):
        magic_links.redeem(db, token)
    return user.id


def _magic_link_client_mismatch(db: Session, users: UserFactory) -> uuid.UUID:
    user, token = _magic_link(db, users, bind_to="the requesting browser")
    with pytest.raises(errors.MagicLinkClientMismatch):
        magic_links.redeem(db, token, client="another browser")
    return user.id


def _recover(db: Session, users: UserFactory) -> tuple[User, str]:
    user = users(email_verified=True)
    token = recovery.start(db, user.email).token
    assert token is not None
    recovery.complete(db, token, "a recovered passphrase")
    return user, token


def _account_recovered(db: Session, users: UserFactory) -> uuid.UUID:
    return _recover(db, users)[0].id


def _recovery_token_reused(db: Session, users: UserFactory) -> uuid.UUID:
    user, token = _recover(db, users)
    with pytest.raises(errors.TokenAlreadyUsedError):
        recovery.complete(db, token, "another recovered passphrase")
    return user.id


def _cooling_off_refused(db: Session, users: UserFactory) -> uuid.UUID:
    user, _ = _recover(db, users)
    with pytest.raises(errors.RecoveryCoolingOffError):
        passwords.set_password(db, user, "a passphrase of the thief")
    return user.id


def _new_device(db: Session, users: UserFactory) -> uuid.UUID:
    user = users()
    devices.record_login(db, user, "a new phone")
    devices.record_login(db, user, "a new phone")  # seen again: not new
    return user.id


SCENARIOS: dict[str, tuple[Callable[[Session, UserFactory], uuid.UUID | None], str]] = {
    "refresh_token.reused": (_reused_refresh_token, "high"),
    "dpop.binding_mismatch": (_dpop_binding_mismatch, "high"),
    "dpop.proof_replayed": (_dpop_proof_replayed, "high"),  # type: ignore[dict-item]
    "login.account_locked": (_account_locked, "high"),
    "login.locked_account_attempt": (_locked_account_attempt, "medium"),
    "login.deleted_account_attempt": (_deleted_account_attempt, "medium"),
    "device_flow.user_code_attempts_exceeded": (_user_code_attempts_exceeded, "medium"),
    "mfa.totp_replayed": (_totp_replayed, "high"),
    "mfa.backup_code_replayed": (_backup_code_replayed, "high"),
    "step_up.token_reused": (_step_up_token_reused, "medium"),
    "api_key.revoked_key_used": (_revoked_api_key_used, "medium"),
    "admin.unauthorized_role_change": (_unauthorized_role_change, "high"),
    "admin.guard_refused": (_admin_guard_refused, "high"),
    # the account lifecycle (issue 13)
    "request_limit.reached": (_request_limit_reached, "low"),  # type: ignore[dict-item]
    "password_reset.completed": (_reset_completed, "low"),
    "password_reset.token_reused": (_reset_token_reused, "medium"),
    "account.email_changed": (_email_changed, "medium"),
    "magic_link.reused": (_magic_link_reused, "medium"),
    "magic_link.client_mismatch": (_magic_link_client_mismatch, "medium"),
    "account.recovered": (_account_recovered, "medium"),
    "recovery.token_reused": (_recovery_token_reused, "medium"),
    "recovery.cooling_off_refused": (_cooling_off_refused, "medium"),
    "device.new_device": (_new_device, "low"),
}


@pytest.fixture
def users(db: Session) -> UserFactory:
    return UserFactory(db, hasher=TEST_PASSWORD_HASHER)


@pytest.fixture
def alerts(db: Session, settings: FlowSettings) -> list[SecurityEventAlert]:
    heard: list[SecurityEventAlert] = []
    use_settings(
        db,
        settings.replace(
            password_hasher=TEST_PASSWORD_HASHER,
            refresh_grace_window=timedelta(0),
            security_event_hook=heard.append,
        ),
    )
    return heard


@pytest.mark.parametrize("event_type", SCENARIOS)
def test_each_refusal_that_is_a_security_event_writes_it_with_its_severity(
    db: Session, users: UserFactory, alerts: list[SecurityEventAlert], event_type: str
) -> None:
    scenario, severity = SCENARIOS[event_type]
    user_id = scenario(db, users)

    written = events(db, user_id)  # (one transaction here: no order among them)
    assert [e for e in written if e[0] == event_type] == [(event_type, severity)]
    heard = [(a.event_type, a.severity.value, a.user_id) for a in alerts]
    assert [h for h in heard if h[0] == event_type] == (
        [(event_type, severity, user_id)] if severity == "high" else []
    )


def test_the_module_table_lists_every_event_the_flows_write() -> None:
    from authmodels.services import security_events

    documented = {
        line.split("``")[1]
        for line in (security_events.__doc__ or "").splitlines()
        if line.startswith("``") and line.split()[1] in ("low", "medium", "high", "critical")
    }
    assert documented == {*SCENARIOS, "webauthn.sign_count_regression"}


# --- committed on their own; the hook after the commit ----------------------------------------


def test_a_reuse_event_and_its_revocation_survive_the_callers_rollback_and_alert_after_commit(
    fresh: Callable[..., sessionmaker[Session]],
    fresh_user: User,
    authmodels_fresh_engine: Engine,
) -> None:
    seen_by_another_connection: list[list[tuple[str, str]]] = []

    def hook(alert: SecurityEventAlert) -> None:  # what an alerting hook would read back
        with Session(authmodels_fresh_engine) as other:
            seen_by_another_connection.append(events(other, alert.user_id))

    factory = fresh(refresh_grace_window=timedelta(0), security_event_hook=hook)
    with factory() as db:
        issued = sessions.create_session(db, fresh_user, ttl=TTL)
        db.commit()
        sessions.rotate_refresh_token(db, issued.refresh_token)
        db.commit()
    with factory() as db:
        db.execute(text("UPDATE auth.users SET last_login_at = now() WHERE id = :u"),
                   {"u": fresh_user.id})  # fmt: skip
        with pytest.raises(errors.RefreshTokenReused):
            sessions.rotate_refresh_token(db, issued.refresh_token)
        db.rollback()

    assert seen_by_another_connection == [[("refresh_token.reused", "high")]]
    with factory() as db:
        assert events(db, fresh_user.id) == [("refresh_token.reused", "high")]
        revoked = db.execute(
            text("SELECT NOT is_active FROM auth.sessions WHERE id = :s"), {"s": issued.session.id}
        ).scalar_one()
        assert revoked
        # the caller's own work in that transaction was not committed by the flow
        assert db.get(User, fresh_user.id).last_login_at is None  # type: ignore[union-attr]


def test_a_failing_hook_is_logged_and_the_refusal_is_raised_as_usual(
    db: Session, users: UserFactory, settings: FlowSettings, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(alert: SecurityEventAlert) -> None:
        raise RuntimeError("the pager is down")

    use_settings(db, settings.replace(refresh_grace_window=timedelta(0), security_event_hook=hook))
    with caplog.at_level(logging.ERROR, logger="authmodels.services"):
        user_id = _reused_refresh_token(db, users)
    assert events(db, user_id) == [("refresh_token.reused", "high")]
    assert "the pager is down" in caplog.text


def test_no_event_no_alert_for_an_ordinary_wrong_password(
    db: Session, users: UserFactory, alerts: list[SecurityEventAlert]
) -> None:
    user = users()
    _wrong_passwords(db, user, 1)
    assert events(db, user.id) == [] and alerts == []


# --- seed 004's alert queries, against what the flows write ----------------------------------

# Seed 004 counted failures in audit_logs, by raw IP; the flows count every attempt in
# login_attempts, by keyed hashes of the identifier typed and of the client's address.
BRUTE_FORCE = text(
    """
    SELECT count(*) FROM auth.login_attempts
     WHERE attempt_result <> 'success' AND created_at > now() - interval '5 minutes'
    """
)
CREDENTIAL_STUFFING = text(
    """
    SELECT ip_hash, count(DISTINCT identifier_hash) AS identifiers
      FROM auth.login_attempts
     WHERE created_at > now() - interval '1 hour' AND ip_hash IS NOT NULL
     GROUP BY ip_hash HAVING count(DISTINCT identifier_hash) > 20
    """
)


def test_brute_force_is_seen_in_the_login_attempts(
    db: Session, users: UserFactory, alerts: list[SecurityEventAlert]
) -> None:
    victims = users.batch(11)
    for victim in victims:  # 11 accounts x 10 guesses: 55 verified, 55 refused while locked
        _wrong_passwords(db, victim, 10)
    assert db.execute(BRUTE_FORCE).scalar_one() > 100
    assert [a.event_type for a in alerts] == ["login.account_locked"] * 11


def test_credential_stuffing_is_seen_from_one_address(
    db: Session, users: UserFactory, settings: FlowSettings
) -> None:
    use_settings(db, settings.replace(password_hasher=TEST_PASSWORD_HASHER))
    for n in range(25):  # a list of leaked addresses, tried from one address
        with pytest.raises(errors.InvalidCredentialsError):
            passwords.authenticate(
                db, f"leaked{n}-{secrets.token_hex(3)}@example.org", "hunter2", ip=IP,
                user_agent="curl/8",
            )  # fmt: skip
    passwords.authenticate(db, users().email, DEFAULT_PASSWORD, ip="192.0.2.1", user_agent="UA")

    [(ip_hash, identifiers)] = db.execute(CREDENTIAL_STUFFING).all()
    assert identifiers == 25
    assert ip_hash == settings.privacy.ip_hash(IP)
