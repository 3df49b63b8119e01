SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0014_dpop_replay -> 0015_partitioned_logs

CREATE OR REPLACE FUNCTION auth.ensure_monthly_partitions(
    parent regclass, months_ahead integer DEFAULT 3, from_month date DEFAULT NULL,
    to_month date DEFAULT NULL
) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    parent_schema text;
    parent_name text;
    month_start date;
    last_month date;
    part text;
BEGIN
    IF months_ahead < 0 THEN
        RAISE EXCEPTION 'months_ahead must not be negative (got %)', months_ahead;
    END IF;
    SELECT n.nspname, c.relname INTO parent_schema, parent_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = parent AND c.relkind = 'p';
    IF parent_name IS NULL THEN
        RAISE EXCEPTION '% is not a partitioned table', parent;
    END IF;
    -- one caller at a time per parent: two would race to create the same month
    PERFORM pg_advisory_xact_lock(parent::oid::bigint);
    month_start := date_trunc('month', coalesce(from_month, (now() AT TIME ZONE 'UTC')::date));
    last_month := greatest(
        date_trunc('month', (now() AT TIME ZONE 'UTC')::date)
            + make_interval(months => months_ahead),
        date_trunc('month', to_month),
        month_start);
    WHILE month_start <= last_month LOOP
        part := format('%s_p%s', parent_name, to_char(month_start, 'YYYYMM'));
        IF to_regclass(format('%I.%I', parent_schema, part)) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                parent_schema, part, parent,
                month_start::timestamp AT TIME ZONE 'UTC',
                (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            -- Policies apply to queries through the parent only; a partition read directly
            -- would bypass them. RLS enabled with no policy: nobody but the owner reads it.
            EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', parent_schema, part);
            RETURN NEXT part;
        END IF;
        month_start := month_start + interval '1 month';
    END LOOP;
END
$$;

-- rebuild of auth.audit_logs as a partitioned table runs online only (it copies the rows in batches);

-- rebuild of auth.login_attempts as a partitioned table runs online only (it copies the rows in batches);

UPDATE auth.alembic_version SET version_num='0015_partitioned_logs' WHERE auth.alembic_version.version_num = '0014_dpop_replay';

COMMIT;

