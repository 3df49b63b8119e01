"""Administration: role changes, guarded by a step-up token and the database's admin guards.

:func:`change_role` reads top to bottom as the flow:

1. serialise with every other admin change: the transaction-level advisory lock that revision
   0009's trigger ``users_lock_admin_changes`` takes (key ``"authadmn"``), taken *first*, before
   any row lock, as the trigger does, so the lock order stays the same and two role changes
   cannot deadlock;
2. check that the actor is a live admin, with a snapshot taken after the lock (READ COMMITTED:
   a demotion of the actor committed while we waited is seen -- an actor demoted a moment ago
   cannot act on the old state);
3. consume the actor's step-up token for ``admin.role_change``
   (:func:`authmodels.services.step_up.consume`);
4. update the target's role with optimistic locking (``WHERE version = :expected``,
   :func:`authmodels.locking.update_versioned`); the triggers refuse to demote the master admin
   (``MA001``) or the last admin (``MA002``), turned into
   :class:`~authmodels.errors.MasterAdminProtectedError` /
   :class:`~authmodels.errors.LastAdminError` carrying the database's messages (seed 001's);
5. audit ``role_changed`` with actor, target, action ``admin.role_change`` and a correlation id.

Steps 3 to 5 run in a SAVEPOINT: when any of them fails, none of them is kept (the step-up token
stays unspent, the role and version unchanged, no audit entry) and the caller's transaction
stays usable.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from authmodels.errors import (
    GUARD_ERRORS,
    InvalidInputError,
    NotAuthorizedError,
    StepUpTokenInvalid,
)
from authmodels.locking import RowNotFoundError, update_versioned
from authmodels.models.audit import MAX_CORRELATION_ID_LENGTH
from authmodels.models.enums import SecurityEventSeverity, UserRole
from authmodels.models.users import User
from authmodels.services import _inputs, audit, security_events, step_up
from authmodels.services._database_errors import database_errors

__all__ = ["ADMIN_LOCK_KEY", "ROLE_CHANGE_ACTION", "change_role"]

#: The advisory lock of revision 0009's admin guards ("authadmn").
ADMIN_LOCK_KEY = 0x6175746861646D6E
#: ``audit_logs.action`` and step-up purpose of a role change.
ROLE_CHANGE_ACTION = "admin.role_change"

#: Largest ``users.version`` (an ``integer`` column).
_MAX_INT4 = 2**31 - 1


def _role(value: UserRole | str) -> UserRole:
    try:
        return UserRole(value)
    except ValueError:
        raise InvalidInputError(
            f"role must be one of {', '.join(r.value for r in UserRole)}, not {str(value)[:40]!r}",
            field="role",
        ) from None


_LOCK_ADMIN_CHANGES = text(f"SELECT pg_advisory_xact_lock({ADMIN_LOCK_KEY})")
_ACTOR_IS_ADMIN = text(
    "SELECT role = 'admin' AND deleted_at IS NULL FROM auth.users WHERE id = :actor"
)
_TARGET = text("SELECT role, version FROM auth.users WHERE id = :target")


@database_errors
def change_role(
    db: Session,
    *,
    actor: User | uuid.UUID,
    target: User | uuid.UUID,
    role: UserRole | str,
    step_up_token: str,
    expected_version: int | None = None,
    correlation_id: str | None = None,
    session_id: uuid.UUID | None = None,
) -> User:
    """Give ``target`` the role ``role``, as ``actor``.

    Works in the caller's transaction (nothing is committed); see the module docstring for the
    steps and the lock order.

    Args:
        db: the session.
        actor: the admin making the change (or their id).
        target: the account whose role changes (or its id).
        role: the new role.
        step_up_token: a step-up token of ``actor`` for ``admin.role_change``; spent on success.
        expected_version: the target's ``version`` the actor saw; defaults to the version of
            ``target`` when a loaded :class:`User` is given, else to the current one.
        correlation_id: the request's correlation id; a new UUID when None.
        session_id: the actor's session, for a step-up token bound to it.

    Returns:
        The target's row, with its new role and version.

    Raises:
        NotAuthorizedError: the actor is not a live admin (nothing is spent).
        StepUpTokenInvalid, StepUpTokenUsed, StepUpTokenExpired: the step-up token is refused.
        ConcurrentUpdateError: the target changed since ``expected_version``.
        RowNotFoundError: the target does not exist.
        MasterAdminProtectedError: the target is the master admin ("Cannot demote the master
            admin", SQLSTATE MA001).
        LastAdminError: the change would leave no admin ("Cannot remove the last admin", MA002).
        InvalidInputError: ``role`` is not a role, ``actor`` or ``target`` not a user or an id,
            ``expected_version`` not a positive integer, ``correlation_id`` not text of 1 to 200
            characters, ``session_id`` not a UUID.
    """
    new_role = _role(role)
    actor_id, target_id = _inputs.user_id_of(actor, "actor"), _inputs.user_id_of(target, "target")
    _inputs.presented(
        step_up_token, "step-up token", error=StepUpTokenInvalid, hint=": re-authenticate"
    )
    if expected_version is not None:
        _inputs.integer(expected_version, "expected_version", minimum=1, maximum=_MAX_INT4)
    if correlation_id is not None:
        _inputs.text(correlation_id, "correlation_id", max_length=MAX_CORRELATION_ID_LENGTH)
    _inputs.optional_identifier(session_id, "session_id")
    correlation_id = correlation_id or str(uuid.uuid4())
    if expected_version is None and isinstance(target, User):
        expected_version = target.version

    db.execute(_LOCK_ADMIN_CHANGES)
    if not db.execute(_ACTOR_IS_ADMIN, {"actor": actor_id}).scalar():
        security_events.report(
            db, "admin.unauthorized_role_change", SecurityEventSeverity.HIGH, user_id=actor_id,
            details={"target_user_id": str(target_id), "to": str(new_role)},
        )  # fmt: skip
        raise NotAuthorizedError("only an admin can change roles; the actor is not an admin")
    current = db.execute(_TARGET, {"target": target_id}).first()
    if current is None:
        raise RowNotFoundError(f"User {target_id} does not exist")
    if expected_version is None:
        expected_version = current.version

    try:
        with db.begin_nested():
            step_up.consume(
                db, actor_id, step_up_token, purpose=ROLE_CHANGE_ACTION, session_id=session_id
            )
            updated = update_versioned(db, User, target_id, expected_version, role=new_role)
            audit.record(
                db,
                "role_changed",
                user_id=target_id,
                actor_user_id=actor_id,
                target_user_id=target_id,
                action=ROLE_CHANGE_ACTION,
                correlation_id=correlation_id,
                details={"from": str(current.role), "to": str(new_role)},
            )
    except DBAPIError as exc:
        guard = GUARD_ERRORS.get(getattr(exc.orig, "sqlstate", None) or "")
        if guard is None:
            raise
        diag = getattr(exc.orig, "diag", None)
        message = getattr(diag, "message_primary", None) or guard.__doc__ or "refused"
        security_events.report(
            db, "admin.guard_refused", SecurityEventSeverity.HIGH, user_id=actor_id,
            details={"guard": guard.__name__, "target_user_id": str(target_id),
                     "to": str(new_role), "correlation_id": correlation_id},
        )  # fmt: skip
        raise guard(message) from None
    return updated
