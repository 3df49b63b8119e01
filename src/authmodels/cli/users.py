"""``authmodels users``: accounts that need an operator (revision 0023's e-mail conflicts)."""

from __future__ import annotations

import json
import uuid

from authmodels.cli.common import JSON, URL, CommandSet, Context


def register(commands: CommandSet) -> None:
    """The ``users`` commands."""
    users = commands.group("users", help="accounts: e-mail conflicts (revision 0023)")
    conflicts = users.command(
        "email-conflicts",
        _email_conflicts,
        help="live accounts sharing an address in another letter case; --resolve them",
        description=(
            "List the live accounts that share an e-mail address in another letter case (they\n"
            "stop revision 0023), exit 1 when there are some; or give each address to one account\n"
            "(--resolve --keep USER_ID ...): the others get an undeliverable address, the old row\n"
            "is kept in auth.quarantine."
        ),
        uses=(URL, JSON),
    )
    conflicts.add_argument(
        "--resolve",
        action="store_true",
        help="give each address to the --keep account; the others get an undeliverable one",
    )
    conflicts.add_argument(
        "--keep",
        action="append",
        type=uuid.UUID,
        default=None,
        metavar="USER_ID",
        help="the account that keeps its address (repeat for several addresses)",
    )


def _email_conflicts(ctx: Context) -> int:
    from authmodels import email_identity

    args = ctx.args

    if args.resolve and not args.keep:
        args._parser.error(
            "--resolve needs --keep <user_id> (the account that keeps each shared address; "
            "repeat it for several addresses)"
        )
    if args.keep and not args.resolve:
        args._parser.error("--keep goes with --resolve")
    engine = ctx.engine()
    try:
        if args.resolve:
            with engine.begin() as conn:
                done = email_identity.resolve_conflicts(conn, args.keep)
            for r in done:
                ctx.say(
                    f"{r.user_id}: {r.old_email} -> {r.new_email} (the address stays with "
                    f"{r.kept_by}; the old row is auth.quarantine id {r.quarantine_id})"
                )
            ctx.say(f"{len(done)} account(s) got another address; nothing was deleted")
            return 0
        with engine.connect() as conn:
            conflicts = email_identity.find_conflicts(conn, limit=None)
    finally:
        engine.dispose()
    if ctx.json:
        print(
            json.dumps(
                [
                    {
                        "address": a.identity,
                        "user_id": str(a.user_id),
                        "email": a.email,
                        "created_at": a.created_at.isoformat(),
                        "last_login_at": a.last_login_at and a.last_login_at.isoformat(),
                    }
                    for a in conflicts.accounts
                ]
            )
        )
    elif not conflicts:
        ctx.say("no live accounts share an e-mail address")
    else:
        ctx.say(
            f"{conflicts.total} live accounts share {conflicts.addresses} e-mail addresses "
            "(in different letter case):"
        )
        identity = None
        for a in conflicts.accounts:
            if a.identity != identity:
                identity = a.identity
                ctx.say(identity)
            last = f"{a.last_login_at:%Y-%m-%d %H:%M}" if a.last_login_at else "never"
            ctx.say(
                f"  {a.user_id}  {a.email:<40} created {a.created_at:%Y-%m-%d %H:%M}  "
                f"last login {last}"
            )
        ctx.say(
            "keep one account per address: authmodels users email-conflicts --resolve "
            "--keep <user_id> [--keep <user_id> ...]"
        )
    return 1 if conflicts else 0
