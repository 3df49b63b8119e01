"""Magic links: passwordless sign-in by a single-use, short-lived link sent by e-mail.

Seed 004 lists them among its "future" enhancements. A link proves control of the mailbox, one
factor: an account with a second factor enrolled still needs it after the link (the service
checks ``user.two_factor_enabled`` before it creates the session).

Decisions:

- **Request** (:func:`request`) answers an unknown address as a known one (a
  :class:`MagicLinkRequest` whose ``token`` and ``message`` are None, the same statements, the
  same limits: see :mod:`authmodels.services.password_reset`, whose request it mirrors). A new
  request deletes the account's links not used yet.
- **Short-lived and single use**: ``FlowSettings.magic_link_ttl`` (15 minutes; at most an hour,
  a CHECK of ``auth.magic_link_tokens`` says so), spent by one conditional UPDATE: of
  concurrent redemptions exactly one signs in.
- **What binds a link**: nothing by default -- a link opened on the phone that received the mail
  signs that phone in. A service that wants the link to work only where it was asked for passes
  ``bind_to`` at request time: a value only the requesting client holds, such as a random
  value it just set in a cookie (or the device fingerprint of :mod:`authmodels.services.
  devices`), and the same value, read from the client that opens the link, to :func:`redeem`.
  Only its keyed hash is stored (``client_hash``). Not the IP address: mobile clients change
  address between asking and clicking, and an address is shared by everyone behind a NAT. A
  link opened by another client is refused (:class:`~authmodels.errors.MagicLinkClientMismatch`,
  a ``medium`` ``magic_link.client_mismatch`` security event) and stays usable where it belongs:
  a link forwarded, or read by whoever reads the mailbox, signs nobody else in.
- **Redeeming** marks the address verified (the link proved it), records a successful
  ``login_attempts`` row and ``last_login_at``, and a ``magic_link_login`` audit entry. The
  password lockout is left as it is: it counts wrong passwords, which a link does not try. A
  second use is refused (:class:`~authmodels.errors.TokenAlreadyUsedError`) with a ``medium``
  ``magic_link.reused`` security event.

Under row-level security both run on the service path (:func:`authmodels.rls.service_role`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.errors import (
    InvalidTokenError,
    MagicLinkClientMismatch,
    TokenAlreadyUsedError,
    TokenExpiredError,
)
from authmodels.models.enums import LoginAttemptResult, SecurityEventSeverity
from authmodels.models.users import User
from authmodels.security.hashing import new_token
from authmodels.services import _inputs, _request_limits, audit, delivery, security_events
from authmodels.services._database_errors import database_errors
from authmodels.services.delivery import Delivery
from authmodels.services.settings import settings_for

__all__ = ["MAX_CLIENT_LENGTH", "MagicLinkRequest", "redeem", "request"]

TEMPLATE = "magic_link"
#: Longest ``bind_to`` / ``client`` value accepted.
MAX_CLIENT_LENGTH = 1024


@dataclass(frozen=True)
class MagicLinkRequest:
    """What a magic-link request produced, for the service (tell the client nothing of it).

    Attributes:
        token: the raw token for the link; None when no live account has the address.
        expires_at: end of the link's lifetime (None with no token).
        message: the pending delivery of the link; None with no token.
    """

    token: str | None
    expires_at: datetime | None
    message: Delivery | None

    def __repr__(self) -> str:
        return f"MagicLinkRequest(expires_at={self.expires_at}, {self.message!r}, token=<hidden>)"


_ISSUE = text(
    """
    WITH superseded AS (
        DELETE FROM auth.magic_link_tokens WHERE user_id = :user_id AND used_at IS NULL
    )
    INSERT INTO auth.magic_link_tokens (user_id, token_hash, client_hash, ip_hash, expires_at)
    SELECT :user_id, :token_hash, :client_hash, :ip_hash, now() + :ttl
     WHERE CAST(:user_id AS uuid) IS NOT NULL
    RETURNING expires_at
    """
)


def _client(value: object, field: str) -> str | None:
    return _inputs.optional_text(value, field, max_length=MAX_CLIENT_LENGTH)


@database_errors
def request(
    db: Session,
    email: str,
    *,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
    bind_to: str | None = None,
) -> MagicLinkRequest:
    """Ask for a sign-in link: for a live account with this address, a new link (older ones
    stop working); for none, nothing, at the same cost.

    The request is counted first, in a transaction of its own; the rest is written in the
    caller's transaction (nothing is committed): the link's digest (with ``bind_to``'s keyed
    hash), its pending delivery (``magic_link``), a ``magic_link_requested`` audit entry
    (status ``failure`` and no user for an unknown address).

    Args:
        db: the session (on the service path under row-level security).
        email: the address typed (case and surrounding spaces ignored).
        ip: the client's address (keyed hash; counted towards the per-client limit).
        user_agent: the client's ``User-Agent`` (keyed hash in the audit entry).
        bind_to: a value only the requesting client holds, to bind the link to it (see the
            module docstring); None: any client may open the link.

    Returns:
        The :class:`MagicLinkRequest`; answer the client the same way in both cases.

    Raises:
        TooManyRequestsError: the per-address or per-client limit is reached (its security
            event is committed; nothing else is written).
        InvalidInputError: ``email`` is not an address an account can have, ``bind_to`` not
            text of 1 to 1,024 characters, ``user_agent`` not text of at most 8,192.
        InvalidIPAddressError: ``ip`` is not an address.
    """
    address = _inputs.email_address(email)
    binding = _client(bind_to, "bind_to")
    _inputs.user_agent(user_agent)
    _inputs.ip_address(ip)
    settings = settings_for(db)
    user_id = _request_limits.live_account(db, address)
    _request_limits.admit(db, "magic_link", email=address, ip=ip, user_id=user_id)
    raw = new_token()
    expires_at = db.execute(
        _ISSUE,
        {
            "user_id": user_id,
            "token_hash": settings.hasher.digest(raw),
            "client_hash": None if binding is None else settings.privacy.client_hash(binding),
            "ip_hash": None if ip is None else settings.privacy.ip_hash(ip),
            "ttl": settings.magic_link_ttl,
        },
    ).scalar()
    message = delivery.write_if(
        db, "email", address, send=user_id is not None, template=TEMPLATE, user_id=user_id
    )
    audit.record(
        db, "magic_link_requested", user_id=user_id,
        status="success" if user_id is not None else "failure", ip=ip, user_agent=user_agent,
        details={"bound": binding is not None},
    )  # fmt: skip
    if user_id is None:
        return MagicLinkRequest(None, None, None)
    return MagicLinkRequest(raw, expires_at, message)


# the rule: a link signs in once, while it lives, an account that lives, and only the client it
# is bound to (when it is bound)
_SPEND = text(
    """
    UPDATE auth.magic_link_tokens AS t SET used_at = now()
      FROM auth.users AS u
     WHERE t.token_hash = ANY(:candidates)
       AND t.used_at IS NULL AND t.expires_at > now()
       AND (t.client_hash IS NULL OR t.client_hash = ANY(:clients))
       AND u.id = t.user_id AND u.deleted_at IS NULL
    RETURNING t.id, t.user_id, lower(u.email) AS email
    """
)
_WHY_NOT = text(
    """
    SELECT t.id, t.user_id, t.used_at IS NOT NULL AS used, t.expires_at <= now() AS expired,
           t.client_hash IS NOT NULL AND NOT t.client_hash = ANY(:clients) AS other_client
      FROM auth.magic_link_tokens AS t JOIN auth.users AS u ON u.id = t.user_id
     WHERE t.token_hash = ANY(:candidates) AND u.deleted_at IS NULL
    """
)
_SIGNED_IN = text(
    """
    WITH attempt AS (
        INSERT INTO auth.login_attempts (user_id, identifier_hash, ip_hash, ua_hash,
                                         attempt_result)
        VALUES (:user_id, :identifier_hash, :ip_hash, :ua_hash,
                CAST(:result AS auth.login_attempt_result))
    )
    UPDATE auth.users
       SET last_login_at = now(), email_verified = true,
           email_verified_at = coalesce(email_verified_at, now())
     WHERE id = :user_id
    """
)


@database_errors
def redeem(
    db: Session,
    token: str,
    *,
    client: str | None = None,
    ip: str | IPv4Address | IPv6Address | None = None,
    user_agent: str | None = None,
) -> User:
    """Spend a magic link: the account it signs in (create its session next).

    In the caller's transaction (nothing is committed): the link is spent, the address marked
    verified, ``last_login_at`` set, a successful ``login_attempts`` row and a
    ``magic_link_login`` audit entry written. A second use and a link opened by another client
    than the one it is bound to record their security event, committed on its own.

    Args:
        db: the session (on the service path under row-level security).
        token: the raw token from the link.
        client: the value the opening client holds (the ``bind_to`` of the request), if the
            service binds its links.
        ip: the client's address (keyed hash).
        user_agent: the client's ``User-Agent`` (keyed hash).

    Returns:
        The account, refreshed.

    Raises:
        InvalidTokenError: no link of a live account has this token.
        MagicLinkClientMismatch: the link is bound to another client (its security event is
            committed; the link stays usable by its client).
        TokenAlreadyUsedError: the link was used already (its security event is committed).
        TokenExpiredError: the link's lifetime ended.
        InvalidInputError: ``client`` not text of 1 to 1,024 characters, ``user_agent`` not
            text of at most 8,192.
        InvalidIPAddressError: ``ip`` is not an address.
    """
    _inputs.presented(token, "magic link", hint=": ask for a new link")
    presented_client = _client(client, "client")
    _inputs.user_agent(user_agent)
    _inputs.ip_address(ip)
    settings = settings_for(db)
    params = {
        "candidates": settings.hasher.candidates(token),
        "clients": []
        if presented_client is None
        else settings.privacy.client_candidates(presented_client),
    }
    spent = db.execute(_SPEND, params).first()
    if spent is None:
        why = db.execute(_WHY_NOT, params).first()
        if why is None:
            raise InvalidTokenError("the sign-in link is not valid: ask for a new link")
        if why.used:
            security_events.report(
                db, "magic_link.reused", SecurityEventSeverity.MEDIUM, user_id=why.user_id,
                ip=ip, user_agent=user_agent, details={"magic_link_id": str(why.id)},
            )  # fmt: skip
            raise TokenAlreadyUsedError("the sign-in link was used already: ask for a new link")
        if why.expired:
            raise TokenExpiredError("the sign-in link expired: ask for a new link")
        security_events.report(
            db, "magic_link.client_mismatch", SecurityEventSeverity.MEDIUM, user_id=why.user_id,
            ip=ip, user_agent=user_agent, details={"magic_link_id": str(why.id)},
        )  # fmt: skip
        raise MagicLinkClientMismatch(
            "this sign-in link was asked for on another device or browser: open it there, or "
            "ask for a new link here"
        )
    db.execute(
        _SIGNED_IN,
        {
            "user_id": spent.user_id,
            "identifier_hash": settings.hasher.digest(spent.email),
            "ip_hash": None if ip is None else settings.privacy.ip_hash(ip),
            "ua_hash": None if user_agent is None else settings.privacy.ua_hash(user_agent),
            "result": LoginAttemptResult.SUCCESS.value,
        },
    )
    audit.record(
        db, "magic_link_login", user_id=spent.user_id, ip=ip, user_agent=user_agent,
        details={"magic_link_id": str(spent.id)},
    )  # fmt: skip
    user = db.get(User, spent.user_id, populate_existing=True)
    assert user is not None  # the UPDATE above found it
    return user
