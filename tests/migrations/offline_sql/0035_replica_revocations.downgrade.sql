SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0035_replica_revocations -> 0034_account_lifecycle

DROP TRIGGER IF EXISTS revocation_waits_for_replicas_on_delete ON auth.sessions;

DROP TRIGGER IF EXISTS revocation_waits_for_replicas ON auth.sessions;

DROP TRIGGER IF EXISTS revocation_waits_for_replicas_on_delete ON auth.access_tokens;

DROP TRIGGER IF EXISTS revocation_waits_for_replicas ON auth.access_tokens;

DROP TRIGGER IF EXISTS revocation_waits_for_replicas_on_delete ON auth.api_keys;

DROP TRIGGER IF EXISTS revocation_waits_for_replicas ON auth.api_keys;

DROP FUNCTION IF EXISTS auth.revocation_waits_for_replicas();

UPDATE auth.alembic_version SET version_num='0034_account_lifecycle' WHERE auth.alembic_version.version_num = '0035_replica_revocations';

COMMIT;

