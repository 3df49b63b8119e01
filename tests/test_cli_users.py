"""``authmodels users email-conflicts``: list the accounts 0023 stops on, and resolve them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL

from authmodels.cli import main
from authmodels.db import libpq_url
from authmodels.testing.migrations import MigrationRunner
from tests.migrations.helpers import count
from tests.migrations.migration_helpers import user

BEFORE_IDENTITY = "0022_invoker_views"


@pytest.fixture
def conflicting(
    authmodels_migration_runner: MigrationRunner,
) -> Iterator[tuple[MigrationRunner, dict[str, str]]]:
    """A database at 0022 with two addresses shared by live accounts (three accounts, two)."""
    runner = authmodels_migration_runner
    runner.upgrade(BEFORE_IDENTITY)
    ids = {
        "ADA": user(runner, "ADA@example.com", created_at="2024-01-01Z", email_verified=True),
        "ada": user(runner, "ada@example.com", created_at="2024-02-01Z"),
        "Ada": user(runner, "Ada@Example.com", created_at="2024-03-01Z"),
        "BOB": user(runner, "BOB@example.com", created_at="2024-01-01Z"),
        "bob": user(runner, "bob@example.com", created_at="2024-02-01Z"),
        "carol": user(runner, "carol@example.com"),
    }
    yield runner, ids


def _url(runner: MigrationRunner) -> str:
    assert isinstance(runner.url, URL)
    return libpq_url(runner.url)


def test_email_conflicts_lists_every_live_account_sharing_an_address(
    conflicting: tuple[MigrationRunner, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    runner, ids = conflicting
    assert main(["users", "email-conflicts", "--url", _url(runner)]) == 1
    out = capsys.readouterr().out
    assert "5 live accounts share 2 e-mail addresses" in out
    assert out.index(ids["ADA"]) < out.index(ids["ada"]) < out.index(ids["Ada"])
    assert ids["carol"] not in out
    assert "--resolve --keep <user_id>" in out

    assert main(["users", "email-conflicts", "--json", "--url", _url(runner)]) == 1
    listed = json.loads(capsys.readouterr().out)
    assert [(a["address"], a["user_id"]) for a in listed] == [
        ("ada@example.com", ids["ADA"]),
        ("ada@example.com", ids["ada"]),
        ("ada@example.com", ids["Ada"]),
        ("bob@example.com", ids["BOB"]),
        ("bob@example.com", ids["bob"]),
    ]


def test_resolve_gives_the_address_to_the_kept_account_and_deletes_nothing(
    conflicting: tuple[MigrationRunner, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    runner, ids = conflicting
    users_before = count(runner, "users")
    args = ["users", "email-conflicts", "--resolve", "--url", _url(runner)]
    assert main([*args, "--keep", ids["ada"], "--keep", ids["BOB"]]) == 0
    out = capsys.readouterr().out
    assert "3 account(s) got another address; nothing was deleted" in out

    assert count(runner, "users") == users_before
    emails = dict(runner.execute("SELECT id::text, email FROM auth.users"))
    assert emails[ids["ada"]] == "ada@example.com"
    assert emails[ids["BOB"]] == "BOB@example.com"
    for renamed in ("ADA", "Ada", "bob"):
        assert emails[ids[renamed]] == f"conflict-{ids[renamed]}@email-conflict.invalid"
    kept = runner.execute(
        "SELECT row_data->>'id', row_data->>'email', reason, revision FROM auth.quarantine "
        "WHERE source_table = 'users' ORDER BY row_data->>'email'"
    )
    assert [(r[0], r[1], r[3]) for r in kept] == sorted(
        [
            (ids["ADA"], "ADA@example.com", "0023_email_identity"),
            (ids["Ada"], "Ada@Example.com", "0023_email_identity"),
            (ids["bob"], "bob@example.com", "0023_email_identity"),
        ],
        key=lambda r: r[1],
    )
    assert all("which keeps it" in r[2] for r in kept)
    audits = runner.execute(
        "SELECT user_id::text, action, details->>'kept_by' FROM auth.audit_logs "
        "WHERE action = 'users.email_conflict_resolved' ORDER BY 1"
    )
    assert sorted(audits) == sorted(
        [
            (ids["ADA"], "users.email_conflict_resolved", ids["ada"]),
            (ids["Ada"], "users.email_conflict_resolved", ids["ada"]),
            (ids["bob"], "users.email_conflict_resolved", ids["BOB"]),
        ]
    )
    # the renamed account's old address was verified; its new one is not
    assert runner.execute(
        "SELECT email_verified FROM auth.users WHERE id = CAST(:u AS uuid)", {"u": ids["ADA"]}
    ) == [(False,)]

    assert main(["users", "email-conflicts", "--url", _url(runner)]) == 0
    assert "no live accounts share an e-mail address" in capsys.readouterr().out
    runner.upgrade("0023_email_identity")  # now it goes through


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (lambda ids: [ids["carol"]], "shares its address with no other live account"),
        (lambda ids: [ids["ADA"], ids["ada"]], "keep one of them"),
        (lambda ids: [str(uuid.uuid4())], "no live account has the id"),
    ],
)
def test_resolve_refuses_what_it_does_not_apply_to_and_writes_nothing(
    conflicting: tuple[MigrationRunner, dict[str, str]],
    capsys: pytest.CaptureFixture[str],
    keep: object,
    message: str,
) -> None:
    runner, ids = conflicting
    before = runner.execute("SELECT id, email FROM auth.users ORDER BY id")
    chosen = keep(ids)  # type: ignore[operator]
    args = ["users", "email-conflicts", "--resolve", "--url", _url(runner)]
    assert main([*args, *(a for k in chosen for a in ("--keep", k))]) == 1
    assert message in capsys.readouterr().err
    assert runner.execute("SELECT id, email FROM auth.users ORDER BY id") == before
    assert count(runner, "quarantine") == 0


def test_resolve_needs_an_account_to_keep(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://nobody@localhost/none"
    assert main(["users", "email-conflicts", "--resolve", "--url", url]) == 2
    assert "needs --keep" in capsys.readouterr().err
