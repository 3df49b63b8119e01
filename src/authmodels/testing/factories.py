"""Factories that create rows for tests."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from authmodels import rls
from authmodels.email_identity import normalize_email
from authmodels.models import User
from authmodels.security.passwords import PasswordHasher

#: Cheap argon2id parameters: test users need a real, verifiable hash, not a slow one.
TEST_PASSWORD_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, allow_weak=True)
DEFAULT_PASSWORD = "correct horse battery staple"  # noqa: S105 (a test fixture's password)


class UserFactory:
    """Create :class:`~authmodels.models.User` rows in a session.

    Calling the factory adds a user with a unique e-mail address and a real argon2id hash of
    ``password`` (made with cheap test parameters), flushes, and returns it::

        user = authmodels_user_factory(email="ada@example.com", role="admin")
    """

    _counter = itertools.count(1)

    def __init__(self, session: Session, *, hasher: PasswordHasher = TEST_PASSWORD_HASHER) -> None:
        self.session = session
        self.hasher = hasher

    def __call__(
        self, *, email: str | None = None, password: str = DEFAULT_PASSWORD, **values: Any
    ) -> User:
        """Add one user, flush, and return it; ``values`` set any other column.

        ``email`` is stored normalised (:func:`authmodels.email_identity.normalize_email`).
        """
        user = User(
            email=normalize_email(email) if email else f"user{next(self._counter)}@example.test",
            password_hash=self.hasher.hash(password),
            **values,
        )
        self.session.add(user)
        self.session.flush()
        return user

    def batch(self, count: int, **values: Any) -> list[User]:
        """Add ``count`` users with the same ``values``."""
        return [self(**values) for _ in range(count)]


class ServicePathUserFactory(UserFactory):
    """Create users the way a sign-up does in production: on the service path.

    For a session connected as an application's login role, where row-level security applies:
    each user is inserted under the service role (``rls.service_role``) with no user named, its
    server-made columns are read back there, and the session returns to the login role (and to
    the user it had named, if any) afterwards::

        user = authmodels_app_user_factory(email="ada@example.com")
    """

    def __init__(
        self, session: Session, service_role: str, *, hasher: PasswordHasher = TEST_PASSWORD_HASHER
    ) -> None:
        super().__init__(session, hasher=hasher)
        self.service_role = service_role

    def __call__(
        self, *, email: str | None = None, password: str = DEFAULT_PASSWORD, **values: Any
    ) -> User:
        """Add one user on the service path, flush, and return it fully loaded."""
        with rls.service_role(self.session, self.service_role), rls.as_user(self.session, None):
            user = super().__call__(email=email, password=password, **values)
            # Read the server defaults now: once back on the login role, the row is hidden
            # from a session that names no user, and a lazy load would find nothing.
            self.session.refresh(user)
        return user
