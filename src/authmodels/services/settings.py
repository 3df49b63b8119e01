"""The settings of the authentication flows: key rings, lifetimes, windows and limits.

The flows read their settings from the SQLAlchemy ``Session`` they are given, so one process can
serve several configurations (and tests can shorten a window without touching globals):

1. ``db.info[SETTINGS_KEY]``, when set (:func:`use_settings`, or ``sessionmaker(info=...)`` for
   every session of a factory);
2. else the process default set with :func:`configure`;
3. else a default built once from the environment (:meth:`FlowSettings.from_env`:
   ``AUTHMODELS_HASH_KEYS``, ``AUTHMODELS_PRIVACY_KEYS``, ``AUTHMODELS_ENCRYPTION_KEYS``).
"""

from __future__ import annotations

import dataclasses
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from authmodels.config import KeyRing, Settings
from authmodels.errors import ConfigurationError, MissingKeyError
from authmodels.models.magic_links import MAGIC_LINK_MAX_LIFETIME_MINUTES
from authmodels.models.users import MAX_FAILED_LOGIN_ATTEMPTS
from authmodels.security.encryption import FieldCipher
from authmodels.security.hashing import TokenHasher
from authmodels.security.passwords import PasswordHasher
from authmodels.security.privacy import PrivacyHasher
from authmodels.services.alerts import SecurityEventAlert

__all__ = [
    "SETTINGS_KEY",
    "FlowSettings",
    "configure",
    "default_settings",
    "settings_for",
    "use_settings",
]

#: Key of :attr:`sqlalchemy.orm.Session.info` that holds a session's :class:`FlowSettings`.
SETTINGS_KEY = "authmodels.services.settings"
#: Longest duration a setting may have.
_LONGEST = timedelta(days=3650)


@dataclass(frozen=True)
class FlowSettings:
    """What the flows need besides the database.

    Attributes:
        hash_keys: HMAC key ring for token and code digests (``AUTHMODELS_HASH_KEYS``).
        privacy_keys: HMAC key ring for IP / user-agent hashes (defaults to ``hash_keys``).
        session_idle_timeout: a session with no request for this long is refused
            (:class:`~authmodels.errors.SessionIdleTimeoutError`); None disables the check.
            The default, 30 minutes, is OWASP ASVS 3.3.2's level-2 inactivity limit.
        session_touch_interval: ``last_activity_at`` is written at most once per interval per
            session (see :func:`authmodels.services.sessions.validate_session`); the idle check
            is exact to within this interval.
        refresh_token_ttl: lifetime of a refresh token (never beyond its session's end).
        refresh_grace_window: how long after a refresh token was exchanged a second exchange of
            it is taken for a benign concurrent refresh and answered with the same successor
            (RFC 9700 section 4.14.2); after it, the family is revoked. ``timedelta(0)``
            disables the grace window.
        access_token_ttl: lifetime of an access token (a token of a session is refused once
            the session has ended, whatever its own lifetime).
        device_code_ttl: lifetime of a device authorization request (RFC 8628 ``expires_in``).
        device_poll_interval: initial polling interval of a device (RFC 8628 ``interval``).
        device_session_ttl: lifetime of the session a device gets when its request is approved.
        user_code_attempts: wrong user codes a user may type per ``user_code_window``
            (RFC 8628 section 5.1).
        user_code_window: the sliding window of ``user_code_attempts``.
        dpop_max_age: how old a DPoP proof's ``iat`` may be (RFC 9449 section 11.1).
        dpop_leeway: how far in the future a DPoP proof's ``iat`` may be (clock skew).
        encryption_keys: AES-256 key ring of encrypted columns (``AUTHMODELS_ENCRYPTION_KEYS``:
            TOTP seeds, OAuth provider tokens, E2EE private-key envelopes).
        password_hasher: the Argon2id hasher of passwords (OWASP's minimum by default); a
            stored hash made with other parameters is rehashed at the next successful login.
        max_failed_logins: consecutive failed logins that lock an account (1 to the schema's
            ``ck_users_failed_login_attempts_range`` bound, 10).
        lockout_duration: how long a locked account refuses logins.
        totp_window: TOTP steps accepted on each side of the current one (clock drift).
        webauthn_sign_count_policy: what a WebAuthn signature-counter regression does:
            ``"reject"`` (refuse the authentication) or ``"flag"`` (accept it); both record a
            security event.
        api_key_touch_interval: ``api_keys.last_used_at`` is written at most once per
            interval per key.
        security_event_hook: called with a
            :class:`~authmodels.services.security_events.SecurityEventAlert` for every ``high``
            or ``critical`` security event a flow records, once it is committed (see
            :mod:`authmodels.services.security_events`); None calls nothing.
        password_min_length: the fewest characters a new password may have (sign-up, reset,
            recovery, password change; NIST SP 800-63B's minimum, 8, by default).
        password_reset_ttl: lifetime of a password-reset link (seed 004: one hour).
        email_verification_ttl: lifetime of an e-mail verification link (seed 004: 24 hours).
        magic_link_ttl: lifetime of a magic sign-in link (at most an hour, a CHECK says so).
        recovery_ttl: lifetime of an account-recovery link or grant.
        recovery_cooling_off: after an account is recovered, how long its credentials cannot
            change (:class:`~authmodels.errors.RecoveryCoolingOffError`); ``timedelta(0)``
            disables it.
        device_trust_ttl: how long a trusted device stays trusted.
        request_limit_per_account: requests per address typed (whether or not an account has
            it) a flow that sends a message accepts per ``request_limit_window``.
        request_limit_per_ip: requests per client address such a flow accepts per window.
        request_limit_window: the sliding window of the two limits.
        email_provider: the ``provider`` the flows record on the e-mails they log (the service
            that sends them; a provider callback names it too).
        sms_provider: the same, for text messages.
    """

    hash_keys: KeyRing
    privacy_keys: KeyRing | None = None
    session_idle_timeout: timedelta | None = timedelta(minutes=30)
    session_touch_interval: timedelta = timedelta(seconds=60)
    refresh_token_ttl: timedelta = timedelta(days=7)
    refresh_grace_window: timedelta = timedelta(seconds=15)
    access_token_ttl: timedelta = timedelta(minutes=15)
    device_code_ttl: timedelta = timedelta(minutes=15)
    device_poll_interval: int = 5
    device_session_ttl: timedelta = timedelta(days=30)
    user_code_attempts: int = 5
    user_code_window: timedelta = timedelta(minutes=15)
    dpop_max_age: timedelta = timedelta(seconds=300)
    dpop_leeway: timedelta = timedelta(seconds=30)
    encryption_keys: KeyRing | None = None
    password_hasher: PasswordHasher = field(default_factory=PasswordHasher)
    max_failed_logins: int = 5
    lockout_duration: timedelta = timedelta(minutes=15)
    totp_window: int = 1
    webauthn_sign_count_policy: str = "reject"
    api_key_touch_interval: timedelta = timedelta(minutes=5)
    security_event_hook: Callable[[SecurityEventAlert], None] | None = None
    password_min_length: int = 8
    password_reset_ttl: timedelta = timedelta(hours=1)
    email_verification_ttl: timedelta = timedelta(hours=24)
    magic_link_ttl: timedelta = timedelta(minutes=15)
    recovery_ttl: timedelta = timedelta(hours=1)
    recovery_cooling_off: timedelta = timedelta(hours=24)
    device_trust_ttl: timedelta = timedelta(days=30)
    request_limit_per_account: int = 3
    request_limit_per_ip: int = 20
    request_limit_window: timedelta = timedelta(hours=1)
    email_provider: str = "email"
    sms_provider: str = "sms"
    _hasher: TokenHasher = field(init=False, repr=False, compare=False)
    _privacy: PrivacyHasher = field(init=False, repr=False, compare=False)
    _cipher: FieldCipher | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_types()
        if self.session_touch_interval <= timedelta(0):
            raise ConfigurationError("session_touch_interval must be positive")
        if (
            self.session_idle_timeout is not None
            and self.session_idle_timeout <= self.session_touch_interval
        ):
            raise ConfigurationError(
                "session_idle_timeout must be longer than session_touch_interval "
                f"({self.session_touch_interval}), or the idle check would refuse active sessions"
            )
        if self.refresh_grace_window < timedelta(0):
            raise ConfigurationError("refresh_grace_window must not be negative")
        if self.refresh_grace_window > timedelta(minutes=2):
            raise ConfigurationError(
                "refresh_grace_window is meant for concurrent refreshes (seconds); "
                f"{self.refresh_grace_window} would let a stolen refresh token be replayed too long"
            )
        if self.device_poll_interval < 1:
            raise ConfigurationError("device_poll_interval must be at least 1 second")
        if self.user_code_attempts < 1:
            raise ConfigurationError("user_code_attempts must be at least 1")
        for name in ("refresh_token_ttl", "access_token_ttl", "device_code_ttl"):
            if getattr(self, name) <= timedelta(0):
                raise ConfigurationError(f"{name} must be positive")
        if not 1 <= self.max_failed_logins <= MAX_FAILED_LOGIN_ATTEMPTS:
            raise ConfigurationError(
                f"max_failed_logins must be between 1 and {MAX_FAILED_LOGIN_ATTEMPTS} (the bound "
                f"of users.failed_login_attempts), not {self.max_failed_logins}"
            )
        if self.lockout_duration <= timedelta(0):
            raise ConfigurationError("lockout_duration must be positive")
        if not 0 <= self.totp_window <= 10:
            raise ConfigurationError("totp_window must be between 0 and 10 steps")
        if self.webauthn_sign_count_policy not in ("reject", "flag"):
            raise ConfigurationError(
                "webauthn_sign_count_policy must be 'reject' or 'flag', "
                f"not {self.webauthn_sign_count_policy!r}"
            )
        if self.api_key_touch_interval < timedelta(0):
            raise ConfigurationError("api_key_touch_interval must not be negative")
        self._check_lifecycle()
        object.__setattr__(self, "_hasher", TokenHasher.from_ring(self.hash_keys))
        object.__setattr__(
            self,
            "_cipher",
            None if self.encryption_keys is None else FieldCipher.from_ring(self.encryption_keys),
        )
        object.__setattr__(
            self, "_privacy", PrivacyHasher.from_ring(self.privacy_keys or self.hash_keys)
        )

    def _check_lifecycle(self) -> None:
        """The account-lifecycle settings are usable (see the attributes)."""
        if not 1 <= self.password_min_length <= 4096:
            raise ConfigurationError("password_min_length must be between 1 and 4096")
        for name in (
            "password_reset_ttl", "email_verification_ttl", "magic_link_ttl", "recovery_ttl",
            "device_trust_ttl", "request_limit_window",
        ):  # fmt: skip
            if getattr(self, name) <= timedelta(0):
                raise ConfigurationError(f"{name} must be positive")
        if self.magic_link_ttl > timedelta(minutes=MAGIC_LINK_MAX_LIFETIME_MINUTES):
            raise ConfigurationError(
                f"magic_link_ttl must be at most {MAGIC_LINK_MAX_LIFETIME_MINUTES} minutes (a "
                "sign-in link that lives longer is a password sent by e-mail)"
            )
        if self.recovery_cooling_off < timedelta(0):
            raise ConfigurationError("recovery_cooling_off must not be negative")
        for name in ("request_limit_per_account", "request_limit_per_ip"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1")
        for name in ("email_provider", "sms_provider"):
            value = getattr(self, name)
            if not 1 <= len(value) <= 100 or not value.isprintable():
                raise ConfigurationError(f"{name} must be a name of 1 to 100 characters")

    def _check_types(self) -> None:
        """Each setting has its declared type, and a duration is at most ten years (what
        ``now() + interval`` is sure to handle), before any comparison below."""
        hints = typing.get_type_hints(FlowSettings)
        for setting in dataclasses.fields(self):
            if not setting.init:
                continue
            value, expected = getattr(self, setting.name), hints[setting.name]
            allowed = typing.get_args(expected) or (expected,)
            if any(typing.get_origin(t) is Callable for t in allowed) and callable(value):
                continue
            types = tuple(t for t in allowed if isinstance(t, type))
            if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, types):
                names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
                raise ConfigurationError(
                    f"{setting.name} must be {names}, not {type(value).__name__}"
                )
            if isinstance(value, timedelta) and value > _LONGEST:
                raise ConfigurationError(f"{setting.name} must be at most {_LONGEST}, not {value}")

    @classmethod
    def from_env(cls, **overrides: Any) -> FlowSettings:
        """Settings with the key rings of the environment and the given overrides.

        Raises:
            MissingKeyError: ``AUTHMODELS_HASH_KEYS`` is not set.
        """
        env = Settings.from_env()
        values: dict[str, Any] = {
            "hash_keys": env.require_hash_keys(),
            "privacy_keys": env.privacy_keys,
            "encryption_keys": env.encryption_keys,
        }
        values.update(overrides)
        return cls(**values)

    @property
    def hasher(self) -> TokenHasher:
        """Digests of tokens and codes under :attr:`hash_keys`."""
        return self._hasher

    @property
    def privacy(self) -> PrivacyHasher:
        """Keyed IP / user-agent hashes under :attr:`privacy_keys`."""
        return self._privacy

    @property
    def cipher(self) -> FieldCipher:
        """Encryption of columns under :attr:`encryption_keys`.

        Raises:
            MissingKeyError: no encryption key ring is configured.
        """
        if self._cipher is None:
            raise MissingKeyError(
                "AUTHMODELS_ENCRYPTION_KEYS is not set (FlowSettings.encryption_keys): TOTP "
                "seeds, OAuth tokens and E2EE key envelopes are stored encrypted and need a "
                "32-byte AES key ('key_id:base64key', `authmodels keys generate` prints one; "
                "with AUTHMODELS_KEY_PROVIDER, `authmodels keys create encryption` makes one)"
            )
        return self._cipher

    def replace(self, **changes: Any) -> FlowSettings:
        """A copy with some settings changed.

        Raises:
            ConfigurationError: a name is not a setting, or a value is not of its type.
        """
        known = {f.name for f in dataclasses.fields(self) if f.init}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigurationError(
                f"no such setting: {', '.join(unknown)} "
                f"(FlowSettings has {', '.join(sorted(known))})"
            )
        return dataclasses.replace(self, **changes)


_lock = threading.Lock()
_default: FlowSettings | None = None


def configure(settings: FlowSettings | None = None, **overrides: Any) -> FlowSettings:
    """Set the process-wide default settings of the flows.

    Args:
        settings: the new default; when None, the current default (or the environment's) with
            ``overrides`` applied.
        **overrides: fields of :class:`FlowSettings` to change.

    Returns:
        The new default.
    """
    global _default
    with _lock:
        base = settings or _default or FlowSettings.from_env()
        _default = base.replace(**overrides) if overrides else base
        return _default


def settings_for(db: Session) -> FlowSettings:
    """The settings that apply to work done through ``db`` (see the module docstring).

    Raises:
        MissingKeyError: nothing is configured and ``AUTHMODELS_HASH_KEYS`` is not set.
    """
    configured = db.info.get(SETTINGS_KEY)
    if configured is not None:
        return configured  # type: ignore[no-any-return]
    return default_settings()


def default_settings() -> FlowSettings:
    """The process-wide default settings: :func:`configure`'s, or else the environment's.

    Raises:
        MissingKeyError: nothing is configured and ``AUTHMODELS_HASH_KEYS`` is not set.
    """
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = FlowSettings.from_env()
    return _default


def use_settings(db: Session, settings: FlowSettings) -> Session:
    """Make ``settings`` apply to every flow called with ``db``; returns ``db``.

    Raises:
        ConfigurationError: ``settings`` is not a :class:`FlowSettings`.
    """
    if not isinstance(settings, FlowSettings):
        raise ConfigurationError(f"settings must be a FlowSettings, not {type(settings).__name__}")
    db.info[SETTINGS_KEY] = settings
    return db
