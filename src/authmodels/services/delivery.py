"""Delivery logs: every e-mail and text message through its life, without its body or recipient.

A flow that sends a message (a verification link, a reset link, a notice to an old address)
logs it as ``pending`` and hands the service a :class:`Delivery`: where to send it, which
template, and the id of its log row. The service renders and sends the message, then records
what its provider said: :func:`mark_sent` (the provider accepted it, with its message id and,
for a text message, its cost), :func:`mark_failed` (it refused it), and later the provider's
callbacks (:func:`record_callback`: delivered, bounced, failed), found by the provider's message
id.

Decisions:

- **No body, no raw recipient.** There is no parameter for a body or a subject: a one-time
  code or a link in them would be a credential at rest. ``template`` says what was sent. The
  recipient is kept as a keyed hash (:meth:`~authmodels.security.privacy.PrivacyHasher.
  email_hash` / ``phone_hash``: "was anything sent to this address?" can be answered with the
  key) and a masked form a person recognises (``a***@example.com``, ``+44********50``); the raw
  address exists only in the :class:`Delivery` handed to the caller (revision 0032).
- **One way forward.** A status moves from ``pending`` to ``sent`` to one final state
  (``delivered``, ``failed``, ``bounced``), never back, and a final state is final: each
  UPDATE's ``WHERE`` compares the rank of the current status with the new one. So a callback
  delivered twice, or a late ``sent`` arriving after ``delivered``, changes nothing and returns
  False: provider callbacks are **idempotent** by message id, whatever their order.
- **Times from the provider, kept in order.** A callback's ``at`` (the provider's time of the
  event) is used, but never before the row's creation or its ``sent_at`` (the CHECKs of 0010
  keep the times ordered; a provider's clock may run behind ours).
- **Seed 002's questions** are answered from these rows: the delivery success rate (``status``
  over a period, ``ix_<table>_status_created_at``) and the SMS cost per month (``cost`` and
  ``currency``, exact ``NUMERIC``, summed per month and currency).

Under row-level security: a signed-in user's own request may log an e-mail to themself
(revision 0034's ``email_delivery_logs_owner_insert``); everything else -- logging for a user not
signed in, text messages, and every status change (a sending worker, a provider's webhook) --
runs on the service path (:func:`authmodels.rls.service_role`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authmodels.errors import DeliveryNotFoundError, InvalidInputError
from authmodels.models.users import User
from authmodels.security.privacy import mask_email, mask_phone, normalize_phone
from authmodels.services import _inputs
from authmodels.services._database_errors import database_errors
from authmodels.services.settings import settings_for

__all__ = [
    "CHANNELS",
    "FINAL_STATUSES",
    "Delivery",
    "log_email",
    "log_sms",
    "mark_failed",
    "mark_sent",
    "record_callback",
]

#: The two channels and their tables.
CHANNELS = {"email": "email_delivery_logs", "sms": "sms_delivery_logs"}
#: The statuses a delivery ends in.
FINAL_STATUSES = ("delivered", "failed", "bounced")
#: The rank of each status: an update moves a delivery to a higher rank only.
_RANK_SQL = "CASE status WHEN 'pending' THEN 0 WHEN 'sent' THEN 1 ELSE 2 END"
_RANK = {"pending": 0, "sent": 1, "delivered": 2, "failed": 2, "bounced": 2}
_TEMPLATE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_CURRENCY = re.compile(r"[A-Z]{3}")
#: Longest provider name, provider message id and error message stored.
MAX_PROVIDER_LENGTH, MAX_MESSAGE_ID_LENGTH, MAX_ERROR_LENGTH = 100, 255, 2000
#: The most a single message may cost (``NUMERIC(12, 4)``).
MAX_COST = Decimal("99999999.9999")


@dataclass(frozen=True)
class Delivery:
    """A message for the service to send, and its log row.

    Attributes:
        id: the delivery log row (pass it to :func:`mark_sent` / :func:`mark_failed`).
        channel: ``"email"`` or ``"sms"``.
        to: the recipient, raw: send to it; it is not stored anywhere.
        template: what to send (``email_verification``, ``password_reset``...).
    """

    id: uuid.UUID
    channel: str
    to: str
    template: str

    def __repr__(self) -> str:
        masked = mask_email(self.to) if self.channel == "email" else mask_phone(self.to)
        return f"Delivery(id={self.id}, channel={self.channel!r}, to={masked!r}, {self.template!r})"


def _template(value: object) -> str:
    return _inputs.text(
        value, "template", pattern=_TEMPLATE, form="a template name such as 'password_reset'"
    )


def _provider(value: object, default: str) -> str:
    if value is None:
        return default
    return _inputs.text(value, "provider", max_length=MAX_PROVIDER_LENGTH)


# ``:send`` false writes nothing, at the same cost: the request flows run this statement whether
# or not an account has the address, so the two answers take the same time
_INSERT = {
    channel: text(
        f"""
        INSERT INTO auth.{table} (user_id, recipient_hash, recipient_masked, template, provider)
        SELECT :user_id, :recipient_hash, :recipient_masked, :template, :provider WHERE :send
        RETURNING id
        """
    )
    for channel, table in CHANNELS.items()
}


def write(
    db: Session,
    channel: str,
    to: str,
    *,
    template: str,
    user_id: uuid.UUID | None,
    provider: str | None = None,
) -> Delivery:
    """Log one pending message (the flows' shared writer; arguments already checked)."""
    written = write_if(
        db, channel, to, send=True, template=template, user_id=user_id, provider=provider
    )
    assert written is not None
    return written


def write_if(
    db: Session,
    channel: str,
    to: str,
    *,
    send: bool,
    template: str,
    user_id: uuid.UUID | None,
    provider: str | None = None,
) -> Delivery | None:
    """:func:`write` when ``send``; else the same statement, writing nothing (None)."""
    settings = settings_for(db)
    privacy = settings.privacy
    if channel == "email":
        values = {"recipient_hash": privacy.email_hash(to), "recipient_masked": mask_email(to)}
        provider = provider or settings.email_provider
    else:
        values = {"recipient_hash": privacy.phone_hash(to), "recipient_masked": mask_phone(to)}
        provider = provider or settings.sms_provider
    delivery_id = db.execute(
        _INSERT[channel],
        {**values, "user_id": user_id, "template": template, "provider": provider, "send": send},
    ).scalar_one_or_none()
    return None if delivery_id is None else Delivery(delivery_id, channel, to, template)


@database_errors
def log_email(
    db: Session,
    to_email: str,
    *,
    template: str,
    user: User | uuid.UUID | None = None,
    provider: str | None = None,
) -> Delivery:
    """Log an e-mail about to be sent (``pending``); send it, then call :func:`mark_sent`.

    Args:
        db: the session; the row is written in its transaction (nothing is committed).
        to_email: the recipient's address (kept as a keyed hash and a masked form only).
        template: what is sent (``^[a-z][a-z0-9_.-]{0,63}$``).
        user: the recipient's account, if any.
        provider: the provider that sends it; ``FlowSettings.email_provider`` by default.

    Returns:
        The :class:`Delivery` (its ``to`` is the raw address, for sending).

    Raises:
        InvalidInputError: ``to_email`` is not an e-mail address, ``template`` not a template
            name, ``provider`` not text of 1 to 100 characters, ``user`` not a user or an id.
    """
    address = _inputs.email_address(to_email, "to_email")
    name = _template(template)
    user_id = None if user is None else _inputs.user_id_of(user)
    chosen = _provider(provider, settings_for(db).email_provider)
    return write(db, "email", address, template=name, user_id=user_id, provider=chosen)


@database_errors
def log_sms(
    db: Session,
    to_phone: str,
    *,
    template: str,
    user: User | uuid.UUID | None = None,
    provider: str | None = None,
) -> Delivery:
    """Log a text message about to be sent (``pending``); send it, then call :func:`mark_sent`
    with what the provider charged.

    Args:
        db: the session; the row is written in its transaction (nothing is committed).
        to_phone: the recipient's number, E.164 (``+442071838750``; spaces, dots and dashes are
            ignored); kept as a keyed hash and a masked form only.
        template: what is sent (``^[a-z][a-z0-9_.-]{0,63}$``).
        user: the recipient's account, if any.
        provider: the provider that sends it; ``FlowSettings.sms_provider`` by default.

    Returns:
        The :class:`Delivery` (its ``to`` is the normalised number, for sending).

    Raises:
        InvalidInputError: ``to_phone`` is not an E.164 number, ``template`` not a template
            name, ``provider`` not text of 1 to 100 characters, ``user`` not a user or an id.
    """
    number = normalize_phone(_inputs.text(to_phone, "to_phone", max_length=64))
    name = _template(template)
    user_id = None if user is None else _inputs.user_id_of(user)
    chosen = _provider(provider, settings_for(db).sms_provider)
    return write(db, "sms", number, template=name, user_id=user_id, provider=chosen)


def _channel(value: object) -> str:
    if not isinstance(value, str) or value not in CHANNELS:
        raise InvalidInputError(
            f"channel must be 'email' or 'sms', not {str(value)[:20]!r}", field="channel"
        )
    return str(value)


def _cost(channel: str, cost: object, currency: object) -> tuple[Decimal | None, str | None]:
    """``(cost, currency)`` if they can be stored together on ``channel``."""
    if cost is None and currency is None:
        return None, None
    if channel != "sms":
        raise InvalidInputError("only a text message records a cost", field="cost")
    if isinstance(cost, bool) or not isinstance(cost, Decimal | int):
        raise InvalidInputError(
            f"cost must be a Decimal (what the provider charged), not {type(cost).__name__}",
            field="cost",
        )
    amount = Decimal(cost)
    if not amount.is_finite() or not Decimal(0) <= amount <= MAX_COST:
        raise InvalidInputError(f"cost must be between 0 and {MAX_COST}", field="cost")
    code = _inputs.text(currency, "currency", pattern=_CURRENCY, form="an ISO 4217 code (USD)")
    return amount, code


def _message_id(value: object) -> str:
    return _inputs.text(value, "provider_message_id", max_length=MAX_MESSAGE_ID_LENGTH)


def _update(db: Session, statement: Any, params: dict[str, Any]) -> Any:
    """Run a status update; a message id another delivery of the provider has is refused."""
    try:
        with db.begin_nested():
            return db.execute(statement, params).first()
    except IntegrityError as exc:
        if "provider_message_id" not in str(exc.orig):
            raise
        raise InvalidInputError(
            "another delivery of this provider already has this provider_message_id: each "
            "message's id is its own",
            field="provider_message_id",
        ) from None


_MARK_SENT = {
    channel: text(
        f"""
        UPDATE auth.{table}
           SET status = 'sent', sent_at = greatest(now(), created_at),
               provider_message_id = coalesce(:message_id, provider_message_id)
               {", cost = :cost, currency = :currency" if channel == "sms" else ""}
         WHERE id = :id AND status = 'pending'
        RETURNING id
        """  # noqa: S608 (constant names)
    )
    for channel, table in CHANNELS.items()
}
_EXISTS = {
    channel: text(f"SELECT status::text FROM auth.{table} WHERE id = :id")  # noqa: S608
    for channel, table in CHANNELS.items()
}


@database_errors
def mark_sent(
    db: Session,
    delivery_id: uuid.UUID,
    *,
    channel: str = "email",
    provider_message_id: str | None = None,
    cost: Decimal | None = None,
    currency: str | None = None,
) -> bool:
    """Record that the provider accepted a pending message.

    Args:
        db: the session; the change is made in its transaction (nothing is committed).
        delivery_id: the :class:`Delivery`'s id.
        channel: ``"email"`` or ``"sms"``.
        provider_message_id: the provider's id of the message (its callbacks name it).
        cost: what the provider charged (text messages), with ``currency``.
        currency: ISO 4217 code of ``cost``.

    Returns:
        True if the delivery was pending and is now ``sent``; False if it had moved on already.

    Raises:
        DeliveryNotFoundError: no delivery of this channel has this id.
        InvalidInputError: an argument is not of its form (``cost`` a :class:`~decimal.Decimal`
            from 0, with its ``currency``, on text messages only), or another delivery of the
            provider already has ``provider_message_id`` (nothing is written).
    """
    _inputs.identifier(delivery_id, "delivery_id")
    chosen = _channel(channel)
    message_id = None if provider_message_id is None else _message_id(provider_message_id)
    amount, code = _cost(chosen, cost, currency)
    params = {"id": delivery_id, "message_id": message_id, "cost": amount, "currency": code}
    if _update(db, _MARK_SENT[chosen], params) is not None:
        return True
    if db.execute(_EXISTS[chosen], {"id": delivery_id}).first() is None:
        raise DeliveryNotFoundError(f"no {chosen} delivery has the id {delivery_id}")
    return False


_MARK_FAILED = {
    channel: text(
        f"""
        UPDATE auth.{table} SET status = 'failed', error_message = :error
         WHERE id = :id AND status = 'pending'
        RETURNING id
        """  # noqa: S608 (constant names)
    )
    for channel, table in CHANNELS.items()
}


@database_errors
def mark_failed(db: Session, delivery_id: uuid.UUID, *, channel: str = "email", error: str) -> bool:
    """Record that a pending message could not be handed to the provider.

    Args:
        db: the session; the change is made in its transaction (nothing is committed).
        delivery_id: the :class:`Delivery`'s id.
        channel: ``"email"`` or ``"sms"``.
        error: why (the provider's answer; never the message itself), 1 to 2,000 characters.

    Returns:
        True if the delivery was pending and is now ``failed``; False if it had moved on.

    Raises:
        DeliveryNotFoundError: no delivery of this channel has this id.
        InvalidInputError: an argument is not of its form.
    """
    _inputs.identifier(delivery_id, "delivery_id")
    chosen = _channel(channel)
    reason = _inputs.text(error, "error", max_length=MAX_ERROR_LENGTH)
    if db.execute(_MARK_FAILED[chosen], {"id": delivery_id, "error": reason}).first() is not None:
        return True
    if db.execute(_EXISTS[chosen], {"id": delivery_id}).first() is None:
        raise DeliveryNotFoundError(f"no {chosen} delivery has the id {delivery_id}")
    return False


# the rule: a status only moves forward (pending < sent < a final state), and a final state is
# final, so a repeated or late callback changes nothing; times stay ordered whatever the
# provider's clock says
_AT = "coalesce(CAST(:at AS timestamptz), now())"
_CALLBACK = {
    channel: text(
        f"""
        UPDATE auth.{table}
           SET status = CAST(:status AS auth.delivery_status),
               sent_at = CASE WHEN :status IN ('sent', 'delivered')
                              THEN coalesce(sent_at, greatest({_AT}, created_at)) ELSE sent_at END,
               delivered_at = CASE WHEN :status = 'delivered'
                                   THEN greatest({_AT}, coalesce(sent_at, created_at))
                                   ELSE delivered_at END,
               error_message = CASE WHEN :status IN ('failed', 'bounced')
                                    THEN coalesce(:error, error_message,
                                                  'the provider reported no reason')
                                    ELSE error_message END
               {
            ", cost = coalesce(:cost, cost), currency = coalesce(:currency, currency)"
            if channel == "sms"
            else ""
        }
         WHERE provider = :provider AND provider_message_id = :message_id
           AND {_RANK_SQL} < :rank
        RETURNING id
        """  # noqa: S608 (constant names)
    )
    for channel, table in CHANNELS.items()
}
_FIND_BY_MESSAGE_ID = {
    channel: text(
        f"SELECT id FROM auth.{table} "  # noqa: S608 (constant names)
        "WHERE provider = :provider AND provider_message_id = :message_id"
    )
    for channel, table in CHANNELS.items()
}


@database_errors
def record_callback(
    db: Session,
    *,
    channel: str,
    provider: str,
    provider_message_id: str,
    status: str,
    at: datetime | None = None,
    error: str | None = None,
    cost: Decimal | None = None,
    currency: str | None = None,
) -> bool:
    """Apply a provider's delivery callback (webhook), found by the provider's message id.

    Idempotent: the same callback twice, or a callback older than the state already recorded
    (``sent`` after ``delivered``), changes nothing.

    Args:
        db: the session (on the service path under row-level security); the change is made in
            its transaction (nothing is committed).
        channel: ``"email"`` or ``"sms"``.
        provider: the provider that sent the message (as recorded).
        provider_message_id: the provider's id of the message.
        status: ``sent``, ``delivered``, ``failed`` or ``bounced``.
        at: when the provider says it happened (timezone-aware); now by default.
        error: the provider's reason, for ``failed`` and ``bounced``.
        cost: what the provider charged (text messages), with ``currency``.
        currency: ISO 4217 code of ``cost``.

    Returns:
        True if the delivery moved to ``status``; False if it was there or beyond already.

    Raises:
        DeliveryNotFoundError: no delivery of this provider has this message id (yet): answer
            404, and the provider retries.
        InvalidInputError: an argument is not of its form.
    """
    chosen = _channel(channel)
    name = _inputs.text(provider, "provider", max_length=MAX_PROVIDER_LENGTH)
    message_id = _message_id(provider_message_id)
    if not isinstance(status, str) or status not in ("sent", *FINAL_STATUSES):
        raise InvalidInputError(
            f"status must be sent, delivered, failed or bounced, not {str(status)[:20]!r}",
            field="status",
        )
    when = _inputs.optional_moment(at, "at")
    reason = _inputs.optional_text(error, "error", max_length=MAX_ERROR_LENGTH)
    amount, code = _cost(chosen, cost, currency)
    params = {
        "provider": name,
        "message_id": message_id,
        "status": status,
        "rank": _RANK[status],
        "at": when,
        "error": reason,
        "cost": amount,
        "currency": code,
    }
    if db.execute(_CALLBACK[chosen], params).first() is not None:
        return True
    if db.execute(_FIND_BY_MESSAGE_ID[chosen], params).first() is None:
        raise DeliveryNotFoundError(
            f"no {chosen} delivery of provider {name!r} has the message id {message_id!r} "
            "(not recorded yet, or another provider's)"
        )
    return False
