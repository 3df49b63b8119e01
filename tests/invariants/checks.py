"""The guarantees the catalog can answer, each a function returning its violations.

Every function takes a connection to a migrated database (any role may read the catalog) and
returns a list of readable sentences, one per violation, empty when the guarantee holds. The cases
come from the catalog (:mod:`tests.invariants.catalog`); the only hand-written lists are the
classified exceptions below, each with its reason.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, text

from tests.invariants.catalog import (
    SCHEMA,
    SCHEMA_OID,
    CheckConstraint,
    Column,
    check_constraints,
    columns,
    per_user_tables,
    relations,
)

# --- 1. views run with the querying role's rights ---------------------------------------------


def views_without_invoker_rights(conn: Connection) -> list[str]:
    """Every view of ``auth`` has ``security_invoker=true``; there is no materialized view.

    Why: a view reads its tables with its owner's rights unless it is ``security_invoker``
    (PostgreSQL 15+), and the owner is not bound by row-level security: such a view shows every
    user's rows to anyone allowed to select from it. ``CREATE OR REPLACE VIEW`` drops the option,
    so a revision that re-creates a view must set it again. A materialized view stores rows read
    with its owner's rights and cannot apply a policy at all.
    """
    violations = []
    for rel in relations(conn).values():
        if rel.kind == "m":
            violations.append(
                f"{rel.qualified} is a materialized view: it stores rows read with its owner's "
                "rights, which no row-level security policy filters; use a view with "
                "security_invoker=true"
            )
        elif rel.kind == "v" and not rel.security_invoker:
            violations.append(
                f"{rel.qualified} runs with its owner's rights (its options {list(rel.options)} "
                "lack security_invoker=true), so it reads its tables past their row-level "
                "security policies: CREATE OR REPLACE VIEW drops the option; set it with "
                f"ALTER VIEW {rel.qualified} SET (security_invoker = true)"
            )
    return violations


# --- 2. row-level security on every table of per-user rows ------------------------------------

#: Tables with row-level security and deliberately no policy for users: the application role
#: reaches none of their rows (docs/security.md, "Row-level security and the service role").
#: Partitions are not listed: every partition is policy-less by design (its rows are reached
#: through the parent, whose privileges and policies apply), derived from ``relispartition``.
DELIBERATELY_CLOSED = {
    # 0014: the DPoP replay store, written and read on the service path only.
    "dpop_jtis": "DPoP proof ids, used only on the service path (0014)",
    # 0016: its SQL conditions run with the owner's rights in auth.purge_expired_data().
    "retention_policies": "retention windows, SQL the owner's purge runs (0016, 0019)",
}


def tables_without_row_level_security(conn: Connection) -> list[str]:
    """Every table of per-user rows has row-level security, and policies unless closed on purpose.

    Which tables hold per-user rows is derived from the catalog
    (:func:`tests.invariants.catalog.per_user_tables`: ``auth.users``, a foreign key to a
    per-user table, or a ``user_id`` / ``*_user_id`` uuid column). Each must have row-level
    security enabled. A table with row-level security and no policy that binds the users
    (``TO PUBLIC``) shows them nothing: that is right for a partition (reached through its
    parent) and for the tables of :data:`DELIBERATELY_CLOSED`, and a mistake anywhere else.
    """
    rels = relations(conn)
    violations = []
    for table, reason in per_user_tables(conn).items():
        rel = rels[table]
        if not rel.row_security:
            violations.append(
                f"{rel.qualified} holds per-user rows ({reason}) but row-level security is "
                f"not enabled: every role granted the table reads every user's rows; run "
                f"ALTER TABLE {rel.qualified} ENABLE ROW LEVEL SECURITY and add its policies"
            )
    for rel in rels.values():
        if not rel.row_security or rel.user_policies or rel.is_partition:
            continue
        if rel.name not in DELIBERATELY_CLOSED:
            violations.append(
                f"{rel.qualified} has row-level security but no policy for users, so the "
                "application role reaches none of its rows: add its policies, or list it in "
                "DELIBERATELY_CLOSED with the reason it is closed"
            )
    for name in DELIBERATELY_CLOSED:
        if name in rels and rels[name].user_policies:
            violations.append(
                f"{SCHEMA}.{name} is listed as deliberately closed but has "
                f"{rels[name].user_policies} user policies: take it off DELIBERATELY_CLOSED"
            )
    return violations


# --- 4. digests, keyed hashes and envelopes have their shape checked --------------------------

#: A column is a candidate when it is ``bytea``, or a string column named like a stored secret.
SECRET_NAME = re.compile(r"(^|_)(hash|digest|encrypted|ciphertext|envelope|secret|token|hmac|mac)$")
STRING_TYPES = {"bytea", "text", "character varying", "character"}
#: The CHECKs that say a value has the shape authmodels writes (revision 0009).
SHAPE_FUNCTIONS = ("is_token_digest", "is_field_envelope")

#: Candidate columns that are not token digests, keyed hashes or envelopes, with the reason.
NOT_SECRET = {
    "webauthn_credentials.credential_id": "public: the authenticator's credential id, which "
    "the server sends to any client that starts a sign-in (WebAuthn allowCredentials)",
    "webauthn_credentials.cose_public_key": "public: the credential's COSE public key",
    "messages.content_encrypted": "an end-to-end ciphertext made by the clients with keys the "
    "server never holds (no server key id to check)",
    "messages.content_nonce": "the public AEAD nonce of an end-to-end ciphertext (its length is "
    "checked by ck_messages_version_2_is_encrypted)",
    "device_key_events.old_public_key_fingerprint": "public: SHA-256 of a public key",
    "device_key_events.new_public_key_fingerprint": "public: SHA-256 of a public key",
    "users.password_hash": "an Argon2id PHC string (or '!unusable'), not a keyed digest: "
    "PasswordHasher refuses any other format when it reads one (MalformedHashError)",
}

#: Secrets with a shape of their own: the CHECK that must guard each (a fragment of its
#: definition), with the reason the digest / envelope shape does not apply.
OTHER_SHAPES = {
    "key_exchanges.shared_secret_hash": (
        "octet_length(shared_secret_hash) = 32",
        "HMAC-SHA256 keyed with the exchange's shared secret, made by the clients: 32 bytes "
        "and no server key id",
    ),
    "password_history.password_hash": (
        "argon2id",
        "a password hash (PHC string) kept to refuse reuse, not a keyed digest",
    ),
}


def secret_columns_without_shape_check(conn: Connection) -> list[str]:
    """Every column storing a token/code digest, a keyed hash or an envelope has a shape CHECK.

    Candidates, derived from the catalog: every ``bytea`` column of a table of ``auth``, and
    every string column named like a stored secret (``*_hash``, ``*_digest``, ``*_encrypted``,
    ``*_secret``, ``*_token``, ...). Each must be guarded by a validated CHECK calling
    ``auth.is_token_digest(col)`` or ``auth.is_field_envelope(col)`` (so a plaintext written by
    mistake is refused), unless it is classified in :data:`NOT_SECRET` or :data:`OTHER_SHAPES`:
    a new ``bytea`` column fails here until someone decides what it is.
    """
    checks = check_constraints(conn)
    violations = []
    for column in _secret_candidates(conn):
        key = f"{column.table}.{column.name}"
        if key in NOT_SECRET:
            continue
        if key in OTHER_SHAPES:
            fragment, reason = OTHER_SHAPES[key]
            guards = [c for c in checks if c.table == column.table and fragment in c.definition]
            if not guards:
                violations.append(
                    f"{column.qualified} ({reason}) has no CHECK containing {fragment!r}"
                )
            violations += _not_validated(column, guards)
            continue
        guards = _shape_checks(checks, column)
        if not guards:
            violations.append(
                f"{column.qualified} ({column.type}): no CHECK verifies its shape, so any bytes "
                "are stored there, a plaintext token included (add CHECK "
                f"(auth.is_token_digest({column.name})) or is_field_envelope, NOT VALID then "
                "validated; or classify the column in NOT_SECRET / OTHER_SHAPES)"
            )
        violations += _not_validated(column, guards)
    return violations


def _secret_candidates(conn: Connection) -> list[Column]:
    return [
        c
        for c in columns(conn)
        if c.relkind in ("r", "p")
        and (c.base_type == "bytea" or (c.base_type in STRING_TYPES and SECRET_NAME.search(c.name)))
    ]


def _shape_checks(checks: list[CheckConstraint], column: Column) -> list[CheckConstraint]:
    calls = re.compile(
        rf"\b(?:{'|'.join(SHAPE_FUNCTIONS)})\(\s*\"?{re.escape(column.name)}\"?\s*\)"
    )
    return [c for c in checks if c.table == column.table and calls.search(c.definition)]


def _not_validated(column: Column, guards: list[CheckConstraint]) -> list[str]:
    return [
        f"{column.qualified}: CHECK {c.name} is NOT VALID, so rows written before it are "
        f"unchecked: ALTER TABLE {SCHEMA}.{c.table} VALIDATE CONSTRAINT {c.name}"
        for c in guards
        if not c.validated
    ]


# --- 5. no raw IP address or user agent --------------------------------------------------------

#: Names of columns that hold an IP address or a user agent, raw or hashed.
IP_OR_USER_AGENT = re.compile(
    r"(^|_)(ip|ips|ip_?addr(ess)?(es)?|remote_?addr|user_?agents?|ua)(_|$)", re.IGNORECASE
)
ADDRESS_TYPES = {"inet", "cidr", "macaddr", "macaddr8"}


def raw_ip_or_user_agent_columns(conn: Connection) -> list[str]:
    """No column of ``auth`` stores a raw IP address or user agent.

    No table or view column is of an address type (``inet``, ``cidr``, ...; domains and arrays
    unwrapped), and every column named like an IP address or a user agent (``ip``,
    ``*_ip_*``, ``ip_address``, ``user_agent``, ``ua_*``, ...) of a table is a keyed hash:
    ``bytea``, named ``*_hash``, with an ``auth.is_token_digest`` CHECK (seed 000 week 6: 100% of
    such data hashed with a key; an unkeyed or raw IPv4 address is enumerable in 2^32 guesses).
    View columns are checked through the tables they come from.
    """
    checks = check_constraints(conn)
    violations = []
    for column in columns(conn):
        kind = "view" if column.relkind in ("v", "m") else "table"
        if column.base_type in ADDRESS_TYPES:
            violations.append(
                f"{column.qualified} ({kind} column of type {column.type}) stores raw "
                "network addresses: store a keyed hash (PrivacyHasher) in a bytea *_hash column"
            )
            continue
        if not IP_OR_USER_AGENT.search(column.name):
            continue
        hashed = column.base_type == "bytea" and column.name.endswith("_hash")
        if not hashed:
            violations.append(
                f"{column.qualified} ({kind} column of type {column.type}) is named like an "
                "IP address or user agent and is not a keyed hash: store "
                "PrivacyHasher's digest in a bytea *_hash column with an "
                "auth.is_token_digest CHECK"
            )
        elif kind == "table" and not _shape_checks(checks, column):
            violations.append(
                f"{column.qualified} is a keyed hash of an IP address or user agent without "
                "an auth.is_token_digest CHECK: a raw value written by mistake would be stored"
            )
    return violations


# --- 5b. no raw message recipient ----------------------------------------------------------------

#: Names of columns that hold the recipient of a message (an e-mail address, a phone number).
RECIPIENT = re.compile(r"^(to|recipients?)(_|$)", re.IGNORECASE)


def raw_recipient_columns(conn: Connection) -> list[str]:
    """No column of ``auth`` stores the raw recipient of a message.

    A column named like a recipient (``to_email``, ``to_phone``, ``recipient``,
    ``recipient_*``...) is either its keyed hash (``bytea``, named ``*_hash``: the shape check
    of section 4 applies) or its masked form (named ``*_masked``, with a CHECK on that column
    that holds it to a masked pattern, one with ``\\*`` in it). Why: a delivery log written for
    every mail and text a service sends lists, raw, every address and number it ever wrote to
    (revision 0032); the hash answers "was anything sent to this address?", the masked form
    lets a person recognise it, neither lets a reader of a backup write to anyone.
    """
    checks = check_constraints(conn)
    violations = []
    for column in columns(conn):
        if column.relkind not in ("r", "p") or not RECIPIENT.search(column.name):
            continue
        if column.name.endswith("_hash") and column.base_type == "bytea":
            continue
        masked = column.name.endswith("_masked") and any(
            c.table == column.table and column.name in c.columns and "\\*" in c.definition
            for c in checks
        )
        if not masked:
            violations.append(
                f"{column.qualified} ({column.type}) is named like a message recipient and is "
                "neither a keyed hash (bytea *_hash with auth.is_token_digest) nor a masked "
                "form (*_masked with a CHECK of its masked pattern): a raw address or number "
                "would be stored"
            )
    return violations


# --- 6. privileges, ownership, function settings ----------------------------------------------


def definer_functions_without_pinned_search_path(conn: Connection) -> list[str]:
    """Every ``SECURITY DEFINER`` function of ``auth`` pins a safe ``search_path``.

    Such a function runs with its owner's rights: with the caller's ``search_path`` an
    unqualified name could resolve to an object the caller created. The setting must be
    present, name no schema others may create in (``public``, ``$user``), and list ``pg_temp``
    last (unlisted, it is searched first).
    """
    rows = conn.execute(
        text(
            "SELECT p.oid::regprocedure::text, "
            "       (SELECT substr(s, length('search_path=') + 1) "
            "          FROM unnest(p.proconfig) AS s WHERE s LIKE 'search_path=%') "
            "  FROM pg_proc AS p "
            f" WHERE p.pronamespace = {SCHEMA_OID} AND p.prosecdef "
            " ORDER BY 1"
        ),
        {"schema": SCHEMA},
    )
    violations = []
    for function, search_path in rows:
        if search_path is None:
            violations.append(
                f"{function} is SECURITY DEFINER without a pinned search_path: add "
                "SET search_path = pg_catalog, pg_temp"
            )
            continue
        schemas = [s.strip().strip('"') for s in search_path.split(",")]
        unsafe = [s for s in schemas if s in ("public", "$user")]
        if unsafe:
            violations.append(
                f"{function} is SECURITY DEFINER with search_path {search_path}, which names "
                f"{unsafe}: schemas other roles may create objects in"
            )
        if schemas[-1] != "pg_temp":
            violations.append(
                f"{function} is SECURITY DEFINER with search_path {search_path}: list pg_temp "
                "last (unlisted, it is searched first)"
            )
    return violations


def definer_functions_the_application_may_run(conn: Connection, roles: dict[str, str]) -> list[str]:
    """No role of ``roles`` may execute a ``SECURITY DEFINER`` function of ``auth`` that can
    write (``VOLATILE``, not a trigger function).

    Such a function runs as the owner, past row-level security and the privileges 0019 took
    back: the purge, the audit archival, the master-admin designation are the owner's
    maintenance (revision 0028 closed them to ``PUBLIC``). Read-only helpers (``STABLE``: the
    conversation membership test, the statistics) stay callable; trigger functions cannot be
    called directly.
    """
    functions = conn.execute(
        text(
            "SELECT p.oid, p.oid::regprocedure::text FROM pg_proc AS p "
            f" WHERE p.pronamespace = {SCHEMA_OID} AND p.prosecdef AND p.provolatile = 'v' "
            "   AND p.prorettype <> 'trigger'::regtype ORDER BY 2"
        ),
        {"schema": SCHEMA},
    ).all()
    return [
        f"the {label} role may execute {name}, which runs as the owner and can write: revoke "
        "EXECUTE from PUBLIC (the owner's maintenance)"
        for label, role in roles.items()
        for oid, name in functions
        if conn.scalar(
            text("SELECT has_function_privilege(:r, CAST(:f AS oid), 'EXECUTE')"),
            {"r": role, "f": oid},
        )
    ]


def report_aggregates_open_beyond_report_roles(
    conn: Connection, roles: dict[str, str]
) -> list[str]:
    """The report's aggregates (``auth.report_*``, ``SECURITY DEFINER``) only read, and only
    report roles may run them: not ``PUBLIC``, not a role of ``roles``.

    Each reads every user's rows as the owner and returns aggregates (revision 0030); run by
    the application role, it would show one user's requests what every other user's rows add
    up to. ``auth.grant_report_role`` grants them to a role that reads nothing else.
    """
    functions = conn.execute(
        text(
            "SELECT p.oid, p.oid::regprocedure::text, p.provolatile, "
            "       p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) AS a "
            "                                    WHERE a.grantee = 0) "
            "  FROM pg_proc AS p "
            f" WHERE p.pronamespace = {SCHEMA_OID} AND p.prosecdef "
            "   AND p.proname LIKE 'report\\_%' ORDER BY 2"
        ),
        {"schema": SCHEMA},
    ).all()
    violations = []
    for oid, name, volatility, public in functions:
        if volatility == "v":
            violations.append(
                f"{name} is a report aggregate that may write (VOLATILE): declare it STABLE"
            )
        if public:
            violations.append(
                f"PUBLIC may execute {name}, which reads every user's rows as the owner: "
                "REVOKE EXECUTE ... FROM PUBLIC (auth.grant_report_role grants it)"
            )
        violations += [
            f"the {label} role may execute {name}, which reads every user's rows as the "
            "owner: revoke it (only report roles run the aggregates)"
            for label, role in roles.items()
            if conn.scalar(
                text("SELECT has_function_privilege(:r, CAST(:f AS oid), 'EXECUTE')"),
                {"r": role, "f": oid},
            )
        ]
    return violations


#: The table privileges PostgreSQL knows (``has_table_privilege`` checks each).
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
#: Tables the application and service roles may only read (revision 0019).
READ_ONLY = ("retention_policies", "audit_logs_archive")
#: Tables they may read and append to, never change (the audit trail, revision 0006).
APPEND_ONLY = ("audit_logs",)
#: Tables they may not touch at all: the quarantine keeps full copies of rows revisions could
#: not convert (0002); Alembic's version table decides which revisions run.
CLOSED = ("quarantine", "alembic_version")


def application_role_privileges_beyond_the_documented(
    conn: Connection, roles: dict[str, str]
) -> list[str]:
    """The application and service roles hold only the privileges docs/security.md states.

    For each role of ``roles`` (label -> role name), on every table of ``auth``:

    - nothing on ``quarantine`` or ``alembic_version``, nor on any partition (its rows are
      reached through the parent, whose privileges and policies apply);
    - only ``SELECT`` on ``retention_policies`` and ``audit_logs_archive``, only ``SELECT,
      INSERT`` on ``audit_logs``;
    - never ``TRUNCATE`` (it ignores row-level security), ``REFERENCES`` or ``TRIGGER``;
    - no ``CREATE`` on schema ``auth`` (an object of theirs there could shadow ours), and no
      table, view or function of ``auth`` owned by them (an owner is not bound by the
      policies).
    """
    rels = relations(conn)
    violations = []
    for label, role in roles.items():
        for rel in rels.values():
            if rel.kind not in ("r", "p"):
                continue
            held = {
                p
                for p in TABLE_PRIVILEGES
                if conn.scalar(
                    text("SELECT has_table_privilege(:r, CAST(:t AS oid), :p)"),
                    {"r": role, "t": rel.oid, "p": p},
                )
            }
            if rel.name in CLOSED or rel.is_partition:
                allowed: set[str] = set()
                why = "a partition" if rel.is_partition else "closed to the application"
            elif rel.name in READ_ONLY:
                allowed, why = {"SELECT"}, "read-only for the application (0019)"
            elif rel.name in APPEND_ONLY:
                allowed, why = {"SELECT", "INSERT"}, "append-only for the application"
            else:
                allowed, why = {"SELECT", "INSERT", "UPDATE", "DELETE"}, "row-level security"
            extra = sorted(held - allowed, key=TABLE_PRIVILEGES.index)
            if extra:
                violations.append(
                    f"the {label} role holds {', '.join(extra)} on {rel.qualified} ({why}; "
                    f"allowed: {', '.join(sorted(allowed, key=TABLE_PRIVILEGES.index)) or 'none'})"
                )
        if conn.scalar(
            text("SELECT has_schema_privilege(:r, :schema, 'CREATE')"),
            {"r": role, "schema": SCHEMA},
        ):
            violations.append(f"the {label} role may CREATE objects in schema {SCHEMA}")
        owned = conn.scalars(
            text(
                "SELECT :schema || '.' || c.relname FROM pg_class AS c "
                f" WHERE c.relnamespace = {SCHEMA_OID} AND pg_has_role(:r, c.relowner, "
                "       'USAGE') "
                "UNION ALL "
                "SELECT p.oid::regprocedure::text FROM pg_proc AS p "
                f" WHERE p.pronamespace = {SCHEMA_OID} AND pg_has_role(:r, p.proowner, "
                "       'USAGE') ORDER BY 1"
            ),
            {"r": role, "schema": SCHEMA},
        ).all()
        violations += [
            f"the {label} role owns {name} (or is a member of its owner): row-level security "
            "does not bind an owner"
            for name in owned
        ]
    return violations
