"""Insert guards: a user cannot create their own account privileged, nor write as another actor.

Found in issue 12. ``users_guard_self_insert`` refuses (``42501``) a user's own new row with
privileges, verification or lockout state other than the defaults; ``audit_logs_actor`` makes an
entry written as a user name that user as its actor; ``device_key_events_actor`` refuses another
actor.

Downgrade: the three triggers and their functions are dropped. Nothing is lost.

See docs/phases/0024-insert-guards.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0024_insert_guards"
down_revision: str | Sequence[str] | None = "0023_email_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The columns 0017 guards, and the only value each may have in a user's own new row (its
#: column default).
GUARDED_DEFAULTS = {
    "role": "'user'",
    "is_master_admin": "false",
    "email_verified": "false",
    "email_verified_at": "NULL",
    "failed_login_attempts": "0",
    "account_locked_until": "NULL",
}

_GUARDED_LIST = ", ".join(GUARDED_DEFAULTS)
_NOT_DEFAULT = " OR ".join(f"NEW.{c} IS DISTINCT FROM {v}" for c, v in GUARDED_DEFAULTS.items())

GUARD_USER_SELF_INSERT = f"""
CREATE OR REPLACE FUNCTION auth.guard_user_self_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- the rule: a user creating their own account gets the defaults of these columns
    IF auth.uid() IS NOT NULL AND NEW.id = auth.uid() AND ({_NOT_DEFAULT}) THEN
        RAISE EXCEPTION 'A user cannot create their own account with a role, verification or '
                        'lockout state'
            USING ERRCODE = '42501',
                  DETAIL = format('User %s inserted their own row with one of {_GUARDED_LIST} '
                                  'not at its default.', NEW.id),
                  HINT = 'Create the account with the defaults, or on the service path '
                         '(authmodels.rls.service_role, no user named).';
    END IF;
    RETURN NEW;
END
$$
"""

_FILL_ACTOR = """
    IF current_uid IS NOT NULL AND NEW.actor_user_id IS NULL THEN
        NEW.actor_user_id := current_uid;
    END IF;"""


def _actor_function(name: str, *, fill: bool) -> str:
    return f"""
CREATE OR REPLACE FUNCTION auth.{name}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    current_uid uuid := auth.uid();
BEGIN
    -- the rule: an entry written as a user has that user as its actor{_FILL_ACTOR if fill else ""}
    IF current_uid IS NOT NULL AND NEW.actor_user_id <> current_uid THEN
        RAISE EXCEPTION 'An entry written as a user cannot name another user as its actor'
            USING ERRCODE = '42501',
                  DETAIL = format('User %s wrote an entry of %s naming %s as its actor.',
                                  current_uid, TG_TABLE_NAME, NEW.actor_user_id),
                  HINT = 'Leave actor_user_id empty, or write the entry on the service path '
                         '(authmodels.rls.service_role, no user named).';
    END IF;
    RETURN NEW;
END
$$
"""


#: (table, trigger, function, fill an empty actor)
ACTOR_GUARDS = (
    ("audit_logs", "audit_logs_actor", "audit_actor_is_current_user", True),
    (
        "device_key_events",
        "device_key_events_actor",
        "device_key_event_actor_is_current_user",
        False,
    ),
)


def upgrade() -> None:
    op.execute(GUARD_USER_SELF_INSERT)
    op.execute(
        "CREATE OR REPLACE TRIGGER users_guard_self_insert BEFORE INSERT ON auth.users "
        "FOR EACH ROW EXECUTE FUNCTION auth.guard_user_self_insert()"
    )
    for table, trigger, function, fill in ACTOR_GUARDS:
        op.execute(_actor_function(function, fill=fill))
        op.execute(
            f"CREATE OR REPLACE TRIGGER {trigger} BEFORE INSERT ON auth.{table} "
            f"FOR EACH ROW EXECUTE FUNCTION auth.{function}()"
        )


def downgrade() -> None:
    for table, trigger, function, _ in ACTOR_GUARDS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON auth.{table}")
        op.execute(f"DROP FUNCTION IF EXISTS auth.{function}()")
    op.execute("DROP TRIGGER IF EXISTS users_guard_self_insert ON auth.users")
    op.execute("DROP FUNCTION IF EXISTS auth.guard_user_self_insert()")
