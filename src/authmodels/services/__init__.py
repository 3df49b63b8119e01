"""The authentication flows, on top of the models: one module per flow.

======================  =======================================================================
module                  the flow
======================  =======================================================================
``sessions``            create, validate, touch, rotate refresh tokens (reuse detection, grace
                        window), revoke one or all sessions; each event's ``session_audits`` row
``tokens``              access tokens (issue, validate, revoke, DPoP binding, lineage) and DPoP
                        proof checks with a ``jti`` replay store
``device_flow``         the OAuth 2.0 device authorization grant (RFC 8628)
``step_up``             step-up tokens: issued after a re-authentication, spent exactly once
``admin``               role changes: step-up token, admin guards (MA001/MA002), audited
``passwords``           login (attempts, lockout, rehash), password changes (history), the
                        password policy
``signup``              sign-up: a new account and its verification link; the same answer
                        whether or not the address was taken
``password_reset``      reset by a single-use e-mailed link; limits; everyone signed out
``email_verification``  verifying an address; changing it (verified first, unique then)
``recovery``            account recovery: a verified channel or a recovery code, then a
                        cooling-off before credentials may change
``magic_links``         passwordless sign-in by a single-use link, optionally bound to the client
``delivery``            e-mail and SMS delivery logs (hashed recipients, no bodies), provider
                        callbacks
``devices``             devices seen at login (keyed fingerprints), trust by step-up, revocation
                        that ends their sessions
``mfa``                 TOTP (encrypted seed, replay refusal) and single-use backup codes
``webauthn``            passkeys from py_webauthn results; sign-count regression policy
                        (needs the ``webauthn`` extra)
``api_keys``            API keys: public prefix, digest, scopes, expiry, revocation
``oauth``               provider tokens encrypted, the refresh-due query
``reencryption``        every encrypted column moved to the newest key, in committed batches
``e2ee``                E2EE device keys (register, rotate) and key-exchange audit
``audit``               the one writer of ``auth.audit_logs`` entries the flows share
``security_events``     refusals with a severity (``auth.security_events``), the alert hook
``durable``             writes in a transaction of their own, as the caller runs (refusals)
``settings``            lifetimes, windows and limits (:class:`FlowSettings`), per session or
                        process
======================  =======================================================================

Every function takes a SQLAlchemy :class:`~sqlalchemy.orm.Session` and works in its transaction:
the caller commits, and no flow ever commits the caller's transaction. A refusal that must
outlive a rollback (a reused refresh token revoking its family, a counted failed login or wrong
user code, a replayed DPoP proof, every security event) is committed by the flow before it
raises, in a transaction of its own that runs as the caller runs (its role, its ``auth.uid()``:
:mod:`authmodels.services.durable`), and the function's docstring says so. Rules are enforced in
the SQL (conditional UPDATEs, unique keys, row locks), errors are classes of
:mod:`authmodels.errors`, and tokens are returned raw once and stored only as keyed digests.
Arguments are checked before any query: a value the database would refuse (the wrong type, too
long, a NUL or an unpaired surrogate, not of its column's form) raises
:class:`~authmodels.errors.InvalidInputError` naming it, or the flow's own refusal when it is a
presented credential, and nothing is written. What only the database can know becomes a typed
error too: a row that row-level security or a guard refuses raises
:class:`~authmodels.errors.NotAuthorizedError`, an id that names no row
:class:`~authmodels.locking.RowNotFoundError`.

Under row-level security (the production setup: the application connects as a role registered
with ``auth.grant_app_role``) a flow runs either **as the signed-in user**
(:func:`authmodels.rls.set_current_user`) or, when it must look a credential up before its user
is known, **on the service path** (:func:`authmodels.rls.service_role`): each module's docstring
says which. ``tests/services/test_production_roles.py`` runs every public flow that way.

Import the modules you use (``from authmodels.services import sessions``); this package imports
none of them eagerly. The same flows for an ``AsyncSession`` are in :mod:`authmodels.aio`
(``await aio.sessions.validate_session(db, token)``), one implementation: these.
"""

from __future__ import annotations

from authmodels.services.settings import FlowSettings, configure, settings_for, use_settings

__all__ = ["FlowSettings", "configure", "settings_for", "use_settings"]
