SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0030_security_reports -> 0029_one_purge_engine

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_security_events_created_at_severity ON auth.security_events (created_at, severity);

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_users_legacy_password_hash;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_sessions_created_at;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_security_events_created_at_summary;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_access_tokens_live_expires_at;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_refresh_tokens_live_expires_at;

BEGIN;

COMMIT;

DROP INDEX CONCURRENTLY IF EXISTS auth.ix_sessions_live_user_id;

BEGIN;

DROP FUNCTION auth.revoke_report_role(text);

DROP FUNCTION auth.grant_report_role(text);

DROP FUNCTION auth.report_audit_coverage(interval);

DROP FUNCTION auth.audit_coverage(interval);

DROP FUNCTION auth.report_protection_coverage();

DROP FUNCTION auth.protection_coverage();

DROP FUNCTION auth.report_legacy_password_hashes();

DROP FUNCTION auth.legacy_password_hashes();

DROP FUNCTION auth.report_step_up_usage(interval);

DROP FUNCTION auth.step_up_usage(interval);

DROP FUNCTION auth.report_partitions_ahead();

DROP FUNCTION auth.partitions_ahead();

DROP FUNCTION auth.report_retention_backlog(bigint, interval);

DROP FUNCTION auth.retention_backlog(bigint, interval);

DROP FUNCTION auth.report_dpop_coverage();

DROP FUNCTION auth.dpop_coverage();

DROP FUNCTION auth.report_sms_costs(interval);

DROP FUNCTION auth.sms_costs(interval);

DROP FUNCTION auth.report_delivery_summary(interval);

DROP FUNCTION auth.delivery_summary(interval);

DROP FUNCTION auth.report_security_events_over_time(interval, interval);

DROP FUNCTION auth.security_events_over_time(interval, interval);

DROP FUNCTION auth.report_security_events_summary(interval);

DROP FUNCTION auth.security_events_summary(interval);

DROP FUNCTION auth.report_login_attempts_over_time(interval, interval);

DROP FUNCTION auth.login_attempts_over_time(interval, interval);

DROP FUNCTION auth.report_failed_logins_by_source(interval, integer);

DROP FUNCTION auth.failed_logins_by_source(interval, integer);

DROP FUNCTION auth.report_login_metrics(interval);

DROP FUNCTION auth.login_metrics(interval);

DROP FUNCTION auth.report_sessions_per_user();

DROP FUNCTION auth.sessions_per_user();

DROP FUNCTION auth.report_session_anomalies(integer);

DROP FUNCTION auth.session_anomalies(integer);

DROP FUNCTION auth.report_credential_stuffing(interval, integer);

DROP FUNCTION auth.credential_stuffing(interval, integer);

DROP FUNCTION auth.report_brute_force(interval, integer);

DROP FUNCTION auth.brute_force(interval, integer);

DROP FUNCTION auth.month_is_attached(regclass, name, date);

UPDATE auth.alembic_version SET version_num='0029_one_purge_engine' WHERE auth.alembic_version.version_num = '0030_security_reports';

COMMIT;

