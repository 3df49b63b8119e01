SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0021_foreign_key_indexes -> 0022_invoker_views

DO $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT c.relname FROM pg_class AS c
         WHERE c.relnamespace = 'auth'::regnamespace AND c.relkind = 'v'
         ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER VIEW auth.%I SET (security_invoker = true)', v.relname);
    END LOOP;
END;
$$;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT v.relname AS view, acl.grantee::regrole::text AS grantee
          FROM pg_class AS v
          JOIN pg_class AS users ON users.oid = 'auth.users'::regclass
          CROSS JOIN LATERAL (SELECT DISTINCT (aclexplode(t.relacl)).grantee
                                FROM pg_class AS t
                               WHERE t.relnamespace = 'auth'::regnamespace
                                 AND t.relkind IN ('r', 'p')) AS acl
         WHERE v.relnamespace = 'auth'::regnamespace AND v.relkind = 'v'
           AND acl.grantee NOT IN (0, users.relowner)
           AND NOT EXISTS (SELECT 1 FROM aclexplode(v.relacl) AS held
                            WHERE held.grantee = acl.grantee)
           AND NOT EXISTS (
               SELECT 1 FROM pg_depend AS d
                 JOIN pg_rewrite AS r ON r.oid = d.objid
                WHERE r.ev_class = v.oid AND d.refobjid <> v.oid
                  AND d.refclassid = 'pg_class'::regclass
                  AND NOT has_table_privilege(acl.grantee, d.refobjid, 'SELECT'))
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON auth.%I TO %s', g.view, g.grantee);
    END LOOP;
END;
$$;

UPDATE auth.alembic_version SET version_num='0022_invoker_views' WHERE auth.alembic_version.version_num = '0021_foreign_key_indexes';

COMMIT;

