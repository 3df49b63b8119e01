"""Typed exceptions raised by authmodels.

Every failure a caller can act on has its own class, and every message says what happened and,
where there is one, what to do about it. All classes derive from :class:`AuthModelsError`, so a
service can catch the whole family in one place and still map each class to its own response.
"""

from __future__ import annotations


class AuthModelsError(Exception):
    """Base class of every error authmodels raises on purpose."""


# --- arguments -----------------------------------------------------------------------------------


class InvalidInputError(AuthModelsError, ValueError):
    """An argument is not a value the function accepts: the wrong type, empty, too long or too
    large, a NUL or unpaired surrogate character (which PostgreSQL text cannot hold), or not of
    the documented format.

    It is raised before any query runs, so nothing was read or written. Answer 400 (or 422)
    naming :attr:`field`; the message says what is accepted. It is a :class:`ValueError` too,
    as the bare ``ValueError`` s it replaces were.

    Attributes:
        field: the name of the argument that was refused (``"purpose"``, ``"raw_data"``...).
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


# --- configuration -------------------------------------------------------------------------------


class ConfigurationError(AuthModelsError):
    """A setting is missing or malformed (the message names the environment variable)."""


class ReportAccessError(ConfigurationError):
    """The security report cannot run here: the role may not execute the ``auth.report_*``
    functions (run it as the owner, or as a role registered with ``auth.grant_report_role``), or
    the database is not at revision 0030 (migrate it). The message says which."""


class MissingKeyError(ConfigurationError):
    """A key ring is needed but no key is configured."""


class KeyProviderError(ConfigurationError):
    """The key provider (``AUTHMODELS_KEY_PROVIDER``) cannot give the key rings: its URI is
    malformed, its library or token cannot be reached, or the wrapped keys cannot be read.

    The message names the setting, the file or the token object and what to do; it never holds
    key material or a PIN.
    """


class KeyFileError(KeyProviderError):
    """A key file, PIN file or wrapped-key store is missing, malformed, or unsafe: readable or
    writable by its group or others, or (for a key or PIN file) not owned by the user the
    process runs as. The message names the file and the command that fixes it."""


class KeyProviderUnavailableError(KeyProviderError):
    """The PKCS#11 module cannot be loaded, or it has no token with the configured label."""


class KeyProviderLoginError(KeyProviderError):
    """The PKCS#11 token refused the PIN (wrong, locked or expired), or no PIN is configured."""


class KeyObjectNotFoundError(KeyProviderError):
    """The key-encryption key named by the provider (a token object's label, a key file's key id)
    does not exist, or several objects carry that label."""


class KeyUnwrapError(KeyProviderError):
    """A wrapped data key does not unwrap under the key-encryption key its store entry names:
    the store was altered, or the key-encryption key is not the one that wrapped it."""


class KeyManagementError(AuthModelsError):
    """A key-management command cannot do what was asked as things stand (a key id that exists,
    retiring the current key or a key-encryption key still in use, rotating with no new key,
    managing wrapped keys under the ``env`` provider). Nothing was changed."""


class EmbeddedServerUnavailable(ConfigurationError):
    """No database URL is configured and the embedded PostgreSQL extra is not installed."""


class EmbeddedServerNotFound(ConfigurationError):
    """No database URL is configured, and no embedded server belongs to the working directory.

    Nothing was created: the message says to give a URL or to run ``authmodels server init``.
    """


class DatabaseUnavailableError(ConfigurationError):
    """The database server cannot be reached, or refuses the connection.

    The message names the URL (password hidden), the setting it came from, and the server's or
    the driver's reason on one line.
    """


class TransactionPoolerError(ConfigurationError):
    """The job needs a session of its own on the server, and the connection goes through a
    transaction-mode pooler (PgBouncer ``pool_mode = transaction``), which hands each
    transaction to any server connection.

    Migrations hold a session-level advisory lock and session-level ``SET`` s across their
    transactions: run them on a direct connection to PostgreSQL (or through a pooler in session
    mode, declared with ``pooler="session"`` / ``AUTHMODELS_POOLER=session``).
    """


class ReplicaWriteError(ConfigurationError):
    """A flow that writes ran on a read replica (a hot standby refuses every write).

    Only the lookups :mod:`authmodels.db` routes to replicas may run there; run this one on
    the primary (``ReplicatedDatabase.session()``). Nothing was written.
    """


# --- migrations ----------------------------------------------------------------------------------


class MigrationError(AuthModelsError):
    """A revision cannot run against this database as it stands (nothing was changed)."""


class EmailConflictError(MigrationError):
    """Live accounts share an e-mail address in different letter case (revision 0023 stops).

    The message lists them and names the command that resolves them (``authmodels users
    email-conflicts``).
    """


class EmailConflictResolutionError(AuthModelsError):
    """A resolution of e-mail conflicts was asked for accounts it does not apply to."""


# --- cryptography (authmodels.security) ----------------------------------------------------------


class CryptoError(AuthModelsError):
    """Base class of the errors raised by :mod:`authmodels.security`."""


class UnknownKeyError(CryptoError):
    """A stored value names a key id that is not in the configured key ring."""


class InvalidKeyError(CryptoError):
    """A key has the wrong size or format."""


class DecryptionError(CryptoError):
    """A ciphertext did not authenticate: wrong key, wrong associated data, or tampered bytes."""


class MalformedEnvelopeError(DecryptionError):
    """A stored envelope or digest is truncated or has an unknown format version."""


class MalformedHashError(CryptoError):
    """A stored password hash cannot be parsed."""


class InvalidPublicKeyError(CryptoError):
    """A public key (X25519, JWK) is not a valid key of the expected type."""


class InvalidIPAddressError(CryptoError, ValueError):
    """A value given as an IP address is not an IPv4 or IPv6 address."""


class InsecureParametersError(CryptoError, ValueError):
    """A cost, length or size parameter is below the floor authmodels accepts."""


# --- DPoP (RFC 9449 section 4.3) -----------------------------------------------------------------


class DPoPError(CryptoError):
    """A DPoP proof failed one of the checks of RFC 9449 section 4.3."""


class DPoPMalformedError(DPoPError):
    """The proof is not a well-formed JWS compact serialization with the required claims."""


class DPoPInvalidTypeError(DPoPError):
    """The JOSE header ``typ`` is not ``dpop+jwt``."""


class DPoPAlgorithmError(DPoPError):
    """The ``alg`` is ``none``, symmetric, or not supported."""


class DPoPKeyError(DPoPError):
    """The ``jwk`` header is missing, malformed, or contains private key material."""


class DPoPSignatureError(DPoPError):
    """The signature does not verify with the key in the ``jwk`` header."""


class DPoPMethodMismatch(DPoPError):
    """The ``htm`` claim does not match the HTTP method of the request."""


class DPoPUrlMismatch(DPoPError):
    """The ``htu`` claim does not match the request URI (query and fragment ignored)."""


class DPoPTimeError(DPoPError):
    """The ``iat`` claim is outside the accepted window (stale or in the future)."""


class DPoPAccessTokenMismatch(DPoPError):
    """The ``ath`` claim is missing or is not the hash of the presented access token."""


class DPoPNonceError(DPoPError):
    """The server requires a nonce and the proof carries none, or a different one."""


class DPoPReplayError(DPoPError):
    """The proof's ``jti`` was already seen within its validity window."""


class DPoPBindingMismatch(DPoPError):
    """The proof's key thumbprint does not match the key the token or session is bound to."""


# --- authentication flows (authmodels.services) ---------------------------------------------------


class AuthenticationError(AuthModelsError):
    """Base class of the errors a flow raises when a credential is not accepted."""


class InvalidTokenError(AuthenticationError):
    """No live record matches the presented token or code."""


class TokenExpiredError(AuthenticationError):
    """The token matched a record whose lifetime has ended."""


class TokenRevokedError(AuthenticationError):
    """The token matched a record that was revoked."""


class SessionExpiredError(TokenExpiredError):
    """The session reached its absolute end (``expires_at``): the user must sign in again."""


class SessionIdleTimeoutError(TokenExpiredError):
    """The session saw no request for longer than the idle timeout: the user must sign in again."""


class SessionRevokedError(TokenRevokedError):
    """The session was revoked (logout, password change, refresh-token reuse, administrator)."""


class RefreshTokenReused(TokenRevokedError):
    """A refresh token that was already exchanged was presented again (RFC 9700 section 4.14.2).

    Outside the grace window this is treated as theft: the token's whole family and its session
    are revoked before the error is raised, and the user must sign in again.
    """


class DeviceFlowError(AuthenticationError):
    """Base class of the device authorization grant's token-endpoint errors (RFC 8628 section 3.5).

    Attributes:
        error: the RFC 8628 / RFC 6749 ``error`` code to send to the device.
    """

    error = "invalid_grant"


class AuthorizationPending(DeviceFlowError):
    """The user has not approved or denied the request yet: poll again after the interval."""

    error = "authorization_pending"


class SlowDown(DeviceFlowError):
    """The device polled faster than its interval; the interval grew by 5 seconds.

    Attributes:
        interval: the new minimum number of seconds between two polls.
    """

    error = "slow_down"

    def __init__(self, message: str, *, interval: int) -> None:
        super().__init__(message)
        self.interval = interval


class AccessDenied(DeviceFlowError):
    """The user denied the device's request: stop polling."""

    error = "access_denied"


class ExpiredToken(DeviceFlowError):
    """The device code (or the user code typed for it) expired: the device must start again."""

    error = "expired_token"


class InvalidUserCode(InvalidTokenError):
    """No pending device request has the user code that was typed (the attempt is counted), or
    what was typed is not a user code at all (refused before the database, not counted)."""


class TooManyUserCodeAttempts(AuthenticationError):
    """Too many wrong user codes were typed recently (RFC 8628 section 5.1): wait and retry.

    Attributes:
        retry_after: seconds until the oldest counted attempt leaves the window.
    """

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConcurrentUpdateError(AuthModelsError):
    """A versioned row was changed by another transaction since it was read."""


class GuardViolation(AuthModelsError):
    """A database guard refused a change (master admin, last admin)."""


#: SQLSTATE of "Cannot demote the master admin" (revision 0009, class ``MA``).
MASTER_ADMIN_SQLSTATE = "MA001"
#: SQLSTATE of "Cannot remove the last admin" (revision 0009).
LAST_ADMIN_SQLSTATE = "MA002"
#: SQLSTATE of "The new master admin must be an active admin" (``auth.transfer_master_admin``).
NOT_AN_ACTIVE_ADMIN_SQLSTATE = "MA003"


class MasterAdminProtectedError(GuardViolation):
    """The master admin cannot be demoted, soft-deleted or deleted (SQLSTATE ``MA001``).

    Move the role first with ``auth.transfer_master_admin(<admin id>)``.
    """


class LastAdminError(GuardViolation):
    """The change would leave no active admin (SQLSTATE ``MA002``); promote another admin first."""


class NotAnActiveAdminError(GuardViolation):
    """The master admin role can only move to an active admin (SQLSTATE ``MA003``)."""


GUARD_ERRORS: dict[str, type[GuardViolation]] = {
    MASTER_ADMIN_SQLSTATE: MasterAdminProtectedError,
    LAST_ADMIN_SQLSTATE: LastAdminError,
    NOT_AN_ACTIVE_ADMIN_SQLSTATE: NotAnActiveAdminError,
}
"""The typed error of each database guard's SQLSTATE, for services translating driver errors."""


# --- step-up, passwords, second factors, keys (authmodels.services, second half) -----------------


class StepUpTokenInvalid(InvalidTokenError):
    """No step-up token of this user for this purpose matches: re-authenticate to get one."""


class StepUpTokenExpired(TokenExpiredError):
    """The step-up token's lifetime ended before it was used: re-authenticate to get a new one."""


class StepUpTokenUsed(TokenRevokedError):
    """The step-up token was already spent (each one authorises one action): re-authenticate."""


class NotAuthorizedError(AuthModelsError):
    """The acting user is not allowed to perform this operation (e.g. a non-admin changing a
    role)."""


class PasswordReusedError(AuthModelsError):
    """The new password is the current one or one of the recent ones: choose another."""


class InvalidCredentialsError(AuthenticationError):
    """The e-mail address or the password is wrong (deliberately not saying which)."""


class AccountLockedError(AuthenticationError):
    """Too many failed logins: the account refuses logins until ``locked_until``.

    Attributes:
        locked_until: when logins are accepted again.
    """

    def __init__(self, message: str, *, locked_until: object) -> None:
        super().__init__(message)
        self.locked_until = locked_until


class AccountDeletedError(AuthenticationError):
    """The account was deleted: it cannot sign in (restore it or register again)."""


class MfaError(AuthenticationError):
    """Base class of the second-factor errors."""


class MfaNotEnrolledError(MfaError):
    """The user has no TOTP enrolment (or it is not confirmed yet): enrol first."""


class MfaAlreadyEnrolledError(MfaError):
    """The user already has a confirmed TOTP enrolment: disable it before enrolling again."""


class InvalidTotpCodeError(MfaError):
    """The TOTP code is wrong, outside the accepted clock window, or was already used."""


class InvalidBackupCodeError(MfaError):
    """The backup code is unknown or was already spent."""


class WebAuthnError(AuthenticationError):
    """Base class of the WebAuthn errors of the flows."""


class InvalidWebAuthnResponse(WebAuthnError):
    """The authenticator's response is malformed (not the JSON of a WebAuthn credential, bad
    base64url), py_webauthn refused it (signature, challenge, origin, RP id, flags), or it
    carries values WebAuthn does not allow (a credential id of 0 or more than 1023 bytes, a
    signature counter beyond 32 bits): the ceremony is refused and nothing was written."""


class WebAuthnCredentialNotFound(WebAuthnError):
    """No live credential has this id for this user: register the authenticator first."""


class WebAuthnCredentialExists(WebAuthnError):
    """This credential id is already registered (to this or another account)."""


class SignCountRegressionError(WebAuthnError):
    """The authenticator's signature counter went backwards: the credential may be cloned.

    The regression was recorded as a security event (committed) before this was raised.
    """


class ApiKeyError(AuthenticationError):
    """Base class of the API-key errors."""


class InvalidApiKeyError(ApiKeyError, InvalidTokenError):
    """No API key matches: check the key (``prefix.secret``) that was sent."""


class ApiKeyExpiredError(ApiKeyError, TokenExpiredError):
    """The API key reached its ``expires_at``: create a new key."""


class ApiKeyRevokedError(ApiKeyError, TokenRevokedError):
    """The API key was revoked: create a new key."""


class InsufficientScopeError(ApiKeyError):
    """The API key lacks a scope the request needs (RFC 6750 ``insufficient_scope``).

    Attributes:
        missing: the scopes that are needed and not granted.
    """

    def __init__(self, message: str, *, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


class OAuthConnectionError(AuthModelsError):
    """Base class of the OAuth-connection errors."""


class OAuthConnectionNotFound(OAuthConnectionError):
    """No such OAuth connection (for this user)."""


class OAuthTokensNotEncrypted(OAuthConnectionError):
    """The connection holds only legacy hashed tokens (before revision 0011), which cannot be
    read back: the user must sign in with the provider again."""


class DeviceKeyError(AuthModelsError):
    """Base class of the E2EE device-key errors."""


class DeviceKeyNotFound(DeviceKeyError):
    """No device key for this user and device: register one first."""


# --- the account lifecycle (sign-up, reset, verification, recovery, magic links, devices) --------


class TokenAlreadyUsedError(TokenRevokedError):
    """A single-use link or code (a password-reset, verification, recovery or magic link) was
    already used, by this or a concurrent request: ask for a new one."""


class MagicLinkClientMismatch(InvalidTokenError):
    """The magic link is bound to the client that asked for it, and another client opened it:
    open it in the browser (or app) that asked for it, or ask for a new link."""


class WeakPasswordError(AuthModelsError):
    """The new password does not meet the password policy (``FlowSettings.password_min_length``):
    the message says what is required. Answer 422.

    Attributes:
        min_length: the fewest characters a password may have.
    """

    def __init__(self, message: str, *, min_length: int) -> None:
        super().__init__(message)
        self.min_length = min_length


class TooManyRequestsError(AuthModelsError):
    """Too many requests for this address, or from this client, in the window
    (``FlowSettings.request_limit_*``): answer 429 with ``Retry-After``.

    The limits count requests whether or not an account has the address, so this error says
    nothing about an account's existence.

    Attributes:
        retry_after: seconds until the oldest counted request leaves the window.
    """

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EmailTakenError(AuthModelsError):
    """The new e-mail address belongs to another live account (checked when the change is
    verified): the change cannot complete. Answer 409."""


class RecoveryCoolingOffError(AuthModelsError):
    """The account was recovered recently: its credentials (password, e-mail address, second
    factors, trusted devices) cannot change until ``until`` (``FlowSettings.
    recovery_cooling_off``), so a recovery made by someone else can still be undone by the owner.

    Attributes:
        until: when credential changes are accepted again.
    """

    def __init__(self, message: str, *, until: object) -> None:
        super().__init__(message)
        self.until = until


class UnknownDeviceError(AuthModelsError):
    """No device of this user has this id (or it was revoked): list the user's devices again."""


class DeliveryNotFoundError(AuthModelsError):
    """No delivery log has this id, or this provider's message id: a provider's callback for a
    message not recorded yet (or of another provider). Answer 404 and let the provider retry."""
