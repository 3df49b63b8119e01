"""Alembic environment of authmodels (shipped in the wheel as ``authmodels/_alembic/env.py``).

Everything it does is :func:`authmodels.migrations.run_environment`, which a service composing
our chain into its own Alembic environment calls too: the connection (handed over by the caller,
or ``-x url=...`` → ``sqlalchemy.url`` → ``AUTHMODELS_DATABASE_URL`` → ``DATABASE_URL`` → the
embedded server), one transaction per revision, ``lock_timeout`` (default 5s, ``-x
lock_timeout=...``), ``statement_timeout`` (default 30min, ``-x statement_timeout=...``), the
version table in schema ``auth``, and an advisory lock so two deployers never migrate the same
database at once (the second one waits, then finds the work done).
"""

from authmodels.migrations import run_environment

run_environment()
