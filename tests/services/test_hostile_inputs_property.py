"""Property: whatever text or bytes a caller passes to a public flow, only an error of
:mod:`authmodels.errors` escapes, and a refused call writes nothing.

The functions and their parameters are found by introspection: every function of
``authmodels.services.<module>.__all__``, and each of its parameters whose type hint holds
``str`` or ``bytes`` (directly, in a union, as the items of an ``Iterable``/``Sequence``, as a
JSON ``dict``, or as a field of a dataclass parameter such as py_webauthn's results). A function
added later is driven as soon as it exists: its other parameters get valid values by name from
:data:`VALID` (a user, a live session, a fresh DPoP proof...), so the hostile value is what the
call reaches. A function that cannot be driven this way must be listed in :data:`NOT_DRIVEN`
with the reason; :func:`test_every_public_function_with_text_or_bytes_is_driven` fails for a
function that is neither.

Each (function, parameter) pair is a Hypothesis test on the real PostgreSQL of the run (the
``authmodels_session`` fixture), with ``max_examples`` a quarter of the loaded profile's
(``HYPOTHESIS_PROFILE=thorough`` runs ten times more, see ``tests/conftest.py``). The values:
arbitrary Unicode including NUL and unpaired surrogates, very long strings, the valid value with
a hostile character spliced in, JSON and JWT-looking text (broken), arbitrary and long bytes,
and values of the wrong type.

"Nothing written" is measured with PostgreSQL's own counters of the transaction
(``pg_stat_xact_all_tables``, which count every attempted row write). A refusal that is a
security record by design (a counted login attempt, a counted wrong user code, a replayed
proof...) may write: :data:`RECORDED_REFUSALS` names them per function. Even those write
nothing when the value is one PostgreSQL could not store at all (a NUL, an unpaired surrogate,
the wrong type): such a value is refused before the database is touched.
"""

from __future__ import annotations

import base64
import collections.abc
import dataclasses
import importlib
import inspect
import json
import pkgutil
import time
import types
import typing
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

import authmodels.services
from authmodels import errors
from authmodels.models.enums import SecurityEventSeverity
from authmodels.security import totp
from authmodels.services import FlowSettings, use_settings
from authmodels.testing.factories import DEFAULT_PASSWORD, TEST_PASSWORD_HASHER
from tests.services.helpers import writes
from tests.services.hostile_world import CHALLENGE, ORIGIN, RP_ID, URL, World, registration

# --- what the test drives: every public function, by introspection -----------------------------

SERVICE_MODULES = sorted(
    name for _, name, _ in pkgutil.iter_modules(authmodels.services.__path__) if name[0] != "_"
)


def public_functions() -> list[tuple[str, str, Callable[..., Any]]]:
    """(module, name, function) of every function in a service module's ``__all__``."""
    found = []
    for module_name in SERVICE_MODULES:
        module = importlib.import_module(f"authmodels.services.{module_name}")
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isfunction(value):
                found.append((module_name, name, value))
    return found


def kinds_of(hint: object) -> set[str]:
    """What hostile values a type hint admits: text, bytes, lists of text, JSON objects."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(kinds_of(arg) for arg in args))
    if hint is str:
        return {"text"}
    if hint is bytes:
        return {"bytes"}
    if origin in (collections.abc.Iterable, collections.abc.Sequence, list) and args == (str,):
        return {"texts"}
    if origin in (dict, collections.abc.Mapping) and args[:1] == (str,):
        return {"json"}
    return set()


@dataclasses.dataclass(frozen=True)
class Target:
    """One argument to make hostile: a parameter, or a field of a dataclass parameter."""

    module: str
    function: str
    parameter: str
    field: str | None
    kinds: frozenset[str]

    @property
    def id(self) -> str:
        name = self.parameter if self.field is None else f"{self.parameter}.{self.field}"
        return f"{self.module}.{self.function}:{name}"


def targets_of(module: str, name: str, function: Callable[..., Any]) -> list[Target]:
    hints = typing.get_type_hints(function)
    found = []
    for parameter in inspect.signature(function).parameters:
        hint = hints.get(parameter)
        kinds = kinds_of(hint)
        if kinds:
            found.append(Target(module, name, parameter, None, frozenset(kinds)))
        elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
            for field in dataclasses.fields(hint):
                field_kinds = kinds_of(field.type)
                if field_kinds:
                    found.append(
                        Target(module, name, parameter, field.name, frozenset(field_kinds))
                    )
    return found


FUNCTIONS = public_functions()
TARGETS = [target for entry in FUNCTIONS for target in targets_of(*entry)]

#: Public functions with text or bytes parameters that this test does not drive, and why.
NOT_DRIVEN: dict[str, str] = {
    # Nothing yet: every public function with text or bytes parameters is driven below.
}

# --- valid values for everything else ------------------------------------------------------


Resolver = Callable[[World], Any]

#: A valid value per parameter name; ``"module.function:param"`` keys win over plain names.
#: Resolvers run for every example, so a value used up by a call (a DPoP proof's jti, a
#: counter) is fresh each time; rows are made once (``World``'s cached properties).
VALID: dict[str, Resolver] = {
    "db": lambda w: w.db,
    "user": lambda w: w.user,
    "actor": lambda w: w.admin,
    "target": lambda w: w.user,
    "initiator": lambda w: w.user,
    "peer": lambda w: w.peer,
    "ttl": lambda w: timedelta(minutes=5),
    "ip": lambda w: "203.0.113.7",
    "user_agent": lambda w: "Mozilla/5.0 (X11; Linux x86_64)",
    "dpop_jkt": lambda w: w.jkt,
    "reason": lambda w: "logout",
    "client_id": lambda w: "tv",
    "scope": lambda w: "read",
    "session": lambda w: w.session.session,
    "email": lambda w: w.user.email,
    "password": lambda w: DEFAULT_PASSWORD,
    "new_password": lambda w: "a new password",
    "purpose": lambda w: "admin.role_change",
    "name": lambda w: "ci key",
    "provider": lambda w: "github",
    "provider_user_id": lambda w: "42",
    "access_token": lambda w: "provider-access-token",
    "conversation_id": lambda w: w.conversation_id,
    "connection_id": lambda w: w.connection_id,
    "device_id": lambda w: "phone",
    "event_type": lambda w: "login",
    "user_id": lambda w: w.user.id,
    "details": lambda w: {"k": "v"},
    # sessions
    "sessions.validate_session:token": lambda w: w.session.session_token,
    "sessions.validate_session_alone:token": lambda w: w.session.session_token,
    "sessions.rotate_refresh_token:refresh_token": lambda w: w.session.refresh_token,
    # tokens
    "tokens.check_dpop_proof:proof": lambda w: w.proof(),
    "tokens.check_dpop_proof:htm": lambda w: "GET",
    "tokens.check_dpop_proof:htu": lambda w: URL,
    "tokens.check_dpop_proof:access_token": lambda w: None,
    "tokens.validate_access_token:token": lambda w: w.bound_access_token,
    "tokens.revoke_access_token:token": lambda w: w.access_token,
    # device flow
    "device_flow.approve:user_code": lambda w: w.pending_user_code,
    "device_flow.deny:user_code": lambda w: w.pending_user_code,
    "device_flow.format_user_code:code": lambda w: "BCDFGHJK",
    "device_flow.poll:device_code": lambda w: w.approved_device_code,
    "device_flow.start:scope": lambda w: "read",
    # step-up, admin
    "step_up.consume:token": lambda w: w.user_step_up,
    "admin.change_role:role": lambda w: "admin",
    "admin.change_role:step_up_token": lambda w: w.admin_step_up,
    # passwords
    "passwords.authenticate:ip": lambda w: None,
    # mfa
    "mfa.enroll:issuer": lambda w: "Shop",
    "mfa.confirm:user": lambda w: w.totp_pending[0],
    "mfa.confirm:code": lambda w: totp.code_at(w.totp_pending[1], int(time.time())),
    "mfa.verify:user": lambda w: w.totp_enrolled[0],
    "mfa.verify:code": lambda w: totp.code_at(w.totp_enrolled[1], int(time.time()) + 60),
    "mfa.verify:now": lambda w: int(time.time()) + 60,
    "mfa.use_backup_code:user": lambda w: w.totp_enrolled[0],
    "mfa.use_backup_code:code": lambda w: w.totp_enrolled[2][0],
    # webauthn
    "webauthn.store_registration:verified": lambda w: registration(),
    "webauthn.store_registration:transports": lambda w: ["usb"],
    "webauthn.record_authentication:verified": lambda w: w.assertion(),
    "webauthn.verify_authentication:credential": lambda w: w.authenticator.assert_(CHALLENGE),
    "webauthn.verify_authentication:expected_challenge": lambda w: CHALLENGE,
    "webauthn.verify_authentication:expected_rp_id": lambda w: RP_ID,
    "webauthn.verify_authentication:expected_origin": lambda w: ORIGIN,
    # API keys
    "api_keys.authenticate:presented": lambda w: w.api_key.key,
    "api_keys.require_scopes:api_key": lambda w: w.api_key.api_key,
    "api_keys.require_scopes:scopes": lambda w: ["read"],
    # OAuth: a failed refresh is the outcome that carries an error message
    "oauth.record_refresh:status": lambda w: "success",
    "oauth.record_refresh[error]:status": lambda w: "failed",
    "oauth.record_refresh[error]:access_token": lambda w: None,
    # E2EE
    "e2ee.register_device_key:public_key": lambda w: w.key_pair[1],
    "e2ee.register_device_key:private_key": lambda w: w.key_pair[0],
    "e2ee.record_key_exchange:shared_secret_hash": lambda w: bytes(32),
    "e2ee.record_failed_exchange:reason": lambda w: "the peer's key did not verify",
    # audit
    "audit.record:action": lambda w: None,
    # the account lifecycle
    "signup.register:email": lambda w: w.new_address(),
    "password_reset.complete:token": lambda w: w.reset_token(),
    "password_reset.complete:new_password": lambda w: f"passphrase {uuid.uuid4()}",
    "email_verification.verify:token": lambda w: w.verification_token(),
    "email_verification.request_email_change:new_email": lambda w: w.new_address(),
    "magic_links.redeem:token": lambda w: w.magic_link(),
    "magic_links.redeem:client": lambda w: None,
    "recovery.start_with_code:email": lambda w: w.recovery_user.email,
    "recovery.start_with_code:code": lambda w: w.backup_code(),
    "recovery.complete:token": lambda w: w.recovery_token(),
    "recovery.complete:new_password": lambda w: f"passphrase {uuid.uuid4()}",
    "recovery.cancel:user": lambda w: w.recovery_user,
    "delivery.log_email:to_email": lambda w: "ada@example.com",
    "delivery.log_sms:to_phone": lambda w: "+442071838750",
    "template": lambda w: "otp",
    "delivery_id": lambda w: w.pending_delivery(),
    "channel": lambda w: "email",
    "error": lambda w: "mailbox full",
    "delivery.record_callback:provider": lambda w: "email",
    "delivery.record_callback:provider_message_id": lambda w: w.sent_message_id,
    "delivery.record_callback:status": lambda w: "delivered",
    "recovery.start:channel": lambda w: "email",
    "fingerprint": lambda w: "world-fingerprint",
    "devices.trust:device": lambda w: w.device,
    "devices.trust:step_up_token": lambda w: w.device_step_up(),
    "devices.revoke:device": lambda w: w.new_device(),
    "trust_token": lambda w: w.trust_token,
    # security events
    "security_events.record:event_type": lambda w: "login.test_event",
    "security_events.record:severity": lambda w: SecurityEventSeverity.LOW,
    "security_events.report:event_type": lambda w: "login.test_event",
    "security_events.report:severity": lambda w: SecurityEventSeverity.LOW,
}

#: Refusals that follow a write the flow makes on purpose (most are security records committed
#: before the error is raised): a call refused with one of these may have written, unless the
#: value could not be stored at all.
RECORDED_REFUSALS: dict[str, tuple[type[errors.AuthModelsError], ...]] = {
    # the counted attempt, its lock and the login_attempts row (passwords module docstring)
    "passwords.authenticate": (
        errors.InvalidCredentialsError,
        errors.AccountLockedError,
        errors.AccountDeletedError,
    ),
    # a counted wrong user code, a blocked attempt (RFC 8628 section 5.1)
    "device_flow.approve": (errors.InvalidUserCode, errors.TooManyUserCodeAttempts),
    "device_flow.deny": (errors.InvalidUserCode, errors.TooManyUserCodeAttempts),
    # a binding mismatch is audited and committed
    "sessions.validate_session": (errors.DPoPBindingMismatch,),
    "sessions.validate_session_alone": (errors.DPoPBindingMismatch,),
    "sessions.rotate_refresh_token": (errors.DPoPBindingMismatch, errors.RefreshTokenReused),
    "tokens.validate_access_token": (errors.DPoPBindingMismatch,),
    "tokens.check_dpop_proof": (errors.DPoPReplayError,),
    # polling telemetry
    "device_flow.poll": (errors.AuthorizationPending, errors.SlowDown),
    # the key was right: its last_used_at is touched before its scopes are compared
    "api_keys.authenticate": (errors.InsufficientScopeError,),
    # the counted attempt (the limits bound guessing recovery codes)
    "recovery.start_with_code": (errors.InvalidCredentialsError,),
}


def resolver(target: Target, parameter: str) -> Resolver | None:
    """The :data:`VALID` entry for ``parameter`` of ``target``'s function, most specific first:
    for this target (``module.function[target]:param``), this function, any function."""
    function = f"{target.module}.{target.function}"
    for key in (
        f"{function}[{target.parameter}]:{parameter}",
        f"{function}:{parameter}",
        parameter,
    ):
        if key in VALID:
            return VALID[key]
    return None


def arguments(world: World, target: Target, function: Callable[..., Any]) -> dict[str, Any]:
    """Valid arguments for ``function``: every parameter :data:`VALID` names (defaults are left
    alone otherwise)."""
    values: dict[str, Any] = {}
    for name in inspect.signature(function).parameters:
        found = resolver(target, name)
        if found is not None:
            values[name] = found(world)
    return values


# --- hostile values ----------------------------------------------------------------------------

HOSTILE_CHARACTERS = ["\x00", "\ud800", "\udfff", "\ud83d", ":", "\n", "\u202e", "\ufeff", "'"]
characters = st.one_of(st.characters(codec=None), st.sampled_from(HOSTILE_CHARACTERS))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(characters),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(characters, max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


jwt_like = st.tuples(json_values, json_values, st.binary(max_size=80)).map(
    lambda parts: ".".join(
        [
            b64url(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "x": parts[0]}).encode()),
            b64url(json.dumps(parts[1]).encode()),
            b64url(parts[2]),
        ]
    )
)
texts = st.one_of(
    st.text(characters, max_size=300),
    st.builds(
        lambda c, n: c * n,
        st.sampled_from(["a", "\x00", "é", "\ud800", "A1"]),
        st.integers(256, 70_000),
    ),
    json_values.map(lambda value: json.dumps(value)),
    json_values.map(lambda value: json.dumps(value)[:-1]),  # broken JSON
    jwt_like,
    jwt_like.map(lambda value: value.replace(".", "", 1)),
)
wrong_types = st.sampled_from(
    [0, -1, 2**70, 1.5, float("nan"), b"\x00bytes", ["a"], {"a": 1}, object()]
)
STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "text": st.one_of(texts, wrong_types),
    "bytes": st.one_of(
        st.binary(max_size=2048), st.binary(min_size=1024, max_size=70_000), wrong_types, texts
    ),
    "texts": st.one_of(
        st.lists(texts, max_size=5),
        st.lists(st.just("s"), min_size=200, max_size=300),
        texts,
        wrong_types,
    ),
    "json": st.one_of(
        st.dictionaries(st.text(characters, max_size=20), json_values, max_size=6),
        st.fixed_dictionaries({"access_token": st.text(max_size=5)}),
        st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
        wrong_types,
    ),
}


def hostile(data: st.DataObject, target: Target, valid: Any) -> Any:
    """A hostile value for ``target``; sometimes the valid value with hostile characters."""
    if isinstance(valid, str) and data.draw(st.booleans(), label="splice"):
        # a position drawn independently of the valid value, whose length may vary
        at = data.draw(st.integers(0, 1 << 16), label="at") % (len(valid) + 1)
        return (
            valid[:at] + data.draw(st.sampled_from(HOSTILE_CHARACTERS), label="char") + valid[at:]
        )
    return data.draw(st.one_of(*(STRATEGIES[kind] for kind in sorted(target.kinds))), label="value")


def unstorable(value: object, kinds: frozenset[str]) -> bool:
    """A value PostgreSQL could not store as it is: such a refusal must write nothing."""
    if isinstance(value, str):
        return "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, bytes):
        return "bytes" not in kinds
    if isinstance(value, dict) and "json" in kinds:
        return False
    if isinstance(value, list | dict):  # a dict is an Iterable[str] of its keys
        return "texts" not in kinds or any(unstorable(item, frozenset({"text"})) for item in value)
    return True  # a number, an object: never a text or bytes argument


# --- the tests ---------------------------------------------------------------------------------

EXAMPLES = max(10, hypothesis_settings.default.max_examples // 4)


@pytest.fixture
def world(authmodels_session: Session, settings: FlowSettings) -> Iterator[World]:
    """The valid rows, with cheap Argon2 parameters (the flows' cost is not what is tested)."""
    db = use_settings(
        authmodels_session,
        settings.replace(
            password_hasher=TEST_PASSWORD_HASHER,
            # many examples request links for one address: the limits are tested elsewhere
            request_limit_per_account=1_000_000,
            request_limit_per_ip=1_000_000,
            # recovery examples complete recoveries: the cooling-off is tested elsewhere
            recovery_cooling_off=timedelta(0),
        ),
    )
    yield World(db)


def test_every_public_function_with_text_or_bytes_is_driven() -> None:
    """A new public function is driven as soon as it exists, or listed with a reason: every
    required parameter of every target's function has a valid value."""
    assert FUNCTIONS and TARGETS
    problems = []
    for target in TARGETS:
        function = getattr(
            importlib.import_module(f"authmodels.services.{target.module}"), target.function
        )
        if f"{target.module}.{target.function}" in NOT_DRIVEN:
            continue
        for name, parameter in inspect.signature(function).parameters.items():
            required = parameter.default is inspect.Parameter.empty
            if required and name != target.parameter and resolver(target, name) is None:
                problems.append(f"{target.id}: no valid value for {name!r}")
            if name == target.parameter and target.field and resolver(target, name) is None:
                problems.append(f"{target.id}: no valid {name!r} to take the field from")
    assert not problems, (
        "add a valid value to VALID, or list the function in NOT_DRIVEN with the reason: "
        + "; ".join(problems)
    )
    # the discovery itself works: these are among the driven targets
    assert {
        "passwords.authenticate:email",
        "tokens.check_dpop_proof:proof",
        "webauthn.store_registration:verified.credential_id",
        "oauth.store_tokens:raw_data",
        "api_keys.create:scopes",
    } <= {t.id for t in TARGETS}


@pytest.mark.parametrize(
    "target",
    [t for t in TARGETS if f"{t.module}.{t.function}" not in NOT_DRIVEN],
    ids=lambda t: t.id,
)
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_only_typed_errors_escape_and_refusals_write_nothing(
    world: World, target: Target, data: st.DataObject
) -> None:
    db = world.db
    function = getattr(
        importlib.import_module(f"authmodels.services.{target.module}"), target.function
    )
    args = arguments(world, target, function)
    db.commit()  # the valid rows the arguments needed outlive the rollback after the call
    world.counter += 1
    if target.field is None:
        value = hostile(data, target, args.get(target.parameter))
        args[target.parameter] = value
    else:
        owner = args[target.parameter]
        value = hostile(data, target, getattr(owner, target.field))
        args[target.parameter] = dataclasses.replace(owner, **{target.field: value})

    before = writes(db)
    try:
        function(**args)
    except errors.AuthModelsError as refused:
        wrote = writes(db) != before
        allowed = RECORDED_REFUSALS.get(f"{target.module}.{target.function}", ())
        if wrote and (not isinstance(refused, allowed) or unstorable(value, target.kinds)):
            raise AssertionError(f"{type(refused).__name__} after a write: {refused}") from None
    finally:
        db.rollback()
