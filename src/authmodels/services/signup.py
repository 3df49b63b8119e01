"""Sign-up: a new account, and the link that verifies its address; the same answer whether or
not the address was taken.

Decisions:

- **Only what a user may choose.** :func:`register` takes an e-mail address and a password and
  nothing else: the role, the verification, the lockout state and the master-admin flag are the
  columns' defaults (a new account is a ``user`` with an unverified address), whatever the caller
  passes; the database's own guard (revision 0024) refuses a user creating their own account
  otherwise. The address is stored normalised (trimmed, lower case: the e-mail identity of
  revision 0023), the password as Argon2id, after the password policy
  (:func:`authmodels.services.passwords.check_new_password`).
- **The unique index decides** whether the address is free: ``INSERT ... ON CONFLICT DO
  NOTHING`` (``uq_users_email_identity``), so two concurrent sign-ups with one address create
  one account, and neither fails.
- **Enumeration**: a sign-up form that answers "this address is taken" tells anyone which
  addresses have an account. :func:`register` returns a :class:`SignUp` either way, with a
  message to send *to the address typed*: a verification link when the account was created
  (``email_verification``), a notice that the address already has an account when it was not
  (``signup_address_taken``: "someone, maybe you, tried to sign up; sign in or reset your
  password"). The service sends the message and answers the client the same words in both cases
  ("check your inbox"); only the mailbox's owner learns which it was. Both paths hash the
  password (the Argon2 cost is the bulk of the time) and commit writes in the caller's
  transaction; the new account's path runs one statement more (its link), a fraction of a
  millisecond against the hash's tens.
- **Limits**: a sign-up counts towards the per-address and per-client limits of the flows that
  send messages (:mod:`authmodels.services._request_limits`), so the form cannot be used to mail
  one address again and again, and a refusal says nothing about the address either.
- A ``signup`` audit entry is written on both paths: ``success`` for a new account,
  ``failure`` (``address_taken``) on the existing account's trail otherwise.

Under row-level security, run :func:`register` on the service path
(:func:`authmodels.rls.service_role`): nobody is signed in yet.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.models.users import User
from authmodels.services import _inputs, _request_limits, audit, delivery
from authmodels.services._database_errors import database_errors
from authmodels.services._off_loop import off_loop
from authmodels.services.delivery import Delivery
from authmodels.services.email_verification import VerificationLink, issue
from authmodels.services.passwords import check_new_password
from authmodels.services.settings import settings_for

__all__ = ["ADDRESS_TAKEN_TEMPLATE", "SignUp", "register"]

#: The notice sent to an address that already has an account.
ADDRESS_TAKEN_TEMPLATE = "signup_address_taken"


@dataclass(frozen=True)
class SignUp:
    """What a sign-up did, for the service (never show ``created`` to the client).

    Attributes:
        created: whether an account was created.
        user: the new account; None when the address was taken.
        message: the message to send to the address typed, in both cases (a verification link
            or the address-taken notice).
        verification: the verification link (its raw token for the link), for a new account.
    """

    created: bool
    user: User | None
    message: Delivery
    verification: VerificationLink | None

    def __repr__(self) -> str:
        return f"SignUp(created={self.created}, {self.message!r})"


# the rule: one live account per address, decided by the unique index; the existing account's
# id is read in the same statement (its snapshot does not see the new row)
_CREATE = text(
    """
    WITH created AS (
        INSERT INTO auth.users (email, password_hash) VALUES (:email, :password_hash)
        ON CONFLICT DO NOTHING
        RETURNING id
    )
    SELECT (SELECT id FROM created) AS created,
           (SELECT id FROM auth.users WHERE lower(email) = :email AND deleted_at IS NULL)
               AS existing
    """
)


@database_errors
def register(
    db: Session,
    email: str,
    password: str,
    *,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
) -> SignUp:
    """Create an account, or, if the address has one, prepare the notice for its owner.

    In the caller's transaction (nothing is committed): the account (defaults for every column
    but the address and the password hash), its verification link, the pending delivery of the
    message, a ``signup`` audit entry; for a taken address, the delivery of the notice and a
    ``signup`` audit entry with status ``failure`` on the existing account.
    The request is counted first, in a transaction of its own.

    Args:
        db: the session (on the service path under row-level security).
        email: the address typed (case and surrounding spaces ignored).
        password: the password chosen.
        ip: the client's address (counted towards the per-client limit, as a keyed hash).
        user_agent: the client's ``User-Agent`` (keyed hash in the audit entry).

    Returns:
        The :class:`SignUp`: send its ``message`` to ``email``, answer the client the same way
        whatever ``created`` says.

    Raises:
        InvalidInputError: ``email`` is not an address an account can have, ``password`` not
            text of 1 to 4,096 characters, ``user_agent`` not text of at most 8,192.
        WeakPasswordError: the password is shorter than ``FlowSettings.password_min_length``.
        TooManyRequestsError: the per-address or per-client limit is reached (its security
            event is committed; nothing else is written).
        InvalidIPAddressError: ``ip`` is not an address.
    """
    address = _inputs.email_address(email)
    chosen = check_new_password(db, password, "password")
    _inputs.user_agent(user_agent)
    _inputs.ip_address(ip)
    settings = settings_for(db)
    _request_limits.admit(db, "signup", email=address, ip=ip, user_id=None)
    password_hash = off_loop(settings.password_hasher.hash, chosen)  # on both paths: the same time
    row = db.execute(_CREATE, {"email": address, "password_hash": password_hash}).one()
    if row.created is None:
        notice = delivery.write(
            db, "email", address, template=ADDRESS_TAKEN_TEMPLATE, user_id=row.existing
        )
        audit.record(
            db, "signup", user_id=row.existing, status="failure", ip=ip, user_agent=user_agent,
            details={"reason": "address_taken"},
        )  # fmt: skip
        return SignUp(False, None, notice, None)

    user_id: uuid.UUID = row.created
    link = issue(db, user_id, address)
    audit.record(db, "signup", user_id=user_id, ip=ip, user_agent=user_agent)
    user = db.get(User, user_id)
    assert user is not None  # created above, in this transaction
    return SignUp(True, user, link.message, link)
