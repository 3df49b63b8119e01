"""Security events: what the flows refuse, with a severity, and the alert hook.

Every refusal that is a security event -- a reused refresh token, a replayed or mismatched DPoP
proof, a lockout, exhausted user-code attempts, a replayed TOTP or backup code, a WebAuthn
signature-counter regression, a reused step-up token, a revoked API key presented, a refused role
change -- writes one
``auth.security_events`` row (seed 002's ``logSecurityEvent``) through :func:`record`, inside a
:func:`authmodels.services.durable.durable` block: the row is committed even when the caller
rolls back on the error. For ``high`` and ``critical`` events, the hook a service registers in
its flow settings (``FlowSettings.security_event_hook``) is called with a
:class:`SecurityEventAlert` once the row is committed -- to page someone, post to a chat, feed a
SIEM. The hook runs in the request's thread: keep it quick (hand the alert to a queue), and an
exception it raises is logged, never raised to the flow.

==========================================  ========  ===========================================
``event_type``                              severity  written by
==========================================  ========  ===========================================
``refresh_token.reused``                    high      ``sessions.rotate_refresh_token``
``dpop.binding_mismatch``                   high      session, refresh and access token checks
``dpop.proof_replayed``                     high      ``tokens.check_dpop_proof``
``login.account_locked``                    high      ``passwords.authenticate`` (the attempt that
                                                      locks the account)
``login.locked_account_attempt``            medium    ``passwords.authenticate`` (while locked)
``login.deleted_account_attempt``           medium    ``passwords.authenticate``
``device_flow.user_code_attempts_exceeded`` medium    ``device_flow.approve`` / ``deny``
``mfa.totp_replayed``                       high      ``mfa.verify`` / ``mfa.confirm``
``mfa.backup_code_replayed``                high      ``mfa.use_backup_code``
``webauthn.sign_count_regression``          high      ``webauthn.record_authentication``
``step_up.token_reused``                    medium    ``step_up.consume``
``api_key.revoked_key_used``                medium    ``api_keys.authenticate``
``admin.unauthorized_role_change``          high      ``admin.change_role`` (by a non-admin)
``admin.guard_refused``                     high      ``admin.change_role`` (MA001/MA002 guards)
``request_limit.reached``                   low       the requests that send a message
                                                      (``signup.register``, ``password_reset``,
                                                      ``magic_links``, ``recovery`` requests,
                                                      ``email_verification`` requests)
``password_reset.token_reused``             medium    ``password_reset.complete``
``password_reset.completed``                low       ``password_reset.complete`` (success)
``account.email_changed``                   medium    ``email_verification.verify`` (a change)
``magic_link.reused``                       medium    ``magic_links.redeem``
``magic_link.client_mismatch``              medium    ``magic_links.redeem`` (another client)
``recovery.token_reused``                   medium    ``recovery.complete``
``account.recovered``                       medium    ``recovery.complete`` (success)
``recovery.cooling_off_refused``            medium    a credential change while an account
                                                      cools off after a recovery
``device.new_device``                       low       ``devices.record_login``
==========================================  ========  ===========================================

The successes among them (a reset or a recovery completed, an address changed, a new device) are
written in the caller's transaction, with the change they describe; the refusals commit on their
own, as above.

Failed logins themselves are rows of ``auth.login_attempts`` (one per attempt, with the keyed
hashes of the identifier typed and of the client's address): brute force (failed attempts per
period) and credential stuffing (identifiers tried per address) are counted there.
"""

from __future__ import annotations

import json
import re
import uuid
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.errors import InvalidInputError
from authmodels.locking import RowNotFoundError
from authmodels.models.enums import SecurityEventSeverity
from authmodels.models.security_events import EVENT_TYPE_PATTERN
from authmodels.services import _inputs
from authmodels.services._database_errors import database_errors
from authmodels.services.alerts import SecurityEventAlert
from authmodels.services.durable import after_commit, durable
from authmodels.services.settings import settings_for

__all__ = ["ALERT_SEVERITIES", "SecurityEventAlert", "record", "report"]

_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)

#: Severities for which ``FlowSettings.security_event_hook`` is called.
ALERT_SEVERITIES = frozenset({SecurityEventSeverity.HIGH, SecurityEventSeverity.CRITICAL})


_INSERT = text(
    """
    INSERT INTO auth.security_events (id, user_id, event_type, severity, ip_hash, ua_hash, details)
    VALUES (:id, :user_id, :event_type, :severity, :ip_hash, :ua_hash, CAST(:details AS jsonb))
    """
)


@database_errors
def record(
    db: Session,
    event_type: str,
    severity: SecurityEventSeverity,
    *,
    user_id: uuid.UUID | None,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
    details: dict[str, Any] | None = None,
) -> uuid.UUID:
    """Write one security event in ``db``'s transaction; alert once it is committed.

    Flows call it inside :func:`authmodels.services.durable.durable`, so the row is committed
    with the refusal's other writes even if the caller rolls back; the hook, for ``high`` and
    ``critical`` events, runs after that commit.

    Args:
        db: the session to write with (a durable block's session in the flows).
        event_type: what happened: lower case, dot-separated (``refresh_token.reused``).
        severity: how urgent it is.
        user_id: the account concerned, if known.
        ip: the client's address, stored only as a keyed hash.
        user_agent: the client's ``User-Agent``, stored only as a keyed hash.
        details: event-specific data (JSON); never a raw secret.

    Returns:
        The event's id.

    Raises:
        InvalidInputError: ``event_type`` is not lower case and dot-separated (at most 64
            characters), ``severity`` not a :class:`SecurityEventSeverity`, ``user_id`` not a
            UUID, ``user_agent`` not text of at most 8,192 characters, or ``details`` not a JSON
            object (nothing is written).
        InvalidIPAddressError: ``ip`` is not an address (nothing is written).
    """
    _inputs.text(event_type, "event_type", pattern=_EVENT_TYPE, form="dot.separated_lower_case")
    if not isinstance(severity, SecurityEventSeverity):
        raise InvalidInputError(
            f"severity must be a SecurityEventSeverity, not {type(severity).__name__}",
            field="severity",
        )
    _inputs.optional_identifier(user_id, "user_id")
    _inputs.user_agent(user_agent)
    if details is not None:
        _inputs.json_object(details, "details")
    settings = settings_for(db)
    event_id = uuid.uuid4()
    db.execute(
        _INSERT,
        {
            "id": event_id,
            "user_id": user_id,
            "event_type": event_type,
            "severity": severity.value,
            "ip_hash": None if ip is None else settings.privacy.ip_hash(ip),
            "ua_hash": None if user_agent is None else settings.privacy.ua_hash(user_agent),
            "details": json.dumps(details or {}),
        },
    )
    hook = settings.security_event_hook
    if hook is not None and severity in ALERT_SEVERITIES:
        alert = SecurityEventAlert(event_id, event_type, severity, user_id, dict(details or {}))
        after_commit(db, lambda: hook(alert))
    return event_id


@database_errors
def report(
    db: Session,
    event_type: str,
    severity: SecurityEventSeverity,
    *,
    user_id: uuid.UUID | None,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
    details: dict[str, Any] | None = None,
) -> uuid.UUID:
    """:func:`record` in a transaction of its own, committed before this returns.

    For a refusal whose only trace is the event (the caller raises next): the row survives the
    caller's rollback, and the caller's transaction is left as it was. An event about a user
    that only the caller's transaction holds (created in it, not committed) cannot outlive that
    transaction: it is written in it instead (in a SAVEPOINT), and lives and dies with the user.
    Arguments and errors are those of :func:`record`.
    """
    arguments: dict[str, Any] = {
        "user_id": user_id, "ip": ip, "user_agent": user_agent, "details": details
    }  # fmt: skip
    try:
        with durable(db) as side:
            return record(side, event_type, severity, **arguments)
    except RowNotFoundError:
        if user_id is None:
            raise
    with db.begin_nested():  # the user is the caller's own, uncommitted
        return record(db, event_type, severity, **arguments)
