"""Trusted devices: known by a keyed fingerprint, a new one is a security event, trusting needs a
step-up token, a trust holds only with its fingerprint, and revoking a device ends its sessions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from authmodels.errors import (
    SessionRevokedError,
    StepUpTokenInvalid,
    UnknownDeviceError,
)
from authmodels.locking import RowNotFoundError
from authmodels.models import User
from authmodels.services import devices, sessions, step_up
from authmodels.services.devices import SeenDevice
from authmodels.testing.factories import UserFactory
from tests.services.helpers import assert_no_raw_values, audit_events, count, race, snapshot

TTL = timedelta(hours=1)
FINGERPRINT = "a3f1c0de-laptop-cookie"


def _step_up(db: Session, user: User, purpose: str = devices.TRUST_PURPOSE) -> str:
    return step_up.issue(db, user, ttl=timedelta(minutes=5), purpose=purpose)


def _new_devices(db: Session, user: User) -> int:
    return int(
        db.execute(
            text("SELECT count(*) FROM auth.security_events "
                 "WHERE event_type = 'device.new_device' AND user_id = :u"),
            {"u": user.id},
        ).scalar_one()
    )  # fmt: skip


def test_a_device_is_recorded_by_keyed_fingerprint_and_is_new_once(db: Session, user: User) -> None:
    first = devices.record_login(db, user, FINGERPRINT, ip="192.0.2.9", user_agent="UA", name="L")
    again = devices.record_login(db, user, FINGERPRINT)

    assert first.new and not again.new and first.device.id == again.device.id
    assert first.device.device_name == "L" and again.device.last_seen_at is not None
    assert _new_devices(db, user) == 1
    assert_no_raw_values(db, [FINGERPRINT, "192.0.2.9"], ["user_devices"])


def test_trusting_needs_a_step_up_token_for_it(db: Session, user: User) -> None:
    device = devices.record_login(db, user, FINGERPRINT).device
    before = snapshot(db, "user_devices", "step_up_tokens")
    for token in ("not a token", _step_up(db, user, purpose="admin.role_change")):
        with pytest.raises(StepUpTokenInvalid):
            devices.trust(db, user, device, step_up_token=token)
    assert count(db, "user_devices", "trust_token_hash IS NOT NULL") == 0

    trusted = devices.trust(db, user, device, step_up_token=_step_up(db, user))

    assert before != snapshot(db, "user_devices", "step_up_tokens")
    assert devices.is_trusted(db, user, FINGERPRINT, trusted.token)
    assert not devices.is_trusted(db, user, "another browser", trusted.token)
    assert not devices.is_trusted(db, user, FINGERPRINT, None)
    assert not devices.is_trusted(db, user, FINGERPRINT, "\x00")
    assert ("device_trusted", "success") in audit_events(db, user.id)
    assert_no_raw_values(db, [trusted.token], ["user_devices"])
    db.execute(
        text("UPDATE auth.user_devices SET trusted_at = now() - interval '40 days', "
             "trust_expires_at = now() - interval '10 days'"),
    )  # fmt: skip
    assert not devices.is_trusted(db, user, FINGERPRINT, trusted.token)  # the trust expired


def test_revoking_a_device_ends_its_sessions_and_only_them(db: Session, user: User) -> None:
    laptop = devices.record_login(db, user, FINGERPRINT).device
    phone = devices.record_login(db, user, "phone").device
    on_laptop = [sessions.create_session(db, user, ttl=TTL, device=laptop) for _ in range(2)]
    on_phone = sessions.create_session(db, user, ttl=TTL, device=phone)
    trusted = devices.trust(db, user, laptop, step_up_token=_step_up(db, user))

    assert devices.revoke(db, user, laptop) == 2

    for issued in on_laptop:
        with pytest.raises(SessionRevokedError):
            sessions.validate_session(db, issued.session_token)
    assert sessions.validate_session(db, on_phone.session_token).device_id == phone.id
    assert not devices.is_trusted(db, user, FINGERPRINT, trusted.token)
    assert [d.id for d in devices.list_devices(db, user)] == [phone.id]
    assert count(db, "sessions", "revoked_reason = 'device_revoked'") == 2
    with pytest.raises(UnknownDeviceError):
        devices.revoke(db, user, laptop)
    assert devices.record_login(db, user, FINGERPRINT).new  # back again: a new device
    assert _new_devices(db, user) == 3


def test_a_session_names_only_a_device_of_its_own_user(
    db: Session, user: User, authmodels_user_factory: UserFactory
) -> None:
    other = authmodels_user_factory()
    device = devices.record_login(db, other, FINGERPRINT).device
    with pytest.raises(RowNotFoundError), db.begin_nested():
        sessions.create_session(db, user, ttl=TTL, device=device)
    with pytest.raises(UnknownDeviceError):
        devices.trust(db, user, device, step_up_token=_step_up(db, user))
    with pytest.raises(UnknownDeviceError):
        devices.revoke(db, user, device)


def test_concurrent_first_logins_from_one_device_make_one_device(
    fresh: Callable[..., sessionmaker[Session]],
) -> None:
    factory = fresh()
    with factory() as db:
        user = UserFactory(db)()
        db.commit()

    def attempt(i: int) -> SeenDevice:
        with factory() as db:
            seen = devices.record_login(db, user, FINGERPRINT)
            db.commit()
            return seen

    outcomes = race(10, attempt)

    assert all(isinstance(o, SeenDevice) for o in outcomes), outcomes
    assert sum(o.new for o in outcomes if isinstance(o, SeenDevice)) == 1
    with factory() as db:
        assert count(db, "user_devices") == 1
        assert _new_devices(db, user) == 1
