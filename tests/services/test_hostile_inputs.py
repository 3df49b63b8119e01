"""Hostile arguments get a typed error of :mod:`authmodels.errors`, raised before the database is
touched, and nothing is written: the values issue 12 found reaching the driver
(``DataError``, ``UnicodeEncodeError``, ``IntegrityError``, ``JSONDecodeError``...), and those
found since. The property-based test (``test_hostile_inputs_property.py``) covers every public
function generically; these are the named cases, each with the error a caller gets."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session
from webauthn.authentication.verify_authentication_response import VerifiedAuthentication
from webauthn.helpers.structs import (
    CredentialDeviceType,
)

from authmodels.errors import (
    AuthModelsError,
    ConfigurationError,
    DPoPMalformedError,
    InvalidApiKeyError,
    InvalidBackupCodeError,
    InvalidCredentialsError,
    InvalidInputError,
    InvalidTotpCodeError,
    InvalidUserCode,
    InvalidWebAuthnResponse,
)
from authmodels.locking import RowNotFoundError
from authmodels.models import User
from authmodels.security import e2ee as e2ee_keys
from authmodels.security.dpop import sign_proof
from authmodels.services import (
    FlowSettings,
    admin,
    api_keys,
    audit,
    device_flow,
    e2ee,
    mfa,
    oauth,
    passwords,
    reencryption,
    sessions,
    step_up,
    tokens,
    use_settings,
    webauthn,
)
from authmodels.services.settings import settings_for
from authmodels.testing.factories import TEST_PASSWORD_HASHER
from tests.services.helpers import writes
from tests.services.hostile_world import CHALLENGE, ORIGIN, RP_ID, URL, World, registration

NUL, SURROGATE = "a\x00b", "a\ud800b"
HOUR = timedelta(hours=1)


@contextmanager
def refused(db: Session, error: type[AuthModelsError], field: str | None = None) -> Iterator[None]:
    """The block raises ``error`` (naming ``field`` when it is an InvalidInputError) and writes
    nothing."""
    before = writes(db)
    with pytest.raises(error) as raised:
        yield
    if field is not None:
        assert isinstance(raised.value, InvalidInputError) and raised.value.field == field
    assert str(raised.value)
    assert writes(db) == before, "a refused call wrote to the database"


# --- DPoP jti, login e-mail -------------------------------------------------------------------


@pytest.mark.parametrize("jti", [NUL, SURROGATE, "j" * 257], ids=["nul", "surrogate", "long"])
def test_a_dpop_proof_whose_jti_cannot_be_stored_is_malformed(db: Session, jti: str) -> None:
    proof = sign_proof(ec.generate_private_key(ec.SECP256R1()), htm="GET", htu=URL, jti=jti)
    with refused(db, DPoPMalformedError):
        tokens.check_dpop_proof(db, proof, htm="GET", htu=URL)


@pytest.mark.parametrize(
    "email", [NUL, SURROGATE, "x" * 1000 + "@example.com"], ids=["nul", "surrogate", "long"]
)
def test_a_login_email_that_no_account_can_have_is_refused_before_the_database(
    db: Session, user: User, email: str
) -> None:
    with refused(db, InvalidCredentialsError):
        passwords.authenticate(db, email, "whatever", ip=None, user_agent=None)


# --- WebAuthn ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1024, 5000])
def test_a_webauthn_credential_id_of_0_or_more_than_1023_bytes_is_refused(
    db: Session, user: User, length: int
) -> None:
    with refused(db, InvalidWebAuthnResponse):
        webauthn.store_registration(db, user, registration(credential_id=b"\x01" * length))


@pytest.mark.parametrize("count", [-1, 2**32, 2**70])
def test_a_webauthn_sign_count_outside_32_bits_is_refused(
    db: Session, user: User, count: int
) -> None:
    with refused(db, InvalidWebAuthnResponse):
        webauthn.store_registration(db, user, registration(sign_count=count))
    stored = webauthn.store_registration(db, user, registration())
    assertion = VerifiedAuthentication(
        credential_id=stored.credential_id,
        new_sign_count=count,
        credential_device_type=CredentialDeviceType.SINGLE_DEVICE,
        credential_backed_up=False,
        user_verified=True,
    )
    with refused(db, InvalidWebAuthnResponse):
        webauthn.record_authentication(db, assertion)


@pytest.mark.parametrize(
    "credential",
    [
        "{not json",
        "[]",
        '"a string"',
        json.dumps({"rawId": "!!not base64url!!"}),
        {"rawId": 5},
        {"id": "x", "rawId": "eA", "response": "not an object"},
        [],
    ],
    ids=["not-json", "array", "string", "bad-base64url", "rawid-int", "response-str", "list"],
)
def test_a_malformed_webauthn_response_is_an_invalid_response(
    db: Session, user: User, credential: Any
) -> None:
    with refused(db, InvalidWebAuthnResponse):
        webauthn.verify_authentication(
            db,
            credential,
            expected_challenge=b"challenge",
            expected_rp_id="example.test",
            expected_origin="https://example.test",
        )


# --- names and identifiers bounded by CHECK constraints ---------------------------------------


@pytest.mark.parametrize(
    "purpose",
    ["a" * 65, "Admin.role", "1st", "", "admin.role\n", NUL, SURROGATE],
    ids=["long", "upper", "digit-first", "empty", "newline", "nul", "surrogate"],
)
def test_an_ill_formed_step_up_purpose_is_refused(db: Session, user: User, purpose: str) -> None:
    from datetime import timedelta

    with refused(db, InvalidInputError, "purpose"):
        step_up.issue(db, user, ttl=timedelta(minutes=5), purpose=purpose)
    with refused(db, InvalidInputError, "purpose"):
        step_up.consume(db, user, "a-token", purpose=purpose)


@pytest.mark.parametrize(
    "provider",
    ["g" * 51, "Google", "git hub", "", "github\n", NUL, SURROGATE],
    ids=["long", "upper", "space", "empty", "newline", "nul", "surrogate"],
)
def test_an_ill_formed_oauth_provider_name_is_refused(
    db: Session, user: User, provider: str
) -> None:
    with refused(db, InvalidInputError, "provider"):
        oauth.store_tokens(db, user, provider=provider, provider_user_id="1", access_token="t")


@pytest.mark.parametrize(
    "device_id", ["", "d" * 256, NUL, SURROGATE], ids=["empty", "long", "nul", "surrogate"]
)
def test_an_e2ee_device_id_outside_1_to_255_characters_is_refused(
    db: Session, user: User, device_id: str
) -> None:
    private, public = e2ee_keys.generate_key_pair()
    with refused(db, InvalidInputError, "device_id"):
        e2ee.register_device_key(
            db, user, device_id=device_id, public_key=public, private_key=private
        )


@pytest.mark.parametrize(
    "name", ["", "n" * 101, NUL, SURROGATE], ids=["empty", "long", "nul", "surrogate"]
)
def test_an_api_key_name_outside_1_to_100_characters_is_refused(
    db: Session, user: User, name: str
) -> None:
    with refused(db, InvalidInputError, "name"):
        api_keys.create(db, user, name=name)


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("account_name", {"issuer": "Shop", "account_name": "a:b@example.com"}),
        ("issuer", {"issuer": "Sh:op", "account_name": "ada@example.com"}),
        ("issuer", {"issuer": "", "account_name": "ada@example.com"}),
        ("account_name", {"issuer": "Shop", "account_name": SURROGATE}),
    ],
    ids=["colon-account", "colon-issuer", "empty-issuer", "surrogate-account"],
)
def test_a_totp_label_an_authenticator_app_cannot_show_is_refused(
    db: Session, user: User, field: str, values: dict[str, str]
) -> None:
    with refused(db, InvalidInputError, field):
        mfa.enroll(db, user, **values)


def test_the_refusals_are_value_errors_too(db: Session, user: User) -> None:
    """Code written against the bare ValueErrors these replace still catches them."""
    make: Callable[[], object] = lambda: api_keys.create(db, user, name="")  # noqa: E731
    with pytest.raises(ValueError):
        make()


# --- found since: each value reached the driver, or Python, before ---------------------------

#: (id, the call, the error it gets, the field an InvalidInputError names)
FOUND: list[tuple[str, Callable[[World], object], type[AuthModelsError], str | None]] = [
    # sessions and tokens
    (
        "session-ua-surrogate",
        lambda w: sessions.create_session(w.db, w.user, ttl=HOUR, user_agent=SURROGATE),
        InvalidInputError,
        "user_agent",
    ),
    (
        "session-jkt-nul",
        lambda w: sessions.create_session(w.db, w.user, ttl=HOUR, dpop_jkt=NUL),
        InvalidInputError,
        "dpop_jkt",
    ),
    (
        "session-ttl-huge",
        lambda w: sessions.create_session(w.db, w.user, ttl=timedelta.max),
        InvalidInputError,
        "ttl",
    ),
    (
        "session-ttl-int",
        lambda w: sessions.create_session(w.db, w.user, ttl=3600),
        InvalidInputError,
        "ttl",
    ),
    (
        "session-user-str",
        lambda w: sessions.create_session(w.db, str(w.user.id), ttl=HOUR),
        InvalidInputError,
        "user",
    ),
    (
        "session-user-unflushed",
        lambda w: sessions.create_session(
            w.db, User(email="new@example.com", password_hash="!"), ttl=HOUR
        ),
        InvalidInputError,
        "user",
    ),
    (
        "validate-jkt-nul",
        lambda w: sessions.validate_session(w.db, w.session.session_token, dpop_jkt=NUL),
        InvalidInputError,
        "dpop_jkt",
    ),
    (
        "rotate-jkt-nul",
        lambda w: sessions.rotate_refresh_token(w.db, w.session.refresh_token, dpop_jkt=NUL),
        InvalidInputError,
        "dpop_jkt",
    ),
    (
        "revoke-reason-nul",
        lambda w: sessions.revoke_session(w.db, w.session.session, reason=NUL),
        InvalidInputError,
        "reason",
    ),
    (
        "revoke-all-reason-nul",
        lambda w: sessions.revoke_all_sessions(w.db, w.user, reason=NUL),
        InvalidInputError,
        "reason",
    ),
    ("touch-id-str", lambda w: sessions.touch(w.db, "not-a-uuid"), InvalidInputError, "session"),
    (
        "access-client-nul",
        lambda w: tokens.issue_access_token(w.db, w.user, client_id=NUL),
        InvalidInputError,
        "client_id",
    ),
    (
        "access-jkt-huge",
        lambda w: tokens.issue_access_token(w.db, w.user, dpop_jkt=secrets.token_urlsafe(6000)),
        InvalidInputError,
        "dpop_jkt",
    ),
    (
        "access-validate-jkt-nul",
        lambda w: tokens.validate_access_token(w.db, w.bound_access_token, dpop_jkt=NUL),
        InvalidInputError,
        "dpop_jkt",
    ),
    (
        "dpop-htu-not-a-url",
        lambda w: tokens.check_dpop_proof(w.db, w.proof(), htm="GET", htu="not a url"),
        InvalidInputError,
        "htu",
    ),
    (
        "dpop-htm-nul-replayed",
        lambda w: [
            tokens.check_dpop_proof(w.db, proof, htm=NUL, htu=URL)
            for proof in [w.proof(htm=NUL)] * 2
        ],
        InvalidInputError,
        "htm",
    ),
    (
        "dpop-nonce-surrogate",
        lambda w: tokens.check_dpop_proof(
            w.db, w.proof(nonce="n"), htm="GET", htu=URL, nonce=SURROGATE
        ),
        InvalidInputError,
        "nonce",
    ),
    # device flow
    (
        "device-start-client-nul",
        lambda w: device_flow.start(w.db, client_id=NUL, scope=None),
        InvalidInputError,
        "client_id",
    ),
    (
        "device-user-code-nul",
        lambda w: device_flow.approve(w.db, "BCDF\x00GHJK", w.user),
        InvalidUserCode,
        None,
    ),
    (
        "device-user-code-surrogate",
        lambda w: device_flow.deny(w.db, SURROGATE, w.user),
        InvalidUserCode,
        None,
    ),
    (
        "device-user-code-short",
        lambda w: device_flow.approve(w.db, "BCDF-GHJ", w.user),
        InvalidUserCode,
        None,
    ),
    (
        "device-poll-jkt-nul",
        lambda w: device_flow.poll(w.db, w.approved_device_code, dpop_jkt=NUL),
        InvalidInputError,
        "dpop_jkt",
    ),
    (
        "format-user-code-int",
        lambda w: device_flow.format_user_code(12345678),
        InvalidInputError,
        "code",
    ),
    # step-up and admin
    ("step-up-ttl-int", lambda w: step_up.issue(w.db, w.user, ttl=300), InvalidInputError, "ttl"),
    (
        "role-unknown",
        lambda w: admin.change_role(
            w.db, actor=w.admin, target=w.user, role="root", step_up_token=w.admin_step_up
        ),
        InvalidInputError,
        "role",
    ),
    (
        "role-correlation-long",
        lambda w: admin.change_role(
            w.db,
            actor=w.admin,
            target=w.user,
            role="admin",
            step_up_token=w.admin_step_up,
            correlation_id="c" * 201,
        ),
        InvalidInputError,
        "correlation_id",
    ),
    (
        "role-correlation-nul",
        lambda w: admin.change_role(
            w.db,
            actor=w.admin,
            target=w.user,
            role="admin",
            step_up_token=w.admin_step_up,
            correlation_id=NUL,
        ),
        InvalidInputError,
        "correlation_id",
    ),
    # passwords
    (
        "login-password-surrogate",
        lambda w: passwords.authenticate(w.db, w.user.email, SURROGATE, ip=None, user_agent=None),
        InvalidCredentialsError,
        None,
    ),
    (
        "login-ua-surrogate",
        lambda w: passwords.authenticate(w.db, w.user.email, "x", ip=None, user_agent=SURROGATE),
        InvalidInputError,
        "user_agent",
    ),
    (
        "login-email-int",
        lambda w: passwords.authenticate(w.db, 42, "x", ip=None, user_agent=None),
        InvalidCredentialsError,
        None,
    ),
    (
        "new-password-surrogate",
        lambda w: passwords.set_password(w.db, w.user, SURROGATE),
        InvalidInputError,
        "new_password",
    ),
    (
        "new-password-empty",
        lambda w: passwords.set_password(w.db, w.user, ""),
        InvalidInputError,
        "new_password",
    ),
    (
        "password-history-huge",
        lambda w: passwords.set_password(w.db, w.user, "a new passphrase", history=2**63),
        InvalidInputError,
        "history",
    ),
    (
        "password-unknown-user",
        lambda w: passwords.set_password(w.db, uuid.uuid4(), "a new passphrase"),
        RowNotFoundError,
        None,
    ),
    ("normalize-email-none", lambda w: passwords.normalize_email(None), InvalidInputError, "email"),
    # second factors
    (
        "backup-code-surrogate",
        lambda w: mfa.use_backup_code(w.db, w.totp_enrolled[0], SURROGATE),
        InvalidBackupCodeError,
        None,
    ),
    (
        "totp-code-int",
        lambda w: mfa.verify(w.db, w.totp_enrolled[0], 123456),
        InvalidTotpCodeError,
        None,
    ),
    (
        "totp-now-naive",
        lambda w: mfa.verify(w.db, w.totp_enrolled[0], "123456", now=datetime(2030, 1, 1)),
        InvalidInputError,
        "now",
    ),
    (
        "totp-now-huge",
        lambda w: mfa.verify(w.db, w.totp_enrolled[0], "123456", now=10**30),
        InvalidInputError,
        "now",
    ),
    (
        "enroll-id-without-name",
        lambda w: mfa.enroll(w.db, w.user.id, issuer="Shop"),
        InvalidInputError,
        "account_name",
    ),
    # WebAuthn
    (
        "webauthn-transport-nul",
        lambda w: webauthn.store_registration(w.db, w.user, registration(), transports=[NUL]),
        InvalidInputError,
        "transports[0]",
    ),
    (
        "webauthn-device-name-nul",
        lambda w: webauthn.store_registration(w.db, w.user, registration(), device_name=NUL),
        InvalidInputError,
        "device_name",
    ),
    (
        "webauthn-aaguid-malformed",
        lambda w: webauthn.store_registration(w.db, w.user, registration(aaguid="not-a-uuid")),
        InvalidWebAuthnResponse,
        None,
    ),
    (
        "webauthn-rp-id-surrogate",
        lambda w: webauthn.verify_authentication(
            w.db,
            w.authenticator.assert_(CHALLENGE),
            expected_challenge=CHALLENGE,
            expected_rp_id=SURROGATE,
            expected_origin=ORIGIN,
        ),
        InvalidInputError,
        "expected_rp_id",
    ),
    (
        "webauthn-wrong-origin",
        lambda w: webauthn.verify_authentication(
            w.db,
            w.authenticator.assert_(CHALLENGE),
            expected_challenge=CHALLENGE,
            expected_rp_id=RP_ID,
            expected_origin="https://evil.test",
        ),
        InvalidWebAuthnResponse,
        None,
    ),
    # API keys
    (
        "api-key-surrogate",
        lambda w: api_keys.authenticate(w.db, "ak_000000000000." + SURROGATE),
        InvalidApiKeyError,
        None,
    ),
    (
        "api-key-scope-nul",
        lambda w: api_keys.create(w.db, w.user, name="ci", scopes=[NUL]),
        InvalidInputError,
        "scopes[0]",
    ),
    (
        "api-key-scope-none",
        lambda w: api_keys.create(w.db, w.user, name="ci", scopes=[None]),
        InvalidInputError,
        "scopes[0]",
    ),
    (
        "api-key-expired-already",
        lambda w: api_keys.create(
            w.db, w.user, name="ci", expires_at=datetime(2000, 1, 1, tzinfo=UTC)
        ),
        InvalidInputError,
        "expires_at",
    ),
    (
        "api-key-required-scopes-int",
        lambda w: api_keys.require_scopes(w.api_key.api_key, 5),
        InvalidInputError,
        "scopes",
    ),
    (
        "api-key-revoke-id-str",
        lambda w: api_keys.revoke(w.db, w.user, "1"),
        InvalidInputError,
        "api_key_id",
    ),
    # OAuth
    (
        "oauth-raw-data-token",
        lambda w: oauth.store_tokens(
            w.db,
            w.user,
            provider="github",
            provider_user_id="1",
            access_token="t",
            raw_data={"access_token": "x"},
        ),
        InvalidInputError,
        "raw_data",
    ),
    (
        "oauth-raw-data-nul",
        lambda w: oauth.store_tokens(
            w.db,
            w.user,
            provider="github",
            provider_user_id="1",
            access_token="t",
            raw_data={"name": NUL},
        ),
        InvalidInputError,
        "raw_data",
    ),
    (
        "oauth-raw-data-nan",
        lambda w: oauth.store_tokens(
            w.db,
            w.user,
            provider="github",
            provider_user_id="1",
            access_token="t",
            raw_data={"x": float("nan")},
        ),
        InvalidInputError,
        "raw_data",
    ),
    (
        "oauth-raw-data-bytes",
        lambda w: oauth.store_tokens(
            w.db,
            w.user,
            provider="github",
            provider_user_id="1",
            access_token="t",
            raw_data={"x": b"y"},
        ),
        InvalidInputError,
        "raw_data",
    ),
    (
        "oauth-picture-url-long",
        lambda w: oauth.store_tokens(
            w.db,
            w.user,
            provider="github",
            provider_user_id="1",
            access_token="t",
            picture_url="u" * 1025,
        ),
        InvalidInputError,
        "picture_url",
    ),
    (
        "oauth-provider-user-id-long",
        lambda w: oauth.store_tokens(
            w.db, w.user, provider="github", provider_user_id="1" * 256, access_token="t"
        ),
        InvalidInputError,
        "provider_user_id",
    ),
    (
        "oauth-token-surrogate",
        lambda w: oauth.store_tokens(
            w.db, w.user, provider="github", provider_user_id="1", access_token=SURROGATE
        ),
        InvalidInputError,
        "access_token",
    ),
    (
        "oauth-status-unknown",
        lambda w: oauth.record_refresh(w.db, w.connection_id, status="maybe"),
        InvalidInputError,
        "status",
    ),
    (
        "oauth-error-nul",
        lambda w: oauth.record_refresh(w.db, w.connection_id, status="failed", error=NUL),
        InvalidInputError,
        "error",
    ),
    (
        "oauth-limit-negative",
        lambda w: oauth.refresh_due(w.db, limit=-1),
        InvalidInputError,
        "limit",
    ),
    (
        "reencryption-batch-zero",
        lambda w: reencryption.reencrypt(w.db, batch_size=0),
        InvalidInputError,
        "batch_size",
    ),
    # E2EE
    (
        "e2ee-reason-long",
        lambda w: e2ee.register_device_key(
            w.db,
            w.user,
            device_id="phone",
            public_key=w.key_pair[1],
            private_key=w.key_pair[0],
            reason="r" * 501,
        ),
        InvalidInputError,
        "reason",
    ),
    (
        "e2ee-reason-nul",
        lambda w: e2ee.register_device_key(
            w.db,
            w.user,
            device_id="phone",
            public_key=w.key_pair[1],
            private_key=w.key_pair[0],
            reason=NUL,
        ),
        InvalidInputError,
        "reason",
    ),
    (
        "e2ee-private-key-str",
        lambda w: e2ee.register_device_key(
            w.db, w.user, device_id="phone", public_key=w.key_pair[1], private_key="k" * 32
        ),
        InvalidInputError,
        "private_key",
    ),
    (
        "e2ee-failed-reason-nul",
        lambda w: e2ee.record_failed_exchange(
            w.db, w.user, conversation_id=w.conversation_id, peer=w.peer, reason=NUL
        ),
        InvalidInputError,
        "reason",
    ),
    (
        "e2ee-failed-device-nul",
        lambda w: e2ee.record_failed_exchange(
            w.db, w.user, conversation_id=w.conversation_id, peer=w.peer, reason="r", device_id=NUL
        ),
        InvalidInputError,
        "device_id",
    ),
    (
        "e2ee-audit-hash-str",
        lambda w: e2ee.record_key_exchange(
            w.db,
            conversation_id=w.conversation_id,
            initiator=w.user,
            peer=w.peer,
            shared_secret_hash="h" * 32,
        ),
        InvalidInputError,
        "shared_secret_hash",
    ),
    (
        "e2ee-private-key-of-row-str",
        lambda w: e2ee.private_key(w.db, "a device key"),
        InvalidInputError,
        "device_key",
    ),
    # settings
    (
        "settings-unknown-name",
        lambda w: settings_for(w.db).replace(poll_interval=5),
        ConfigurationError,
        None,
    ),
    (
        "settings-wrong-type",
        lambda w: settings_for(w.db).replace(device_poll_interval="5"),
        ConfigurationError,
        None,
    ),
    (
        "settings-ttl-huge",
        lambda w: sessions.create_session(
            use_settings(w.db, settings_for(w.db).replace(refresh_token_ttl=timedelta.max)),
            w.user,
            ttl=HOUR,
        ),
        ConfigurationError,
        None,
    ),
    ("settings-not-settings", lambda w: use_settings(w.db, object()), ConfigurationError, None),
    # audit
    (
        "audit-event-type-unknown",
        lambda w: audit.record(w.db, "exported", user_id=w.user.id),
        InvalidInputError,
        "event_type",
    ),
    (
        "audit-action-long",
        lambda w: audit.record(w.db, "sensitive_action", user_id=w.user.id, action="a" * 101),
        InvalidInputError,
        "action",
    ),
    (
        "audit-action-missing",
        lambda w: audit.record(w.db, "sensitive_action", user_id=w.user.id),
        InvalidInputError,
        "action",
    ),
    (
        "audit-details-nul",
        lambda w: audit.record(w.db, "login", user_id=w.user.id, details={"k": NUL}),
        InvalidInputError,
        "details",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "field"), [case[1:] for case in FOUND], ids=[case[0] for case in FOUND]
)
def test_a_hostile_argument_gets_a_typed_error_and_writes_nothing(
    world: World, call: Callable[[World], object], error: type[AuthModelsError], field: str | None
) -> None:
    world.prepare()
    with refused(world.db, error, field):
        call(world)


@pytest.fixture
def world(db: Session, settings: FlowSettings) -> World:
    """Valid rows, made on first use, with cheap Argon2 parameters."""
    return World(use_settings(db, settings.replace(password_hasher=TEST_PASSWORD_HASHER)))


# --- the Python checks agree with the CHECK constraints ----------------------------------------

#: (service call with the value, the argument, the table and CHECK constraint that bound it)
CHECKED: list[tuple[str, Callable[[World, str], object], str, str]] = [
    (
        "purpose",
        lambda w, v: step_up.issue(w.db, w.user, ttl=HOUR / 4, purpose=v),
        "step_up_tokens",
        "ck_step_up_tokens_purpose_format",
    ),
    (
        "provider",
        lambda w, v: oauth.store_tokens(
            w.db, w.user, provider=v, provider_user_id="1", access_token="t"
        ),
        "oauth_connections",
        "ck_oauth_connections_provider_format",
    ),
    (
        "provider_user_id",
        lambda w, v: oauth.store_tokens(
            w.db, w.user, provider="github", provider_user_id=v, access_token="t"
        ),
        "oauth_connections",
        "ck_oauth_connections_provider_user_id_length",
    ),
    (
        "picture_url",
        lambda w, v: oauth.store_tokens(
            w.db, w.user, provider="github", provider_user_id="1", access_token="t", picture_url=v
        ),
        "oauth_connections",
        "ck_oauth_connections_picture_url_length",
    ),
    (
        "name",
        lambda w, v: api_keys.create(w.db, w.user, name=v),
        "api_keys",
        "ck_api_keys_name_length",
    ),
    (
        "device_id",
        lambda w, v: e2ee.register_device_key(
            w.db, w.user, device_id=v, public_key=w.key_pair[1], private_key=w.key_pair[0]
        ),
        "device_keys",
        "ck_device_keys_device_id_length",
    ),
    (
        "action",
        lambda w, v: audit.record(w.db, "sensitive_action", user_id=w.user.id, action=v),
        "audit_logs",
        "ck_audit_logs_action_length",
    ),
    (
        "correlation_id",
        lambda w, v: audit.record(w.db, "login", user_id=w.user.id, correlation_id=v),
        "audit_logs",
        "ck_audit_logs_correlation_id_length",
    ),
]

_CHECK_DEFINITION = text(
    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conname = :name AND conrelid = CAST(:table AS regclass)"
)
# storable text (no NUL, no unpaired surrogate), around the bounds the constraints set
_EDGE = "aAzZ09_.:-/ \n\t\u00e9\u212a\u0131\U0001f600"
_BOUNDS = sorted({b + d for b in (1, 50, 64, 100, 200, 255, 500, 1024) for d in (-1, 0, 1)})
_VALID = ["admin.role_change", "github", "a", "ci key", "phone"]
storable = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=70),
    st.text(st.sampled_from(_EDGE), max_size=70),
    st.builds(
        lambda c, n: c * n, st.sampled_from(["a", "\u00e9", "\U0001f600"]), st.sampled_from(_BOUNDS)
    ),
    st.builds(
        lambda base, at, ch: base[:at] + ch + base[at:],
        st.sampled_from(_VALID),
        st.integers(0, 20),
        st.sampled_from(_EDGE),
    ),
)


def _examples(test: Callable[..., None]) -> Callable[..., None]:
    for value in reversed(_EXAMPLES):
        test = example(value=value)(test)
    return test


#: Values every run tries: the bounds of each constraint, multi-byte characters (lengths are
#: characters, not bytes), and the trailing newline a '$' anchor in Python would let through.
_EXAMPLES = [
    "", "a", "A", "a\n", "\na", "github\n", "admin.role_change\n",
    *("a" * n for n in (50, 51, 64, 65, 100, 101, 200, 201, 255, 256, 1024, 1025)),
    "\u00e9" * 255, "\u00e9" * 256, "\U0001f600" * 100, "\U0001f600" * 101,
]  # fmt: skip


@pytest.mark.parametrize(
    ("field", "call", "table", "constraint"), CHECKED, ids=[c[0] for c in CHECKED]
)
@hypothesis_settings(
    max_examples=max(20, hypothesis_settings.default.max_examples // 2),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=storable)
@_examples
def test_a_value_is_accepted_by_python_exactly_when_its_check_constraint_accepts_it(
    world: World,
    field: str,
    call: Callable[[World, str], object],
    table: str,
    constraint: str,
    value: str,
) -> None:
    """The validator and the constraint read at head (not restated here) agree on every value:
    what Python lets through is stored, what it refuses the table would have refused."""
    db = world.db
    world.prepare()
    definition = db.execute(_CHECK_DEFINITION, {"name": constraint, "table": f"auth.{table}"})
    expression = definition.scalar_one().removeprefix("CHECK ")
    column = re.compile(rf"\b{field}\b")
    assert column.search(expression), expression
    stored = db.execute(
        text("SELECT " + column.sub("CAST(:value AS text)", expression)), {"value": value}
    ).scalar_one()
    savepoint = db.begin_nested()
    try:
        call(world, value)
        accepted = True
    except InvalidInputError as refused:
        assert refused.field == field
        accepted = False
    finally:
        savepoint.rollback()
    assert accepted is (stored is not False), f"{value!r}: python {accepted}, {constraint} {stored}"
