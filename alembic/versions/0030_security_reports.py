"""Security reports: the detection, metric and compliance queries in the database, and a report
role that reads their aggregates only.

Issue 16; seed 004's alerts and key metrics, seed 002's dashboard, seed 000's success metrics,
seed 001's monitoring, written against the hardened schema (``login_attempts``,
``security_events``, keyed hashes) rather than the seeds' pre-hardening columns.

- One **invoker-rights** function per question, in schema ``auth``, with its thresholds as
  parameters and the seeds' defaults (:data:`QUERIES`): ``auth.brute_force()``,
  ``auth.credential_stuffing()``, ``auth.session_anomalies()``, ``auth.login_metrics()``, ...
  Executable by anyone, they read with the caller's rights: the owner sees every row, the
  application role what row-level security shows it (one user's rows, or none), the service
  role every row.
- For each, ``auth.report_<name>()``: ``SECURITY DEFINER`` (it reads every row, as the owner),
  ``STABLE`` (it only reads), ``search_path`` pinned, closed to ``PUBLIC``. It calls the
  invoker function and returns aggregates only: no e-mail address, user id or keyed hash (a
  credential-stuffing source becomes a count, a failed-login source a rank).
- ``auth.grant_report_role(role)`` (owner only) gives a role ``USAGE`` on the schema and
  ``EXECUTE`` on the ``report_*`` functions, nothing else; it refuses a superuser, a
  ``BYPASSRLS`` role, the owner, and a role that may read a table of ``auth`` (an application
  or service role, or a member of one). ``auth.revoke_report_role(role)`` takes ``EXECUTE``
  back. Run ``grant_report_role`` again after an upgrade that adds report functions.
- Six indexes, built concurrently (:data:`INDEXES`), so that each query reads its window from
  one index; ``ix_security_events_created_at_summary`` replaces 0010's
  ``ix_security_events_created_at_severity`` (dropped concurrently once the new one is built).

Locks: none on a table but the index builds and the drop (``SHARE UPDATE EXCLUSIVE``: reads
and writes go on).

Downgrade: the functions and indexes are dropped (0010's index built again first); roles keep
their ``USAGE`` on the schema.
Nothing else is lost. Docs: ``docs/phases/0030-security-reports.md`` and
``docs/detection.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from alembic import op

from authmodels.revision_ops import create_index_concurrently, drop_index_concurrently

revision: str = "0030_security_reports"
down_revision: str | Sequence[str] | None = "0029_one_purge_engine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class Query(NamedTuple):
    """One invoker-rights query and the aggregate its ``report_`` wrapper returns."""

    name: str
    arguments: str
    """The parameters, with the seeds' defaults (the wrapper has the same)."""
    returns: str
    body: str
    comment: str
    language: str = "sql"
    report_returns: str | None = None
    """What ``auth.report_<name>`` returns (None: the same as the query)."""
    report_select: str = "*"
    """The select list over ``auth.<name>(...) AS q`` in the wrapper."""

    @property
    def call(self) -> str:
        """The wrapper's arguments, passed on by name."""
        names = [a.split()[0] for a in self.arguments.split(",") if a.strip()]
        return ", ".join(f"{n} => {n}" for n in names)

    @property
    def signature(self) -> str:
        """The argument types, as ``DROP FUNCTION`` names them."""
        return ", ".join(a.split()[1] for a in self.arguments.split(",") if a.strip())


#: A live session: what ``validate_session`` accepts, before its idle check (the rotation and
#: revocation flows say the same).
LIVE_SESSION = "s.is_active AND s.revoked_at IS NULL AND s.expires_at > now()"

# fmt: off
QUERIES: list[Query] = [
    Query(
        "brute_force",
        "in_last interval DEFAULT '5 minutes', more_than integer DEFAULT 100",
        "TABLE (window_start timestamptz, failed_attempts bigint, sources bigint, "
        "identifiers bigint, threshold integer, detected boolean)",
        """
        SELECT now() - in_last, count(*), count(DISTINCT a.ip_hash),
               count(DISTINCT a.identifier_hash), more_than, count(*) > more_than
          FROM auth.login_attempts AS a
         WHERE a.created_at > now() - in_last AND a.attempt_result <> 'success'
        """,
        "Seed 004: brute force, more than more_than failed logins in the last in_last.",
    ),
    Query(
        "credential_stuffing",
        "in_last interval DEFAULT '1 hour', more_than integer DEFAULT 20",
        "TABLE (ip_hash bytea, identifiers bigint, attempts bigint, failed_attempts bigint, "
        "first_attempt_at timestamptz, last_attempt_at timestamptz)",
        """
        SELECT a.ip_hash, count(DISTINCT a.identifier_hash), count(*),
               count(*) FILTER (WHERE a.attempt_result <> 'success'),
               min(a.created_at), max(a.created_at)
          FROM auth.login_attempts AS a
         WHERE a.created_at > now() - in_last AND a.ip_hash IS NOT NULL
         GROUP BY a.ip_hash
        HAVING count(DISTINCT a.identifier_hash) > more_than
         ORDER BY 2 DESC, 3 DESC
        """,
        "Seed 004: credential stuffing, each client address (keyed hash) that tried more than "
        "more_than identifiers in the last in_last.",
        report_returns="TABLE (sources bigint, most_identifiers bigint, attempts bigint, "
        "threshold integer)",
        report_select="count(*), coalesce(max(q.identifiers), 0), "
        "coalesce(sum(q.attempts), 0)::bigint, more_than",
    ),
    Query(
        "session_anomalies",
        "more_than integer DEFAULT 10",
        "TABLE (user_id uuid, live_sessions bigint)",
        f"""
        SELECT s.user_id, count(*) FROM auth.sessions AS s
         WHERE {LIVE_SESSION}
         GROUP BY s.user_id HAVING count(*) > more_than
         ORDER BY 2 DESC
        """,
        "Seed 004: anomalous session count, each user with more than more_than live sessions.",
        report_returns="TABLE (users bigint, most_live_sessions bigint, threshold integer)",
        report_select="count(*), coalesce(max(q.live_sessions), 0), more_than",
    ),
    Query(
        "sessions_per_user",
        "",
        "TABLE (live_sessions bigint, users bigint)",
        f"""
        SELECT n, count(*) FROM (
            SELECT count(*) AS n FROM auth.sessions AS s WHERE {LIVE_SESSION} GROUP BY s.user_id
        ) AS per_user
         GROUP BY n ORDER BY n
        """,
        "Seed 004: sessions per user, the distribution: how many users have n live sessions.",
    ),
    Query(
        "login_metrics",
        "in_last interval DEFAULT '1 day'",
        "TABLE (attempts bigint, successes bigint, failures bigint, success_rate numeric, "
        "failure_rate numeric, locked_accounts bigint, live_accounts bigint, "
        "lockout_rate numeric)",
        """
        WITH tried AS (
            SELECT count(*) AS attempts,
                   count(*) FILTER (WHERE a.attempt_result = 'success') AS successes
              FROM auth.login_attempts AS a WHERE a.created_at > now() - in_last
        ), locked AS (
            SELECT count(DISTINCT e.user_id) AS accounts FROM auth.security_events AS e
             WHERE e.event_type = 'login.account_locked' AND e.created_at > now() - in_last
        ), live AS (
            SELECT count(*) AS accounts FROM auth.users AS u WHERE u.deleted_at IS NULL
        )
        SELECT tried.attempts, tried.successes, tried.attempts - tried.successes,
               round(tried.successes::numeric / nullif(tried.attempts, 0), 4),
               round((tried.attempts - tried.successes)::numeric / nullif(tried.attempts, 0), 4),
               locked.accounts, live.accounts,
               round(locked.accounts::numeric / nullif(live.accounts, 0), 6)
          FROM tried, locked, live
        """,
        "Seed 004's key metrics over the last in_last: authentication success rate (target "
        "above 95%), failed-login rate (below 5%), lockout rate (accounts locked / live "
        "accounts, below 1% a day).",
    ),
    Query(
        "failed_logins_by_source",
        "in_last interval DEFAULT '24 hours', top integer DEFAULT 10",
        "TABLE (ip_hash bytea, failed_attempts bigint, identifiers bigint, "
        "last_attempt_at timestamptz)",
        """
        SELECT a.ip_hash, count(*), count(DISTINCT a.identifier_hash), max(a.created_at)
          FROM auth.login_attempts AS a
         WHERE a.created_at > now() - in_last AND a.attempt_result <> 'success'
           AND a.ip_hash IS NOT NULL
         GROUP BY a.ip_hash
         ORDER BY 2 DESC, 4 DESC
         LIMIT top
        """,
        "Seed 002: failed logins by source (keyed hash of the address) in the last in_last, the "
        "top sources.",
        report_returns="TABLE (rank bigint, failed_attempts bigint, identifiers bigint)",
        report_select="row_number() OVER (ORDER BY q.failed_attempts DESC, "
        "q.last_attempt_at DESC), q.failed_attempts, q.identifiers",
    ),
    Query(
        "login_attempts_over_time",
        "in_last interval DEFAULT '24 hours', bucket interval DEFAULT '1 hour'",
        "TABLE (bucket_start timestamptz, successes bigint, failures bigint)",
        """
        WITH counted AS (
            SELECT date_bin(bucket, a.created_at, timestamptz '2000-01-01 00:00+00') AS b,
                   count(*) FILTER (WHERE a.attempt_result = 'success') AS successes,
                   count(*) FILTER (WHERE a.attempt_result <> 'success') AS failures
              FROM auth.login_attempts AS a WHERE a.created_at > now() - in_last
             GROUP BY 1
        )
        SELECT g.b, coalesce(c.successes, 0), coalesce(c.failures, 0)
          FROM generate_series(date_bin(bucket, now() - in_last,
                                        timestamptz '2000-01-01 00:00+00'),
                               now(), bucket) AS g (b)
          LEFT JOIN counted AS c ON c.b = g.b
         ORDER BY 1
        """,
        "Login attempts in the last in_last, per bucket (UTC-aligned): successes and failures.",
    ),
    Query(
        "security_events_summary",
        "in_last interval DEFAULT '7 days'",
        "TABLE (severity auth.security_event_severity, event_type text, events bigint, "
        "last_event_at timestamptz)",
        """
        SELECT e.severity, e.event_type, count(*), max(e.created_at)
          FROM auth.security_events AS e WHERE e.created_at > now() - in_last
         GROUP BY 1, 2 ORDER BY 1 DESC, 3 DESC
        """,
        "Seed 002: security events by severity (and type) in the last in_last.",
    ),
    Query(
        "security_events_over_time",
        "in_last interval DEFAULT '7 days', bucket interval DEFAULT '1 day'",
        "TABLE (bucket_start timestamptz, severity auth.security_event_severity, events bigint)",
        """
        WITH counted AS (
            SELECT date_bin(bucket, e.created_at, timestamptz '2000-01-01 00:00+00') AS b,
                   e.severity, count(*) AS events
              FROM auth.security_events AS e WHERE e.created_at > now() - in_last
             GROUP BY 1, 2
        )
        SELECT g.b, s.severity, coalesce(c.events, 0)
          FROM generate_series(date_bin(bucket, now() - in_last,
                                        timestamptz '2000-01-01 00:00+00'),
                               now(), bucket) AS g (b)
         CROSS JOIN unnest(enum_range(NULL::auth.security_event_severity)) AS s (severity)
          LEFT JOIN counted AS c ON c.b = g.b AND c.severity = s.severity
         ORDER BY 1, 2
        """,
        "Security events in the last in_last, per bucket (UTC-aligned) and severity.",
    ),
    Query(
        "delivery_summary",
        "in_last interval DEFAULT '30 days'",
        "TABLE (channel text, status auth.delivery_status, messages bigint)",
        """
        SELECT 'email', d.status, count(*) FROM auth.email_delivery_logs AS d
         WHERE d.created_at > now() - in_last GROUP BY 2
        UNION ALL
        SELECT 'sms', d.status, count(*) FROM auth.sms_delivery_logs AS d
         WHERE d.created_at > now() - in_last GROUP BY 2
         ORDER BY 1, 2
        """,
        "Seed 002: e-mail and SMS messages by delivery status, created in the last in_last.",
    ),
    Query(
        "sms_costs",
        "in_last interval DEFAULT '30 days'",
        "TABLE (currency text, messages bigint, total_cost numeric)",
        """
        SELECT d.currency, count(*), sum(d.cost) FROM auth.sms_delivery_logs AS d
         WHERE d.created_at > now() - in_last
         GROUP BY 1 ORDER BY 1 NULLS LAST
        """,
        "Seed 002: SMS cost over the last in_last, per currency (messages without a price: "
        "currency NULL).",
    ),
    Query(
        "dpop_coverage",
        "",
        "TABLE (token_kind text, live bigint, dpop_bound bigint)",
        f"""
        SELECT 'session', count(*), count(s.dpop_jkt) FROM auth.sessions AS s
         WHERE {LIVE_SESSION}
        UNION ALL
        SELECT 'refresh_token', count(*), count(r.dpop_jkt) FROM auth.refresh_tokens AS r
         WHERE r.expires_at > now() AND r.used_at IS NULL AND r.revoked_at IS NULL
        UNION ALL
        SELECT 'access_token', count(*), count(t.dpop_jkt) FROM auth.access_tokens AS t
         WHERE t.expires_at > now() AND t.revoked_at IS NULL
        """,
        "Seed 000: live sessions, refresh and access tokens, and how many are DPoP-bound "
        "(RFC 9449).",
    ),
    Query(
        "retention_backlog",
        "at_most bigint DEFAULT 100000, grace interval DEFAULT '1 day'",
        "TABLE (policy text, table_name text, cutoff timestamptz, rows_past_window bigint, "
        "rows_overdue bigint)",
        r"""
        DECLARE
            p record;
            condition text;
            due timestamptz;
            count_sql text;
        BEGIN
            -- auth.retention_policies shows its rows to the owner (and service roles) only
            FOR p IN SELECT * FROM auth.retention_policies ORDER BY position, name LOOP
                due := now() - p.keep_for;
                IF p.partitioned THEN  -- whole months go: those that ended before the cutoff
                    due := date_trunc('month', due, 'UTC');
                END IF;
                condition := replace(p.expired, ':' || 'cutoff', '$1');
                count_sql := format('SELECT count(*) FROM (SELECT 1 FROM %s WHERE %s LIMIT %s) s',
                                    p.table_name, condition, at_most);
                policy := p.name;
                table_name := p.table_name;
                cutoff := due;
                EXECUTE count_sql INTO rows_past_window USING due;
                EXECUTE count_sql INTO rows_overdue USING due - grace;
                RETURN NEXT;
            END LOOP;
        END;
        """,
        "Seed 000's retention compliance: rows each retention policy no longer keeps "
        "(counted up to at_most), and those past their window by more than grace (the purge "
        "is not running, or not keeping up).",
        language="plpgsql",
    ),
    Query(
        "partitions_ahead",
        "",
        "TABLE (table_name text, months_ahead integer, current_month boolean, "
        "default_partition_rows bigint)",
        r"""
        DECLARE
            t record;
            this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
        BEGIN
            FOR t IN
                SELECT pt.partrelid, pt.partdefid, n.nspname
                  FROM pg_partitioned_table AS pt
                  JOIN pg_class AS c ON c.oid = pt.partrelid
                  JOIN pg_namespace AS n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'auth' AND NOT c.relispartition
                 ORDER BY c.relname
            LOOP
                table_name := t.partrelid::regclass::text;
                current_month := auth.month_is_attached(t.partrelid, t.nspname, this_month);
                SELECT coalesce(min(k) - 1, 120) INTO months_ahead
                  FROM generate_series(1, 120) AS k
                 WHERE NOT auth.month_is_attached(
                     t.partrelid, t.nspname, (this_month + make_interval(months => k))::date);
                default_partition_rows := NULL;  -- unknown to a role that may not read it
                IF t.partdefid <> 0 AND has_table_privilege(t.partdefid, 'SELECT') THEN
                    EXECUTE format('SELECT count(*) FROM %s', t.partdefid::regclass)
                       INTO default_partition_rows;
                END IF;
                RETURN NEXT;
            END LOOP;
        END;
        """,
        "Monthly partitions of the partitioned logs: whether the current month has its own, "
        "how many consecutive months after it have theirs, and the rows waiting in the default "
        "partition (NULL for a role that may not read it).",
        language="plpgsql",
    ),
    Query(
        "step_up_usage",
        "in_last interval DEFAULT '1 day'",
        "TABLE (issued bigint, used bigint, expired_unused bigint, reuse_refused bigint)",
        """
        SELECT count(*) FILTER (WHERE t.created_at > now() - in_last),
               count(*) FILTER (WHERE t.used_at > now() - in_last),
               count(*) FILTER (WHERE t.used_at IS NULL AND t.expires_at <= now()),
               (SELECT count(*) FROM auth.security_events AS e
                 WHERE e.event_type = 'step_up.token_reused' AND e.created_at > now() - in_last)
          FROM auth.step_up_tokens AS t
         WHERE t.expires_at > now() - in_last  -- a token lives 15 minutes at most
        """,
        "Seed 001: step-up tokens issued, used, expired unused in the last in_last, and reuses "
        "refused.",
    ),
    Query(
        "legacy_password_hashes",
        "",
        "TABLE (scheme text, accounts bigint)",
        r"""
        SELECT CASE WHEN u.password_hash ~ '^\$2[abxy]?\$' THEN 'bcrypt'
                    WHEN u.password_hash ~ '^\$argon2(i|d)\$' THEN 'argon2i/argon2d'
                    WHEN u.password_hash ~ '^\$?pbkdf2' THEN 'pbkdf2'
                    ELSE 'other' END,
               count(*)
          FROM auth.users AS u
         WHERE u.deleted_at IS NULL AND u.password_hash NOT LIKE '$argon2id$%'
           AND u.password_hash NOT LIKE '!%'
         GROUP BY 1 ORDER BY 1
        """,
        "Live accounts whose password hash is not argon2id (nor unusable: passkey-only), by "
        "scheme: rehashed at their next login.",
    ),
    Query(
        "protection_coverage",
        "",
        "TABLE (metric text, covered bigint, total bigint, uncovered text[])",
        r"""
        WITH cols AS (
            SELECT c.oid AS rel, c.relname, a.attnum, a.attname,
                   format_type(a.atttypid, NULL) AS type_name
              FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid
             WHERE c.relnamespace = 'auth'::regnamespace AND c.relkind IN ('r', 'p')
               AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
        ), digest_checked AS (
            -- a validated CHECK on the column alone that calls auth.is_token_digest on it
            SELECT k.conrelid AS rel, a.attname
              FROM pg_constraint AS k
              JOIN pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
             WHERE k.connamespace = 'auth'::regnamespace AND k.contype = 'c'
               AND k.convalidated AND cardinality(k.conkey) = 1
               AND strpos(pg_get_constraintdef(k.oid),
                          'auth.is_token_digest(' || quote_ident(a.attname) || ')') > 0
        ), candidates AS (
            -- the credentials authmodels issues, stored as digests; a column named like a
            -- credential in clear
            SELECT 'token_digests' AS metric, cols.*
              FROM cols
             WHERE (type_name = 'bytea' AND attname ~ '(^|_)(token|code|key)_hash$')
                OR attname ~ '(^|_)(token|code|api_key|secret)$'
            UNION ALL
            -- network addresses and user agents: keyed hashes only
            SELECT 'ip_and_user_agent_hashes', cols.*
              FROM cols
             WHERE attname ~* '(^|_)(ip|ips|ip_?addr(ess)?(es)?|remote_?addr|user_?agents?|ua)(_|$)'
                OR type_name IN ('inet', 'cidr')
        ), per_user AS (
            SELECT c.oid AS rel, c.relname, c.relrowsecurity
              FROM pg_class AS c
             WHERE c.relnamespace = 'auth'::regnamespace AND c.relkind IN ('r', 'p')
               AND NOT c.relispartition
               AND (c.oid = 'auth.users'::regclass
                    OR EXISTS (SELECT 1 FROM pg_attribute AS a
                                WHERE a.attrelid = c.oid AND a.attnum > 0
                                  AND NOT a.attisdropped AND a.atttypid = 'uuid'::regtype
                                  AND a.attname ~ '(^|_)user_id$')
                    OR EXISTS (SELECT 1 FROM pg_constraint AS f
                                WHERE f.conrelid = c.oid AND f.contype = 'f'
                                  AND f.confrelid = 'auth.users'::regclass))
        )
        SELECT k.metric,
               count(*) FILTER (WHERE k.type_name = 'bytea' AND d.rel IS NOT NULL),
               count(*),
               coalesce(array_agg(k.relname || '.' || k.attname ORDER BY k.relname, k.attname)
                        FILTER (WHERE k.type_name <> 'bytea' OR d.rel IS NULL), '{}')
          FROM candidates AS k
          LEFT JOIN digest_checked AS d ON d.rel = k.rel AND d.attname = k.attname
         GROUP BY k.metric
        UNION ALL
        SELECT 'row_level_security', count(*) FILTER (WHERE p.relrowsecurity), count(*),
               coalesce(array_agg(p.relname ORDER BY p.relname)
                        FILTER (WHERE NOT p.relrowsecurity), '{}')
          FROM per_user AS p
        ORDER BY 1
        """,
        "Seed 000's protection metrics, read from the catalog: token columns stored only as "
        "keyed digests (a validated auth.is_token_digest CHECK), address and user-agent columns "
        "stored only as keyed hashes, tables of per-user rows under row-level security; with "
        "the columns or tables that are not.",
    ),
    Query(
        "audit_coverage",
        "in_last interval DEFAULT '1 day'",
        "TABLE (action text, performed bigint, audited bigint)",
        """
        SELECT 'session_created', count(*),
               count(*) FILTER (WHERE s.id::text IN (
                   SELECT a.details ->> 'session_id' FROM auth.audit_logs AS a
                    WHERE a.event_type = 'login' AND a.created_at >= now() - in_last))
          FROM auth.sessions AS s WHERE s.created_at > now() - in_last
        """,
        "Seed 000's audit coverage: sessions created in the last in_last, and how many have "
        "the login entry of auth.audit_logs that names them (every flow that creates a session "
        "writes one in the same transaction).",
    ),
]
# fmt: on

#: Helper of ``partitions_ahead``: whether the month has an attached partition of ``parent``.
MONTH_IS_ATTACHED = """
CREATE FUNCTION auth.month_is_attached(parent regclass, parent_schema name, month date)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_inherits AS i
         WHERE i.inhparent = parent AND NOT i.inhdetachpending
           AND i.inhrelid = to_regclass(format('%I.%I', parent_schema,
                                               auth.month_partition_name(parent, month)))
    )
$$"""

GRANT_REPORT_ROLE = r"""
CREATE FUNCTION auth.grant_report_role(role_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    f regprocedure;
    readable text;
BEGIN
    SELECT rolsuper, rolbypassrls INTO r FROM pg_roles WHERE rolname = role_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role % does not exist: create it first (CREATE ROLE % LOGIN ...)',
            role_name, role_name;
    END IF;
    IF r.rolsuper OR r.rolbypassrls THEN
        RAISE EXCEPTION 'role % reads every row (superuser or BYPASSRLS): a report role must '
            'see aggregates only; use an ordinary role', role_name;
    END IF;
    IF pg_has_role(role_name, (SELECT relowner FROM pg_class
                                WHERE oid = 'auth.users'::regclass), 'USAGE') THEN
        RAISE EXCEPTION 'role % owns the auth tables (or is a member of their owner): a report '
            'role must see aggregates only; use another role', role_name;
    END IF;
    SELECT c.relname INTO readable FROM pg_class AS c
     WHERE c.relnamespace = 'auth'::regnamespace AND c.relkind IN ('r', 'p', 'v')
       AND has_any_column_privilege(role_name, c.oid, 'SELECT')
     ORDER BY c.relname LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'role % may read auth.% (an application or service role, or a member '
            'of one): a report role must see aggregates only; use a role of its own',
            role_name, readable;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA auth TO %I', role_name);
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc AS p
         WHERE p.pronamespace = 'auth'::regnamespace AND p.proname LIKE 'report\_%'
           AND p.prosecdef
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, role_name);
    END LOOP;
END;
$$"""

REVOKE_REPORT_ROLE = r"""
CREATE FUNCTION auth.revoke_report_role(role_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc AS p
         WHERE p.pronamespace = 'auth'::regnamespace AND p.proname LIKE 'report\_%'
           AND p.prosecdef
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %I', f, role_name);
    END LOOP;
END;
$$"""

#: (name, table, columns, included columns, where) built concurrently: each query reads an index alone (an
#: index-only scan) where it would otherwise visit every row of its window.
INDEXES = [
    # live sessions per user (anomalies, distribution) and their DPoP binding
    (
        "ix_sessions_live_user_id",
        "sessions",
        "user_id",
        "expires_at, dpop_jkt",
        "is_active AND revoked_at IS NULL",
    ),
    (
        "ix_refresh_tokens_live_expires_at",
        "refresh_tokens",
        "expires_at",
        "dpop_jkt",
        "used_at IS NULL AND revoked_at IS NULL",
    ),
    (
        "ix_access_tokens_live_expires_at",
        "access_tokens",
        "expires_at",
        "dpop_jkt",
        "revoked_at IS NULL",
    ),
    # security events of a window by severity and type
    (
        "ix_security_events_created_at_summary",
        "security_events",
        "created_at",
        "severity, event_type",
        None,
    ),
    # the sessions a window created (audit coverage)
    ("ix_sessions_created_at", "sessions", "created_at", None, None),
    # live accounts whose hash is not argon2id: what is left to rehash
    (
        "ix_users_legacy_password_hash",
        "users",
        "id",
        None,
        "deleted_at IS NULL AND password_hash NOT LIKE '$argon2id$%' "
        "AND password_hash NOT LIKE '!%'",
    ),
]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _query(q: Query) -> list[str]:
    return [
        f"CREATE FUNCTION auth.{q.name}({q.arguments}) RETURNS {q.returns}\n"
        f"LANGUAGE {q.language} STABLE AS $$\n{q.body}\n$$",
        f"COMMENT ON FUNCTION auth.{q.name}({q.signature}) IS {_quote(q.comment)}",
    ]


def _report(q: Query) -> list[str]:
    name = f"auth.report_{q.name}"
    return [
        f"CREATE FUNCTION {name}({q.arguments}) RETURNS {q.report_returns or q.returns}\n"
        "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$\n"
        f"    SELECT {q.report_select} FROM auth.{q.name}({q.call}) AS q\n$$",
        # closed before anyone can call it: the report role gets it from grant_report_role
        f"REVOKE ALL ON FUNCTION {name}({q.signature}) FROM PUBLIC",
        f"COMMENT ON FUNCTION {name}({q.signature}) IS "
        f"{_quote(f'auth.{q.name}() for a report role: aggregates only, every row read.')}",
    ]


#: Replaced by ``ix_security_events_created_at_summary``, which serves every query it served (the
#: same leading column, ``severity`` included): two indexes would cost every insert twice.
REPLACED = ("ix_security_events_created_at_severity", "security_events", "created_at, severity")


def upgrade() -> None:
    op.execute(MONTH_IS_ATTACHED)
    for q in QUERIES:
        for statement in [*_query(q), *_report(q)]:
            op.execute(statement)
    op.execute(GRANT_REPORT_ROLE)
    op.execute(REVOKE_REPORT_ROLE)
    for function in ("grant_report_role(text)", "revoke_report_role(text)"):
        op.execute(f"REVOKE ALL ON FUNCTION auth.{function} FROM PUBLIC")
    for name, table, columns, include, where in INDEXES:
        create_index_concurrently(name, table, columns, include=include, where=where)
    drop_index_concurrently(REPLACED[0])


def downgrade() -> None:
    create_index_concurrently(*REPLACED)
    for name, *_ in reversed(INDEXES):
        drop_index_concurrently(name)
    op.execute("DROP FUNCTION auth.revoke_report_role(text)")
    op.execute("DROP FUNCTION auth.grant_report_role(text)")
    for q in reversed(QUERIES):
        op.execute(f"DROP FUNCTION auth.report_{q.name}({q.signature})")
        op.execute(f"DROP FUNCTION auth.{q.name}({q.signature})")
    op.execute("DROP FUNCTION auth.month_is_attached(regclass, name, date)")
