"""Row-level security from Python: the current user of a transaction, and the service path.

Revision 0006 enables row-level security on every user-owned table of schema ``auth``. A policy
lets a role see the rows whose owner is ``auth.uid()``, the UUID in the transaction-local setting
``authmodels.user_id``. So a request handler runs its queries as its user::

    with db.begin():
        rls.set_current_user(db, user.id)       # until this transaction ends
        db.scalars(select(Session))             # only this user's sessions

or, for part of a transaction, ``with rls.as_user(db, user.id): ...``. With no user set, the
user-owned tables show no row at all.

The policies bind the application's role, which must not own the tables (see
:func:`grant_app_role`). Work that needs every row -- looking up a token before its user is
known, purges, administration -- runs under a *service role*, for one transaction::

    with db.begin(), rls.service_role(db, "authmodels_service"):
        ...

which needs the application's login role to be a member of that role (``GRANT
authmodels_service TO app``) and the role registered with :func:`grant_service_role`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from authmodels.errors import ConfigurationError

__all__ = [
    "USER_SETTING",
    "as_user",
    "current_user_id",
    "grant_app_role",
    "grant_service_role",
    "require_owner",
    "revoke_service_role",
    "service_role",
    "set_current_user",
]

#: The setting ``auth.uid()`` reads.
USER_SETTING = "authmodels.user_id"

Bind = Session | Connection


def set_current_user(bind: Bind, user_id: uuid.UUID | str | None) -> None:
    """Make ``user_id`` the current user until the end of the current transaction.

    ``None`` clears it (no user: the user-owned tables show nothing). The setting is
    transaction-local (``set_config(..., true)``), so it can never leak to the next transaction
    that reuses the pooled connection.

    Args:
        bind: the Session or Connection whose transaction it applies to.
        user_id: the user's id, or None.
    """
    value = "" if user_id is None else str(uuid.UUID(str(user_id)))
    bind.execute(
        text("SELECT set_config(:name, :value, true)"), {"name": USER_SETTING, "value": value}
    )


def current_user_id(bind: Bind) -> uuid.UUID | None:
    """The current user of the transaction (what ``auth.uid()`` returns), or None."""
    value = bind.execute(text("SELECT auth.uid()")).scalar()
    return None if value is None else uuid.UUID(str(value))


@contextmanager
def as_user(bind: Bind, user_id: uuid.UUID | str | None) -> Iterator[None]:
    """Run the block as ``user_id``, then restore the previous current user.

    Must be used inside a transaction (the setting is transaction-local).
    """
    previous = current_user_id(bind)
    set_current_user(bind, user_id)
    try:
        yield
    finally:
        set_current_user(bind, previous)


@contextmanager
def service_role(bind: Bind, role: str) -> Iterator[None]:
    """Run the block as ``role`` (``SET LOCAL ROLE``), then switch back.

    The role must have been registered with :func:`grant_service_role` (or have ``BYPASSRLS``)
    and the connection's login role must be a member of it. Must be used inside a transaction;
    if the transaction ends inside the block, the role ends with it. Inside ``Session.begin()``,
    a commit made in the block (some flows of :mod:`authmodels.services` commit before raising)
    makes the switch back fail with SQLAlchemy's ``InvalidRequestError``, which replaces the
    error being raised: use a session without ``begin()`` for those flows.
    """
    previous = bind.execute(text("SELECT current_user")).scalar()
    bind.execute(text(f"SET LOCAL ROLE {_identifier(bind, role)}"))
    try:
        yield
    finally:
        bind.execute(text(f"SET LOCAL ROLE {_identifier(bind, str(previous))}"))


def grant_app_role(bind: Bind, role: str) -> None:
    """``auth.grant_app_role(role)``: the application role's privileges (run as the owner).

    The database refuses a superuser, a ``BYPASSRLS`` role, or the tables' owner: row-level
    security would not apply to them.
    """
    bind.execute(text("SELECT auth.grant_app_role(:role)"), {"role": role})


def grant_service_role(bind: Bind, role: str) -> None:
    """``auth.grant_service_role(role)``: privileges plus a policy allowing every row, on every
    table with row-level security, for ``role`` only (run as the owner, again after upgrades)."""
    bind.execute(text("SELECT auth.grant_service_role(:role)"), {"role": role})


def revoke_service_role(bind: Bind, role: str) -> None:
    """``auth.revoke_service_role(role)``: remove the service policies of ``role``."""
    bind.execute(text("SELECT auth.revoke_service_role(:role)"), {"role": role})


def require_owner(bind: Bind, job: str) -> None:
    """Refuse to start ``job`` unless the role in use owns schema ``auth``'s tables (or is a
    member of their owner).

    Maintenance that must see and rewrite every row -- the retention purge, re-encryption -- is
    the owner's: row-level security would hide rows from an application or service role (a job
    that silently skips them), and revision 0019 keeps the audit archive and partitions out of
    their reach.

    Raises:
        ConfigurationError: the role is not the owner; the message names both.
    """
    role, owner, allowed = bind.execute(
        text(
            "SELECT current_user, relowner::regrole::text, "
            "pg_has_role(current_user, relowner, 'USAGE') "
            "FROM pg_class WHERE oid = 'auth.users'::regclass"
        )
    ).one()
    if not allowed:
        raise ConfigurationError(
            f"{job} runs as role {role!r}, which does not own schema auth: run it as {owner!r} "
            "(or a member of it); application and service roles see only the rows row-level "
            "security allows them"
        )


def _identifier(bind: Bind, name: str) -> str:
    return str(bind.execute(text("SELECT quote_ident(:n)"), {"n": name}).scalar())
