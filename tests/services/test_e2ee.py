"""E2EE device keys: validated public keys, private keys only as envelopes bound to their row,
rotations audited once by 0013's triggers; key exchanges recorded by audit hash only, failed
exchanges as events."""

from __future__ import annotations

import base64
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from authmodels.errors import InvalidPublicKeyError, NotAuthorizedError
from authmodels.models import User
from authmodels.security import e2ee as crypto
from authmodels.services import e2ee
from authmodels.testing.factories import UserFactory
from tests.services.helpers import count, snapshot

TABLES = ("device_keys", "device_key_events", "key_exchanges", "audit_logs")


def events(db: Session) -> list[tuple[str, str | None]]:
    return [
        (r.event_type, r.reason)
        for r in db.execute(
            text(
                "SELECT event_type::text, reason FROM auth.device_key_events "
                "ORDER BY created_at, ctid"
            )
        )
    ]


def test_register_stores_the_public_key_and_only_an_envelope_of_the_private_key(
    db: Session, user: User
) -> None:
    private, public = crypto.generate_key_pair()

    key = e2ee.register_device_key(
        db, user, device_id="phone", public_key=public, private_key=private, reason="first login"
    )

    assert base64.b64decode(key.public_key) == public
    assert private not in key.private_key_encrypted
    assert e2ee.private_key(db, key) == private
    assert events(db) == [("registered", "first login")]
    assert count(db, "audit_logs") == 0  # the trail is device_key_events, written once


def test_rotation_is_recorded_once_by_the_trigger_and_the_reason_does_not_leak(
    db: Session, user: User
) -> None:
    first_private, first_public = crypto.generate_key_pair()
    second_private, second_public = crypto.generate_key_pair()
    key = e2ee.register_device_key(
        db, user, device_id="phone", public_key=first_public, private_key=first_private
    )

    rotated = e2ee.register_device_key(
        db,
        user,
        device_id="phone",
        public_key=base64.urlsafe_b64encode(second_public).decode(),
        private_key=second_private,
        reason="scheduled rotation",
    )

    assert rotated.id == key.id and base64.b64decode(rotated.public_key) == second_public
    assert e2ee.private_key(db, rotated) == second_private
    assert events(db) == [("registered", None), ("rotated", "scheduled rotation")]
    # the same key again is no rotation
    e2ee.register_device_key(
        db, user, device_id="phone", public_key=second_public, private_key=second_private
    )
    assert len(events(db)) == 2
    assert db.execute(
        text("SELECT current_setting('authmodels.device_key_change_reason', true)")
    ).scalar() in ("", None)


@pytest.mark.parametrize(
    "public",
    [b"\x00" * 32, bytes([1]) + b"\x00" * 31, "not base64!", b"\x01" * 31],
    ids=["zero-point", "low-order", "not-base64", "short"],
)
def test_invalid_public_keys_are_refused_and_nothing_is_written(
    db: Session, user: User, public: bytes | str
) -> None:
    private, _ = crypto.generate_key_pair()
    before = snapshot(db, *TABLES)
    with pytest.raises(InvalidPublicKeyError):
        e2ee.register_device_key(
            db, user, device_id="phone", public_key=public, private_key=private
        )
    assert snapshot(db, *TABLES) == before


def test_a_private_key_of_another_pair_is_refused(db: Session, user: User) -> None:
    _, public = crypto.generate_key_pair()
    other_private, _ = crypto.generate_key_pair()
    before = snapshot(db, *TABLES)
    with pytest.raises(InvalidPublicKeyError, match="does not belong"):
        e2ee.register_device_key(
            db, user, device_id="phone", public_key=public, private_key=other_private
        )
    assert snapshot(db, *TABLES) == before


def _conversation(db: Session, *members: User) -> uuid.UUID:
    conversation_id = db.execute(
        text("INSERT INTO auth.conversations (created_by) VALUES (:u) RETURNING id"),
        {"u": members[0].id},
    ).scalar_one()
    for member in members:
        db.execute(
            text(
                "INSERT INTO auth.conversation_participants (conversation_id, user_id) "
                "VALUES (:c, :u)"
            ),
            {"c": conversation_id, "u": member.id},
        )
    return conversation_id


def test_key_exchange_is_recorded_by_its_audit_hash_only(
    db: Session, user: User, authmodels_user_factory: UserFactory
) -> None:
    peer = authmodels_user_factory()
    conversation_id = _conversation(db, user, peer)
    mine, _ = crypto.generate_key_pair()
    _, theirs = crypto.generate_key_pair()
    secret = crypto.shared_secret(mine, theirs)
    audit_hash = crypto.shared_secret_audit_hash(secret, conversation_id)

    exchange = e2ee.record_key_exchange(
        db,
        conversation_id=conversation_id,
        initiator=user,
        peer=peer,
        shared_secret_hash=audit_hash,
    )

    assert exchange.shared_secret_hash == audit_hash
    rows = "".join(db.execute(text("SELECT t::text FROM auth.key_exchanges AS t")).scalars())
    assert secret.hex() not in rows


def test_key_exchange_refusals_write_nothing(
    db: Session, user: User, authmodels_user_factory: UserFactory
) -> None:
    peer, outsider = authmodels_user_factory(), authmodels_user_factory()
    conversation_id = _conversation(db, user, peer)
    before = snapshot(db, *TABLES)
    with pytest.raises(ValueError, match="32-byte"):
        e2ee.record_key_exchange(
            db, conversation_id=conversation_id, initiator=user, peer=peer, shared_secret_hash=b"x"
        )
    with pytest.raises(NotAuthorizedError, match="participants"):
        e2ee.record_key_exchange(
            db,
            conversation_id=conversation_id,
            initiator=user,
            peer=outsider,
            shared_secret_hash=b"\x01" * 32,
        )
    with pytest.raises(ValueError, match="two different users"):
        e2ee.record_key_exchange(
            db,
            conversation_id=conversation_id,
            initiator=user,
            peer=user,
            shared_secret_hash=b"\x01" * 32,
        )
    with pytest.raises(ValueError, match="reason"):
        e2ee.record_failed_exchange(
            db, user, conversation_id=conversation_id, peer=peer, reason=" "
        )
    assert snapshot(db, *TABLES) == before


def test_failed_exchange_is_an_event_with_conversation_peer_and_reason(
    db: Session, user: User, authmodels_user_factory: UserFactory
) -> None:
    peer = authmodels_user_factory()
    conversation_id = _conversation(db, user, peer)

    e2ee.record_failed_exchange(
        db,
        user,
        conversation_id=conversation_id,
        peer=peer,
        reason="peer key failed validation",
        device_id="phone",
    )

    row = db.execute(text("SELECT * FROM auth.device_key_events")).one()
    assert row.event_type == "exchange_failed" and row.reason == "peer key failed validation"
    assert (row.conversation_id, row.peer_id, row.user_id) == (conversation_id, peer.id, user.id)
