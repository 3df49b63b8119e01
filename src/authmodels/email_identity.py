"""One e-mail identity: an address names at most one live account, whatever its letter case.

The identity of an address is ``lower(email)`` in SQL and :func:`normalize_email` in Python
(the same thing for every address ``ck_users_email_format`` accepts: ASCII, no spaces). Revision
0023 makes it unique among live accounts (``uq_users_email_identity``, ``WHERE deleted_at IS
NULL``), and login looks accounts up by it.

Accounts made before 0023 may share an address in two letter cases (``ADA@example.com`` and
``ada@example.com``). They are never merged or deleted silently: 0023 stops and lists them
(:func:`find_conflicts`), and an operator picks, per address, the account that keeps it
(:func:`resolve_conflicts`, ``authmodels users email-conflicts --resolve --keep ID``). Each other
account gets :func:`conflict_address`, an address that cannot collide with another and cannot
receive mail; its old row goes to ``auth.quarantine`` with the reason, and an audit entry records
the change. Nothing else of those accounts changes: their sessions, tokens and data stay.

Both functions read every live account, so they must run as the owner of the tables (row-level
security shows the application role nothing).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from authmodels.errors import EmailConflictError, EmailConflictResolutionError, InvalidInputError

__all__ = [
    "RESOLVE_COMMAND",
    "ConflictingAccount",
    "EmailConflicts",
    "Resolution",
    "conflict_address",
    "find_conflicts",
    "normalize_email",
    "raise_for_conflicts",
    "resolve_conflicts",
]

#: The command that lists and resolves conflicts (named in 0023's error).
RESOLVE_COMMAND = "authmodels users email-conflicts"
#: ``auth.quarantine.revision`` of the rows a resolution keeps: the revision that required it.
QUARANTINE_REVISION = "0023_email_identity"
#: The domain of :func:`conflict_address`: ``.invalid`` is reserved (RFC 2606, RFC 6761), so no
#: mail is ever delivered there.
CONFLICT_DOMAIN = "email-conflict.invalid"
#: Longest e-mail address (RFC 5321: 64 octets of local part, "@", 255 of domain).
MAX_EMAIL_LENGTH = 320
#: How many accounts an error message lists.
LISTED = 20


def normalize_email(email: str) -> str:
    """The identity of an e-mail address, as it is looked up and stored: trimmed, lower case.

    The same as ``lower(email)`` in SQL for every address the schema accepts, which is what
    ``uq_users_email_identity`` indexes.

    Raises:
        InvalidInputError: ``email`` is not text of 1 to 320 characters without NUL or an
            unpaired surrogate.
    """
    if (
        not isinstance(email, str)
        or not 0 < len(email) <= MAX_EMAIL_LENGTH
        or "\x00" in email
        or (not email.isascii() and _has_lone_surrogate(email))
    ):
        raise InvalidInputError(
            f"an e-mail address is text of 1 to {MAX_EMAIL_LENGTH} characters: check the address",
            field="email",
        )
    return email.strip().lower()


def _has_lone_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def conflict_address(user_id: uuid.UUID) -> str:
    """The address an account gets when another one keeps its e-mail address.

    Unique (it contains the account's id) and undeliverable (``.invalid``), and it passes
    ``ck_users_email_format``.
    """
    return f"conflict-{user_id}@{CONFLICT_DOMAIN}"


@dataclass(frozen=True)
class ConflictingAccount:
    """A live account whose address another live account has in another letter case."""

    user_id: uuid.UUID
    email: str
    created_at: datetime
    last_login_at: datetime | None

    @property
    def identity(self) -> str:
        """The address they share, normalised."""
        return normalize_email(self.email)


@dataclass(frozen=True)
class EmailConflicts:
    """The live accounts that share an address (see :func:`find_conflicts`).

    Attributes:
        accounts: the accounts, grouped by address (oldest first within an address); at most
            the ``limit`` given to :func:`find_conflicts`.
        addresses: how many addresses are shared.
        total: how many accounts share one.
    """

    accounts: list[ConflictingAccount]
    addresses: int
    total: int

    def __bool__(self) -> bool:
        return self.total > 0

    def describe(self) -> str:
        """The accounts as lines an operator reads: id, address, created, last login."""
        lines = [
            f"  {a.user_id}  {a.email}  created {a.created_at:%Y-%m-%d %H:%M}  last login "
            + (f"{a.last_login_at:%Y-%m-%d %H:%M}" if a.last_login_at else "never")
            for a in self.accounts
        ]
        if self.total > len(self.accounts):
            lines.append(f"  ... and {self.total - len(self.accounts)} more")
        return "\n".join(lines)


# the identity: lower(email) among live accounts (what uq_users_email_identity makes unique)
_CONFLICTS = text(
    """
    WITH shared AS (
        SELECT lower(email) AS identity FROM auth.users
         WHERE deleted_at IS NULL GROUP BY 1 HAVING count(*) > 1
    )
    SELECT u.id, u.email, u.created_at, u.last_login_at,
           count(*) OVER () AS total, (SELECT count(*) FROM shared) AS addresses
      FROM auth.users AS u JOIN shared ON lower(u.email) = shared.identity
     WHERE u.deleted_at IS NULL
     ORDER BY shared.identity, u.created_at, u.id
     LIMIT :limit
    """
)


def find_conflicts(conn: Connection, *, limit: int | None = LISTED) -> EmailConflicts:
    """The live accounts that share an e-mail address in another letter case.

    Args:
        conn: a connection of the tables' owner.
        limit: how many accounts to return (None: all); the counts are always complete.
    """
    rows = conn.execute(_CONFLICTS, {"limit": limit}).all()
    if not rows:
        return EmailConflicts(accounts=[], addresses=0, total=0)
    return EmailConflicts(
        accounts=[ConflictingAccount(r.id, r.email, r.created_at, r.last_login_at) for r in rows],
        addresses=int(rows[0].addresses),
        total=int(rows[0].total),
    )


def raise_for_conflicts(conn: Connection, *, while_building: bool = False) -> None:
    """Stop, with the list and the command that resolves it, when live accounts share an address.

    Args:
        conn: a connection of the tables' owner.
        while_building: the conflict appeared while the unique index was being built (an
            account written concurrently), not before.

    Raises:
        EmailConflictError: some live accounts share an address.
    """
    conflicts = find_conflicts(conn)
    if not conflicts:
        return
    when = (
        "an account written while the unique index was being built shares an address with "
        "another (the index was dropped again)"
        if while_building
        else "live accounts share an e-mail address in different letter case"
    )
    raise EmailConflictError(
        f"revision 0023 needs one live account per e-mail address, whatever its case; {when}: "
        f"{conflicts.total} accounts share {conflicts.addresses} addresses. Nothing was changed. "
        f"List them with `{RESOLVE_COMMAND}`, then pick the account that keeps each address with "
        f"`{RESOLVE_COMMAND} --resolve --keep <user_id>` (the others get an undeliverable "
        "address; their old row is kept in auth.quarantine), and run the upgrade again.\n"
        + conflicts.describe()
    )


@dataclass(frozen=True)
class Resolution:
    """What :func:`resolve_conflicts` did to one account that did not keep its address."""

    user_id: uuid.UUID
    old_email: str
    new_email: str
    kept_by: uuid.UUID
    quarantine_id: int


_KEPT = text("SELECT id, email FROM auth.users WHERE id = :id AND deleted_at IS NULL FOR UPDATE")
_OTHERS = text(
    """
    SELECT id, email FROM auth.users
     WHERE lower(email) = :identity AND deleted_at IS NULL AND id <> :keep
     ORDER BY id FOR UPDATE
    """
)
_KEEP_OLD_ROW = text(
    """
    INSERT INTO auth.quarantine (source_table, reason, row_data, revision)
    SELECT 'users', :reason, to_jsonb(u), :revision FROM auth.users AS u WHERE u.id = :id
    RETURNING id
    """
)
# the address is no longer the one verified; the rest of the account stays as it is
_RENAME = text(
    """
    UPDATE auth.users
       SET email = :email, email_verified = false, email_verified_at = NULL
     WHERE id = :id
    """
)
_AUDIT = text(
    """
    INSERT INTO auth.audit_logs (user_id, target_user_id, event_type, action, details)
    VALUES (:id, :id, 'sensitive_action', 'users.email_conflict_resolved',
            jsonb_build_object('kept_by', CAST(:keep AS text), 'quarantine_id', :q))
    """
)


def resolve_conflicts(conn: Connection, keep: Sequence[uuid.UUID]) -> list[Resolution]:
    """Give each address in ``keep`` to that account; the others that share it get another.

    In the caller's transaction (nothing is committed). For each account of ``keep``, every
    other live account whose address is the same but for letter case: its row as it is goes to
    ``auth.quarantine`` (the reason names the account that kept the address), its address
    becomes :func:`conflict_address` (no longer verified), and an audit entry
    (``sensitive_action``, action ``users.email_conflict_resolved``) is written. Nothing is
    deleted, and the accounts of ``keep`` do not change.

    Args:
        conn: a connection of the tables' owner.
        keep: the accounts that keep their address, one per shared address.

    Returns:
        One entry per account that got another address.

    Raises:
        EmailConflictResolutionError: an account of ``keep`` is not live, shares its address with
            no other live account, or shares it with another account of ``keep`` (checked
            before anything is written).
    """
    plan: list[tuple[uuid.UUID, list[tuple[uuid.UUID, str]]]] = []
    kept_identities: dict[str, uuid.UUID] = {}
    for kept_id in dict.fromkeys(keep):
        kept = conn.execute(_KEPT, {"id": kept_id}).first()
        if kept is None:
            raise EmailConflictResolutionError(
                f"no live account has the id {kept_id}: `{RESOLVE_COMMAND}` lists the accounts "
                "that share an address"
            )
        identity = normalize_email(kept.email)
        if identity in kept_identities:
            raise EmailConflictResolutionError(
                f"accounts {kept_identities[identity]} and {kept_id} both share the address "
                f"{identity!r}: keep one of them"
            )
        kept_identities[identity] = kept_id
        others = [
            (row.id, row.email)
            for row in conn.execute(_OTHERS, {"identity": identity, "keep": kept_id})
        ]
        if not others:
            raise EmailConflictResolutionError(
                f"account {kept_id} ({kept.email}) shares its address with no other live "
                "account: there is nothing to resolve"
            )
        plan.append((kept_id, others))

    done: list[Resolution] = []
    for kept_id, others in plan:
        for user_id, old_email in others:
            new_email = conflict_address(user_id)
            reason = (
                f"e-mail address {old_email!r} also belongs, in another letter case, to live "
                f"account {kept_id}, which keeps it; this account's address became "
                f"{new_email!r} ({RESOLVE_COMMAND} --resolve)"
            )
            quarantine_id = conn.execute(
                _KEEP_OLD_ROW, {"reason": reason, "revision": QUARANTINE_REVISION, "id": user_id}
            ).scalar_one()
            conn.execute(_RENAME, {"email": new_email, "id": user_id})
            conn.execute(_AUDIT, {"id": user_id, "keep": str(kept_id), "q": quarantine_id})
            done.append(Resolution(user_id, old_email, new_email, kept_id, int(quarantine_id)))
    return done
