"""Delivery logs: no body and no raw recipient; a status only moves forward; provider callbacks
are idempotent by message id, whatever their order; seed 002's questions (delivery success rate,
SMS cost per month) are answered from the rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.errors import DeliveryNotFoundError, InvalidInputError
from authmodels.models import User
from authmodels.services import delivery
from tests.services.helpers import assert_no_raw_values, snapshot

TABLES = ("email_delivery_logs", "sms_delivery_logs")
SUCCESS_RATE = (
    "SELECT status::text, count(*) FROM auth.email_delivery_logs "
    "WHERE created_at > now() - interval '30 days' GROUP BY status ORDER BY 1"
)
SMS_COST_PER_MONTH = (
    "SELECT date_trunc('month', created_at) AS month, currency, sum(cost) AS cost, count(*) "
    "FROM auth.sms_delivery_logs WHERE cost IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"
)


def _row(db: Session, delivery_id: uuid.UUID, table: str = "email_delivery_logs") -> dict:
    return dict(
        db.execute(text(f"SELECT * FROM auth.{table} WHERE id = :i"), {"i": delivery_id})
        .mappings()
        .one()
    )


def test_a_logged_message_keeps_no_address_and_no_body(db: Session, user: User) -> None:
    mail = delivery.log_email(db, " Ada@Example.com ", template="otp", user=user)
    text_message = delivery.log_sms(db, "+44 (20) 7183-8750", template="otp")

    assert (mail.to, mail.channel, text_message.to) == ("ada@example.com", "email", "+442071838750")
    assert "ada@example.com" not in repr(mail) and "a***@example.com" in repr(mail)
    row = _row(db, mail.id)
    assert (row["status"], row["recipient_masked"], row["provider"], row["subject"]) == (
        "pending", "a***@example.com", "email", None,
    )  # fmt: skip
    assert _row(db, text_message.id, "sms_delivery_logs")["recipient_masked"] == "+44********50"
    assert_no_raw_values(db, ["ada@example.com", "442071838750"], TABLES)


def test_a_message_moves_forward_and_callbacks_are_idempotent(db: Session) -> None:
    mail = delivery.log_email(db, "ada@example.com", template="password_reset", provider="ses")
    assert delivery.mark_sent(db, mail.id, provider_message_id="ses-1")
    assert not delivery.mark_sent(db, mail.id, provider_message_id="ses-1")  # sent already
    callback = {"channel": "email", "provider": "ses", "provider_message_id": "ses-1"}

    assert delivery.record_callback(db, **callback, status="delivered")
    delivered = _row(db, mail.id)
    before = snapshot(db, *TABLES)
    assert not delivery.record_callback(db, **callback, status="delivered")  # again
    assert not delivery.record_callback(db, **callback, status="sent")  # late, older news
    assert not delivery.record_callback(db, **callback, status="bounced", error="late bounce")
    assert snapshot(db, *TABLES) == before
    assert delivered["status"] == "delivered" and delivered["delivered_at"] is not None


def test_a_delivery_report_may_come_before_the_sent_one(db: Session) -> None:
    mail = delivery.log_email(db, "ada@example.com", template="otp", provider="smtp")
    db.execute(
        text("UPDATE auth.email_delivery_logs SET provider_message_id = 'm-9' WHERE id = :i"),
        {"i": mail.id},
    )
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)  # a provider clock far behind ours
    assert delivery.record_callback(
        db, channel="email", provider="smtp", provider_message_id="m-9", status="delivered",
        at=long_ago,
    )  # fmt: skip
    row = _row(db, mail.id)
    assert row["status"] == "delivered"
    assert row["created_at"] <= row["sent_at"] <= row["delivered_at"]  # kept in order


def test_failures_carry_their_reason_and_are_final(db: Session) -> None:
    mail = delivery.log_email(db, "ada@example.com", template="otp")
    assert delivery.mark_failed(db, mail.id, error="550 mailbox unavailable")
    assert not delivery.mark_sent(db, mail.id)
    sms = delivery.log_sms(db, "+15550100123", template="otp", provider="twilio")
    delivery.mark_sent(db, sms.id, channel="sms", provider_message_id="SM1")
    assert delivery.record_callback(
        db, channel="sms", provider="twilio", provider_message_id="SM1", status="failed"
    )
    row = _row(db, sms.id, "sms_delivery_logs")
    assert (row["status"], row["error_message"]) == ("failed", "the provider reported no reason")


def test_unknown_deliveries_and_message_ids_are_typed_refusals(db: Session) -> None:
    with pytest.raises(DeliveryNotFoundError):
        delivery.mark_sent(db, uuid.uuid4())
    with pytest.raises(DeliveryNotFoundError, match="not recorded yet"):
        delivery.record_callback(
            db, channel="email", provider="ses", provider_message_id="nope", status="delivered"
        )


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda db, d: delivery.mark_sent(db, d, cost=Decimal("0.1"), currency="USD"), "cost"),
        (lambda db, d: delivery.mark_sent(db, d, channel="fax"), "channel"),
        (lambda db, d: delivery.log_email(db, "ada@example.com", template="Bad Name"), "template"),
        (lambda db, d: delivery.log_sms(db, "0207 183 8750", template="otp"), "phone"),
        (lambda db, d: delivery.mark_failed(db, d, error=""), "error"),
    ],
)
def test_bad_arguments_write_nothing(db: Session, call: object, field: str) -> None:
    mail = delivery.log_email(db, "ada@example.com", template="otp")
    before = snapshot(db, *TABLES)
    with pytest.raises(InvalidInputError) as refused:
        call(db, mail.id)  # type: ignore[operator]
    assert refused.value.field == field
    assert snapshot(db, *TABLES) == before


def test_a_message_id_belongs_to_one_delivery_of_its_provider(db: Session) -> None:
    first = delivery.log_email(db, "ada@example.com", template="otp", provider="ses")
    second = delivery.log_email(db, "bob@example.com", template="otp", provider="ses")
    delivery.mark_sent(db, first.id, provider_message_id="ses-7")
    before = snapshot(db, *TABLES)
    with pytest.raises(InvalidInputError, match="provider_message_id"):
        delivery.mark_sent(db, second.id, provider_message_id="ses-7")
    assert snapshot(db, *TABLES) == before


def test_seed_002s_success_rate_and_sms_cost_per_month(db: Session) -> None:
    for outcome in ("delivered", "delivered", "bounced", "pending"):
        mail = delivery.log_email(db, "ada@example.com", template="otp", provider="ses")
        if outcome != "pending":
            delivery.mark_sent(db, mail.id, provider_message_id=f"ses-{uuid.uuid4()}")
            message_id = db.execute(
                text("SELECT provider_message_id FROM auth.email_delivery_logs WHERE id = :i"),
                {"i": mail.id},
            ).scalar_one()
            delivery.record_callback(
                db, channel="email", provider="ses", provider_message_id=message_id,
                status=outcome,
            )  # fmt: skip
    for n, (cost, currency) in enumerate([("0.8000", "KES"), ("0.8000", "KES"), ("0.0079", "USD")]):
        sms = delivery.log_sms(db, "+254700000001", template="otp", provider="africas_talking")
        delivery.mark_sent(
            db, sms.id, channel="sms", provider_message_id=f"AT{n}", cost=Decimal(cost),
            currency=currency,
        )  # fmt: skip
    last_month = datetime.now(UTC) - timedelta(days=40)
    db.execute(
        text("UPDATE auth.sms_delivery_logs SET created_at = :t, sent_at = :t "
             "WHERE provider_message_id = 'AT2'"),
        {"t": last_month},
    )  # fmt: skip

    assert db.execute(text(SUCCESS_RATE)).all() == [
        ("bounced", 1), ("delivered", 2), ("pending", 1),
    ]  # fmt: skip
    by_month = [(r.currency, r.cost, r.count) for r in db.execute(text(SMS_COST_PER_MONTH))]
    assert by_month == [("USD", Decimal("0.0079"), 1), ("KES", Decimal("1.6000"), 2)]
