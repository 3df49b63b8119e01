"""Credential lookups on a real streaming replica, and revocations it never misses.

A hot standby of the test server is started from the embedded binaries (``pg_basebackup -R``,
a second ``pg_ctl`` on its own socket and port) and listed in the primary's
``synchronous_standby_names``. The application connects as the production login role: to the
primary for everything, to the replica for the lookups of ``authmodels.db.REPLICA_FLOWS``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from authmodels import errors, rls
from authmodels.db import ReplicatedDatabase, create_db_engine, create_replicated
from authmodels.models import User
from authmodels.services import (
    FlowSettings,
    api_keys,
    passwords,
    sessions,
    tokens,
)
from authmodels.services.settings import SETTINGS_KEY
from authmodels.testing.database import TestServer
from authmodels.testing.factories import TEST_PASSWORD_HASHER, ServicePathUserFactory
from authmodels.testing.replica import Standby
from authmodels.testing.roles import TestRoles

TTL = timedelta(hours=1)


@pytest.fixture(scope="module")
def standby(authmodels_test_server: TestServer) -> Iterator[Standby]:
    """A synchronous hot standby of the test server, for this module."""
    replica = Standby(authmodels_test_server.url).start()
    try:
        replica.make_synchronous()
        yield replica
    finally:
        replica.stop()


@pytest.fixture
def settings(authmodels_keys) -> FlowSettings:  # type: ignore[no-untyped-def]
    return FlowSettings(
        hash_keys=authmodels_keys.hash_keys,
        encryption_keys=authmodels_keys.encryption_keys,
        password_hasher=TEST_PASSWORD_HASHER,
        refresh_grace_window=timedelta(0),
    )


@pytest.fixture
def database(
    standby: Standby, authmodels_fresh_database: URL, authmodels_roles: TestRoles
) -> Iterator[ReplicatedDatabase]:
    """The login role on a fresh database: the primary, and the standby as its replica."""
    primary = authmodels_roles.url(authmodels_fresh_database)
    standby.catch_up()  # the new database exists there too
    replicated = create_replicated(primary, [standby.url(primary)], pool_size=10)
    try:
        yield replicated
    finally:
        replicated.dispose()


@dataclass
class App:
    """Requests on the primary and on the replica, on the service path."""

    database: ReplicatedDatabase
    roles: TestRoles
    settings: FlowSettings
    users: list[User] = field(default_factory=list)

    def primary(self) -> Session:
        return self.database.session(info={SETTINGS_KEY: self.settings})

    def replica(self) -> Session:
        return self.database.replica_session(info={SETTINGS_KEY: self.settings})

    def user(self, db: Session) -> User:
        return ServicePathUserFactory(db, self.roles.service)()


@pytest.fixture
def app(database: ReplicatedDatabase, authmodels_roles: TestRoles, settings: FlowSettings) -> App:
    return App(database, authmodels_roles, settings)


@contextmanager
def _service(app: App, db: Session) -> Iterator[None]:
    with db.begin(), rls.service_role(db, app.roles.service):
        yield


def test_sessions_access_tokens_and_api_keys_validate_on_the_replica(app: App) -> None:
    with app.primary() as db, db.begin():
        with rls.service_role(db, app.roles.service):
            ada = app.user(db)
            issued = sessions.create_session(db, ada, ttl=TTL)
        with rls.as_user(db, ada.id):
            access = tokens.issue_access_token(db, ada, session_id=issued.session.id)
            key = api_keys.create(db, ada, name="ci", scopes=["read"])
    with app.replica() as db, _service(app, db):
        assert db.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
        assert sessions.validate_session(db, issued.session_token).user_id == ada.id
        assert tokens.validate_access_token(db, access.token).user_id == ada.id
        assert api_keys.authenticate(db, key.key, scopes=["read"]).user_id == ada.id
        assert sessions.validate_session_alone(db, issued.session_token).user_id == ada.id


def test_the_touches_of_a_lookup_on_the_replica_land_on_the_primary(app: App) -> None:
    app.settings = app.settings.replace(
        session_touch_interval=timedelta(seconds=1), api_key_touch_interval=timedelta(seconds=1)
    )
    with app.primary() as db, db.begin():
        with rls.service_role(db, app.roles.service):
            ada = app.user(db)
            issued = sessions.create_session(db, ada, ttl=TTL)
            db.execute(
                text("UPDATE auth.sessions SET last_activity_at = now() - interval '1 minute'")
            )
        with rls.as_user(db, ada.id):
            key = api_keys.create(db, ada, name="ci")
    time.sleep(1.1)  # the key's touch is due
    with app.replica() as db, _service(app, db):
        session = sessions.validate_session(db, issued.session_token)
        api_keys.authenticate(db, key.key)
    with app.primary() as db, db.begin(), rls.as_user(db, ada.id):
        touched, used = db.execute(
            text(
                "SELECT (SELECT last_activity_at FROM auth.sessions), "
                "(SELECT last_used_at FROM auth.api_keys)"
            )
        ).one()
    assert touched == session.last_activity_at and used is not None


def test_a_flow_that_writes_fails_on_the_replica_with_a_typed_error(app: App) -> None:
    with app.primary() as db, db.begin(), rls.service_role(db, app.roles.service):
        ada = app.user(db)
        issued = sessions.create_session(db, ada, ttl=TTL)
    for write in (
        lambda db: sessions.create_session(db, ada, ttl=TTL),
        lambda db: sessions.rotate_refresh_token(db, issued.refresh_token),  # the fast path
        lambda db: sessions.revoke_session(db, issued.session.id),
    ):
        with (
            app.replica() as db,
            _service(app, db),
            pytest.raises(errors.ReplicaWriteError, match="read replica"),
            db.begin_nested(),  # the refused statement aborts it, not the whole transaction
        ):
            write(db)
    with app.replica() as db, _service(app, db):  # nothing was written
        assert sessions.validate_session(db, issued.session_token).is_active


# --- revocations ------------------------------------------------------------------------------


@dataclass
class Hammer:
    """Threads validating one credential on the replica, each validation in a transaction of
    its own, recording when it started and whether it was accepted."""

    app: App
    check: Callable[[Session], object]
    threads: int = 3
    seen: list[tuple[float, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run) for _ in range(self.threads)]

    def _run(self) -> None:
        with self.app.replica() as db:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    with _service(self.app, db):
                        self.check(db)
                    accepted = True
                except errors.AuthenticationError:
                    accepted = False
                with self._lock:
                    self.seen.append((started, accepted))

    def __enter__(self) -> Hammer:
        for worker in self._workers:
            worker.start()
        while len(self.seen) < 3 * self.threads:  # every thread is validating
            time.sleep(0.005)
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.05)
        self._stop.set()
        for worker in self._workers:
            worker.join()

    def accepted_after(self, returned: float) -> int:
        return sum(1 for started, accepted in self.seen if started > returned and accepted)


def _revoke_while_validating(
    app: App, check: Callable[[Session], object], revoke: Callable[[Session], object]
) -> tuple[int, int, int]:
    """(accepted before, accepted after the revoking call returned, refused after)."""
    with Hammer(app, check) as hammer:
        time.sleep(0.03)
        with app.primary() as db:
            try:
                with _service(app, db):
                    revoke(db)
            except errors.RefreshTokenReused:
                pass  # the reuse's revocation committed on its own before the error
        returned = time.monotonic()
    before = sum(1 for started, accepted in hammer.seen if started < returned and accepted)
    refused = sum(1 for started, accepted in hammer.seen if started > returned and not accepted)
    return before, hammer.accepted_after(returned), refused


def test_a_session_validator_on_the_replica_is_refused_with_a_typed_error(
    app: App, standby: Standby, authmodels_fresh_database: URL
) -> None:
    """The validator's touch is a write: on a standby's engine it names the fix."""
    with app.primary() as db, db.begin(), rls.service_role(db, app.roles.service):
        issued = sessions.create_session(db, app.user(db), ttl=TTL)
    standby.catch_up()
    replica = create_db_engine(standby.url(authmodels_fresh_database))
    try:
        validator = sessions.SessionValidator(replica, settings=app.settings)
        with pytest.raises(errors.ReplicaWriteError, match="the primary's engine"):
            validator.validate(issued.session_token)
        validator.close()
    finally:
        replica.dispose()


def test_a_revocation_is_never_accepted_on_the_replica_after_the_call_returned(
    app: App, authmodels_fresh_engine: Engine
) -> None:
    """Logout, refresh-token reuse, password change, an admin's revocation of every session,
    an access token's and an API key's revocation: each committed on the primary while three
    threads validate the credential on the replica as fast as they can."""
    outcomes: dict[str, list[tuple[int, int, int]]] = {}
    for round_ in range(4):
        with app.primary() as db:
            with _service(app, db):
                ada, bob = app.user(db), app.user(db)
                admin_victim = app.user(db)
                s = [sessions.create_session(db, ada, ttl=TTL) for _ in range(3)]
                s.append(sessions.create_session(db, bob, ttl=TTL))
                victim = sessions.create_session(db, admin_victim, ttl=TTL)
            with db.begin(), rls.as_user(db, bob.id):  # Ada's password change leaves them
                access = tokens.issue_access_token(db, bob, session_id=s[3].session.id)
                key = api_keys.create(db, bob, name=f"ci-{round_}")
            with _service(app, db):
                sessions.rotate_refresh_token(db, s[1].refresh_token)
        cases: dict[str, tuple[Callable[[Session], object], Callable[[Session], object]]] = {
            "logout": (
                lambda db, t=s[0].session_token: sessions.validate_session(db, t),
                lambda db, i=s[0].session.id: sessions.revoke_session(db, i),
            ),
            "refresh reuse": (
                lambda db, t=s[1].session_token: sessions.validate_session(db, t),
                lambda db, t=s[1].refresh_token: sessions.rotate_refresh_token(db, t),
            ),
            "password change": (
                lambda db, t=s[2].session_token: sessions.validate_session(db, t),
                lambda db, u=ada, p=f"new passphrase {round_}": passwords.set_password(db, u, p),
            ),
            "admin revoke": (
                lambda db, t=victim.session_token: sessions.validate_session(db, t),
                lambda db, u=admin_victim: sessions.revoke_all_sessions(db, u, reason="admin"),
            ),
            "access token": (
                lambda db, t=access.token: tokens.validate_access_token(db, t),
                lambda db, t=access.token: tokens.revoke_access_token(db, t),
            ),
            "api key": (
                lambda db, k=key.key: api_keys.authenticate(db, k),
                lambda db, i=key.api_key.id, u=bob: _as(app, db, u, api_keys.revoke, u, i),
            ),
        }
        for name, (check, revoke) in cases.items():
            outcomes.setdefault(name, []).append(_revoke_while_validating(app, check, revoke))
    for name, rounds in outcomes.items():
        assert all(after == 0 for _, after, _ in rounds), (name, rounds)
        assert all(before > 0 and refused > 0 for before, _, refused in rounds), (name, rounds)


def _as(app: App, db: Session, user: User, flow: Callable[..., object], *args: object) -> object:
    with rls.as_user(db, user.id):
        return flow(db, *args)


def test_a_revocation_returns_only_once_the_replica_applied_it(
    app: App, standby: Standby, authmodels_fresh_engine: Engine
) -> None:
    """With the replica's replay paused, a logout waits; without the rule (revision 0035's
    trigger disabled: the commit left asynchronous), it returns at once and the replica keeps
    accepting the revoked session -- what the test above would catch."""
    with app.primary() as db, _service(app, db):
        ada = app.user(db)
        first = sessions.create_session(db, ada, ttl=TTL)
        second = sessions.create_session(db, ada, ttl=TTL)

    def accepted(token: str) -> bool:
        with app.replica() as db:
            try:
                with _service(app, db):
                    sessions.validate_session(db, token)
            except errors.SessionRevokedError:
                return False
            return True

    def logout(session_id: object) -> None:
        with app.primary() as db, _service(app, db):
            sessions.revoke_session(db, session_id)  # type: ignore[arg-type]

    standby.pause_replay()
    try:
        waiting = threading.Thread(target=logout, args=(first.session.id,))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()  # not returned: the replica has not applied it
        assert accepted(first.session_token)  # allowed: the call has not returned
    finally:
        standby.pause_replay(False)
    waiting.join(10)
    assert not waiting.is_alive() and not accepted(first.session_token)

    with authmodels_fresh_engine.begin() as owner:  # the rule of revision 0035, switched off
        owner.execute(
            text("ALTER TABLE auth.sessions DISABLE TRIGGER revocation_waits_for_replicas")
        )
    standby.catch_up()
    standby.pause_replay()
    try:
        logout(second.session.id)  # returns at once
        assert accepted(second.session_token)  # the stale answer the rule prevents
    finally:
        standby.pause_replay(False)


def test_replica_urls_come_from_the_argument_or_the_environment(
    authmodels_fresh_database: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = authmodels_fresh_database
    monkeypatch.setenv("AUTHMODELS_REPLICA_URLS", f"{url.render_as_string(False)}, {url}")
    listed = create_replicated(url)
    assert len(listed.replicas) == 2
    with listed.replica_session() as db:
        assert db.info["authmodels.db.replica_of"] is listed.primary
    listed.dispose()
    monkeypatch.delenv("AUTHMODELS_REPLICA_URLS")
    alone = create_replicated(url)
    with alone.replica_session() as db:  # no replica: the primary, unmarked
        assert alone.replicas == [] and "authmodels.db.replica_of" not in db.info
    alone.dispose()
    with pytest.raises(errors.ConfigurationError, match=r"replica 2"):
        create_replicated(url, [url, "mysql://nope@host/db"])
