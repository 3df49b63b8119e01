"""The authentication flows, on top of the models: one module per flow.

====================  =======================================================================
module                the flow
====================  =======================================================================
``sessions``          create, validate, touch, rotate refresh tokens (reuse detection, grace
                      window), revoke one or all sessions
``tokens``            access tokens (issue, validate, revoke, DPoP binding, lineage) and DPoP
                      proof checks with a ``jti`` replay store
``device_flow``       the OAuth 2.0 device authorization grant (RFC 8628)
``step_up``           step-up tokens: issued after a re-authentication, spent exactly once
``admin``             role changes: step-up token, admin guards (MA001/MA002), audited
``passwords``         login (attempts, lockout, rehash) and password changes (history)
``mfa``               TOTP (encrypted seed, replay refusal) and single-use backup codes
``webauthn``          passkeys from py_webauthn results; sign-count regression policy
                      (needs the ``webauthn`` extra)
``api_keys``          API keys: public prefix, digest, scopes, expiry, revocation
``oauth``             provider tokens encrypted, the refresh-due query, re-encryption
``e2ee``              E2EE device keys (register, rotate) and key-exchange audit
``audit``             the one writer of ``auth.audit_logs`` entries the flows share
``settings``          lifetimes, windows and limits (:class:`FlowSettings`), per session or
                      process
====================  =======================================================================

Every function takes a SQLAlchemy :class:`~sqlalchemy.orm.Session` and works in its transaction:
the caller commits. A refusal that must outlive a rollback (a reused refresh token revoking its
family, a counted wrong user code, a replayed DPoP proof...) is committed by the flow before it
raises, and the function's docstring says so. Rules are enforced in the SQL (conditional UPDATEs,
unique keys, row locks), errors are classes of :mod:`authmodels.errors`, and tokens are returned
raw once and stored only as keyed digests. Arguments are checked before any query: a value the
database would refuse (the wrong type, too long, a NUL or an unpaired surrogate, not of its
column's form) raises :class:`~authmodels.errors.InvalidInputError` naming it, or the flow's own
refusal when it is a presented credential, and nothing is written.

Import the modules you use (``from authmodels.services import sessions``); this package imports
none of them eagerly.
"""

from __future__ import annotations

from authmodels.services.settings import FlowSettings, configure, settings_for, use_settings

__all__ = ["FlowSettings", "configure", "settings_for", "use_settings"]
