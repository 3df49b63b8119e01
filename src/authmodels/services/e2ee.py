"""End-to-end encryption: device keys (register, rotate) and the audit of key exchanges.

The server never sees a message key. It keeps each device's X25519 public key (standard padded
base64, as ``device_keys.public_key`` wants) and, for multi-device backup, the private key only
as a ``FieldCipher`` envelope bound to its row (``aad_for("device_keys", "private_key_encrypted",
id)``). Of a key exchange it records only the 32-byte audit hash
(:func:`authmodels.security.e2ee.shared_secret_audit_hash`), computed by the clients.

Decisions:

- **Validation first**: the public key must be a valid X25519 point that is not of low order
  (:func:`authmodels.security.e2ee.validate_public_key`), and the private key must be the one
  of that public key; nothing is written otherwise.
- **One audit trail**: registrations and rotations are written to ``device_key_events`` by
  revision 0013's triggers (``registered``, and ``rotated`` only when the public key really
  changes); this module does not write them again. A reason given to :func:`register_device_key`
  reaches the trigger through the transaction-local setting
  ``authmodels.device_key_change_reason``, which is cleared right after the statement so it
  cannot label a later change of the same transaction.
- **Rotation** of a device's key locks its row (``FOR UPDATE``) and re-encrypts the new private
  key with the same row id; a concurrent first registration of the same device is caught by
  ``ON CONFLICT (user_id, device_id) DO NOTHING`` and becomes a rotation.
- **Key exchanges** are recorded only between two participants of the conversation (the rule
  the row-level security policy applies to the application role, checked here for the service
  path too). A failed exchange is an ``exchange_failed`` event with the conversation, the peer
  and a required reason, as revision 0013 describes.

Nothing is committed here.
"""

from __future__ import annotations

import base64
import uuid

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from authmodels.errors import InvalidInputError, InvalidPublicKeyError, NotAuthorizedError
from authmodels.models.e2ee import (
    DEVICE_KEY_CHANGE_REASON_SETTING,
    MAX_DEVICE_ID_LENGTH,
    MAX_REASON_LENGTH,
    SHARED_SECRET_HASH_BYTES,
    DeviceKey,
    KeyExchange,
)
from authmodels.models.users import User
from authmodels.security import e2ee
from authmodels.security.encryption import aad_for
from authmodels.services import _inputs
from authmodels.services._database_errors import database_errors
from authmodels.services.settings import settings_for

__all__ = [
    "private_key",
    "record_failed_exchange",
    "record_key_exchange",
    "register_device_key",
]


def _aad(device_key_id: uuid.UUID) -> bytes:
    return aad_for("device_keys", "private_key_encrypted", device_key_id)


_SET_REASON = text(f"SELECT set_config('{DEVICE_KEY_CHANGE_REASON_SETTING}', :reason, true)")
_LOCK_DEVICE_KEY = text(
    "SELECT id FROM auth.device_keys WHERE user_id = :user_id AND device_id = :device_id FOR UPDATE"
)
_INSERT_DEVICE_KEY = text(
    """
    INSERT INTO auth.device_keys (id, user_id, device_id, public_key, private_key_encrypted)
    VALUES (:id, :user_id, :device_id, :public_key, :private_key_encrypted)
    ON CONFLICT (user_id, device_id) DO NOTHING
    RETURNING id
    """
)
_ROTATE_DEVICE_KEY = text(
    """
    UPDATE auth.device_keys
       SET public_key = :public_key, private_key_encrypted = :private_key_encrypted
     WHERE id = :id
    """
)


@database_errors
def register_device_key(
    db: Session,
    user: User | uuid.UUID,
    *,
    device_id: str,
    public_key: bytes | str,
    private_key: bytes,
    reason: str | None = None,
) -> DeviceKey:
    """Register a device's key pair, or rotate it when the device already has one.

    Args:
        db: the session (nothing is committed).
        user: the owner (or id).
        device_id: the client's device identifier (1 to 255 characters).
        public_key: the X25519 public key: 32 raw bytes or their base64.
        private_key: the matching 32-byte private key, stored only encrypted (backup).
        reason: why (recorded in the ``registered`` / ``rotated`` event).

    Returns:
        The device key's row.

    Raises:
        InvalidPublicKeyError: the public key is malformed or of low order, or the private key
            is not its private key (nothing is written).
        MissingKeyError: no encryption key is configured.
        InvalidInputError: ``device_id`` is not text of 1 to 255 characters, ``private_key``
            not 32 bytes, ``reason`` not text of at most 500 characters, or ``user`` not a user
            or an id (nothing is written).
    """
    user_id = _inputs.user_id_of(user)
    _inputs.text(device_id, "device_id", max_length=MAX_DEVICE_ID_LENGTH)
    _inputs.blob(private_key, "private_key", min_length=e2ee.KEY_SIZE, max_length=e2ee.KEY_SIZE)
    _inputs.optional_text(reason, "reason", min_length=0, max_length=MAX_REASON_LENGTH)
    raw_public = e2ee.validate_public_key(public_key)
    if e2ee.public_key_from_private(private_key) != raw_public:
        raise InvalidPublicKeyError(
            "the private key does not belong to the public key: send the pair of one device"
        )
    cipher = settings_for(db).cipher
    encoded = base64.b64encode(raw_public).decode("ascii")
    where = {"user_id": user_id, "device_id": device_id}

    new_id = uuid.uuid4()
    new_envelope = cipher.encrypt(private_key, aad=_aad(new_id))
    db.execute(_SET_REASON, {"reason": reason or ""})
    key_id = db.execute(_LOCK_DEVICE_KEY, where).scalar_one_or_none()
    if key_id is None:
        key_id = db.execute(
            _INSERT_DEVICE_KEY,
            {**where, "id": new_id, "public_key": encoded, "private_key_encrypted": new_envelope},
        ).scalar_one_or_none()
        if key_id is None:  # registered concurrently: rotate that row instead
            key_id = db.execute(_LOCK_DEVICE_KEY, where).scalar_one()
    if key_id != new_id:
        db.execute(
            _ROTATE_DEVICE_KEY,
            {
                "id": key_id,
                "public_key": encoded,
                "private_key_encrypted": cipher.encrypt(private_key, aad=_aad(key_id)),
            },
        )
    db.execute(_SET_REASON, {"reason": ""})
    return _load(db, key_id)


def _load(db: Session, key_id: uuid.UUID) -> DeviceKey:
    return db.execute(
        select(DeviceKey).where(DeviceKey.id == key_id).execution_options(populate_existing=True)
    ).scalar_one()


@database_errors
def private_key(db: Session, device_key: DeviceKey) -> bytes:
    """Decrypt a device's backed-up private key (to hand it to another device of its owner).

    Raises:
        DecryptionError: the envelope does not authenticate (moved or altered).
        InvalidInputError: ``device_key`` is not a :class:`~authmodels.models.DeviceKey`.
    """
    if not isinstance(device_key, DeviceKey):
        raise InvalidInputError(
            f"device_key must be a DeviceKey, not {type(device_key).__name__}", field="device_key"
        )
    return settings_for(db).cipher.decrypt(
        device_key.private_key_encrypted, aad=_aad(device_key.id)
    )


_BOTH_MEMBERS = text(
    """
    SELECT count(*) = 2 FROM auth.conversation_participants
     WHERE conversation_id = :conversation_id AND user_id IN (:initiator_id, :peer_id)
    """
)
_INSERT_EXCHANGE = text(
    """
    INSERT INTO auth.key_exchanges (conversation_id, initiator_id, peer_id, shared_secret_hash)
    VALUES (:conversation_id, :initiator_id, :peer_id, :shared_secret_hash)
    RETURNING id
    """
)


@database_errors
def record_key_exchange(
    db: Session,
    *,
    conversation_id: uuid.UUID,
    initiator: User | uuid.UUID,
    peer: User | uuid.UUID,
    shared_secret_hash: bytes,
) -> KeyExchange:
    """Record that two participants of a conversation agreed on a shared secret.

    Args:
        db: the session (nothing is committed).
        conversation_id: the conversation.
        initiator: who started the exchange.
        peer: the other party.
        shared_secret_hash: the 32-byte audit hash the clients computed
            (:func:`authmodels.security.e2ee.shared_secret_audit_hash`); never the secret.

    Raises:
        InvalidInputError: the audit hash is not 32 bytes, initiator and peer are the same
            user, ``conversation_id`` is not a UUID, or a party not a user or an id.
        NotAuthorizedError: one of them is not a participant of the conversation.
    """
    if not isinstance(shared_secret_hash, bytes | bytearray | memoryview) or (
        len(shared_secret_hash) != SHARED_SECRET_HASH_BYTES
    ):
        raise InvalidInputError(
            "shared_secret_hash must be the 32-byte HMAC-SHA256 audit hash "
            "(shared_secret_audit_hash), never the shared secret itself",
            field="shared_secret_hash",
        )
    params = {
        "conversation_id": _inputs.identifier(conversation_id, "conversation_id"),
        "initiator_id": _inputs.user_id_of(initiator, "initiator"),
        "peer_id": _inputs.user_id_of(peer, "peer"),
    }
    if params["initiator_id"] == params["peer_id"]:
        raise InvalidInputError("a key exchange needs two different users", field="peer")
    if not db.execute(_BOTH_MEMBERS, params).scalar():
        raise NotAuthorizedError(
            "both parties of a key exchange must be participants of the conversation"
        )
    exchange_id = db.execute(
        _INSERT_EXCHANGE, {**params, "shared_secret_hash": bytes(shared_secret_hash)}
    ).scalar_one()
    return db.execute(select(KeyExchange).where(KeyExchange.id == exchange_id)).scalar_one()


_INSERT_FAILURE = text(
    """
    INSERT INTO auth.device_key_events
           (event_type, user_id, device_id, conversation_id, peer_id, actor_user_id, reason)
    VALUES ('exchange_failed', :user_id, :device_id, :conversation_id, :peer_id, :user_id,
            :reason)
    RETURNING id
    """
)


@database_errors
def record_failed_exchange(
    db: Session,
    user: User | uuid.UUID,
    *,
    conversation_id: uuid.UUID,
    peer: User | uuid.UUID,
    reason: str,
    device_id: str | None = None,
) -> uuid.UUID:
    """Record a failed key exchange (``exchange_failed`` in ``device_key_events``).

    Args:
        db: the session (nothing is committed).
        user: the user whose exchange failed.
        conversation_id: the conversation.
        peer: the other party.
        reason: what went wrong (required; kept up to 500 characters; never key material).
        device_id: the user's device, if known.

    Returns:
        The event's id.

    Raises:
        InvalidInputError: ``reason`` is empty or not text (NUL and unpaired surrogates
            refused), ``device_id`` not text of 1 to 255 characters, ``conversation_id`` not a
            UUID, or a party not a user or an id.
    """
    user_id, peer_id = _inputs.user_id_of(user), _inputs.user_id_of(peer, "peer")
    _inputs.identifier(conversation_id, "conversation_id")
    _inputs.optional_text(device_id, "device_id", max_length=MAX_DEVICE_ID_LENGTH)
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError("a failed key exchange needs a reason", field="reason")
    # only the first MAX_REASON_LENGTH characters are kept: those must be storable
    kept = _inputs.text(reason.strip()[:MAX_REASON_LENGTH], "reason", max_length=MAX_REASON_LENGTH)
    event_id: uuid.UUID = db.execute(
        _INSERT_FAILURE,
        {
            "user_id": user_id,
            "device_id": device_id,
            "conversation_id": conversation_id,
            "peer_id": peer_id,
            "reason": kept,
        },
    ).scalar_one()
    return event_id
