"""Factories that create rows for tests."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

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
