"""The async API: every flow of :mod:`authmodels.services` for an ``AsyncSession``.

``authmodels.aio.<module>.<function>`` mirrors ``authmodels.services.<module>.<function>``
with the same arguments, return values and typed errors, the session an
:class:`~sqlalchemy.ext.asyncio.AsyncSession`::

    from authmodels.aio import rls, sessions
    from authmodels.db import async_session_factory, create_async_db_engine

    engine = create_async_db_engine()  # postgresql+psycopg_async, URL resolved as usual
    Db = async_session_factory(engine)

    async with Db() as db:
        async with rls.service_role(db, "shop_service"):
            session = await sessions.validate_session(db, token)
        await rls.set_current_user(db, session.user_id)
        ...
        await db.commit()

The same holds for :mod:`authmodels.aio.rls` (the current user, the service path),
:mod:`authmodels.aio.locking` (``update_versioned``, ``optimistic_update``) and
:mod:`authmodels.aio.retention` (``purge`` on an ``AsyncEngine``, ``load_policies``). The other
names of each module's ``__all__`` (result classes, constants, functions that take no session)
are the sync module's own objects; ``settings.use_settings`` and ``settings.settings_for`` take
the ``AsyncSession`` and stay plain functions (they touch no database). There is no
``aio.durable``: it is the flows' own plumbing, and runs inside them.

**One implementation.** Each async function runs its sync original through
:meth:`AsyncSession.run_sync <sqlalchemy.ext.asyncio.AsyncSession.run_sync>`
(:mod:`authmodels.aio._mirror`), and carries its name, signature and docstring
(``help(aio.sessions.validate_session)`` is the sync function's text). The flows were not split
into a pure core and two shells: a flow reads top to bottom as look up, check, write, audit,
with the SQL that enforces each rule next to the check that relies on it, row locks held across
steps and refusals committed on their own in the middle; a core that yields its statements would
take that apart for every flow, and two shells would be two more places for each to drift.
``run_sync`` costs a greenlet switch per statement (``benchmarks/bench_async.py`` measures it),
and the code of a flow stays the code that runs.

**The event loop stays free.** Inside ``run_sync`` the flow runs in a greenlet of SQLAlchemy's on
the event loop's thread; every statement is awaited on psycopg's ``AsyncConnection``, so the loop
serves other requests while the database answers:

- the hot statements (session validation, refresh rotation) stay server-side prepared
  statements on that connection (:mod:`authmodels.services._fastpath`);
- a refusal committed in a transaction of its own (:mod:`authmodels.services.durable`) takes its
  second connection from an engine made from the caller's -- on an async engine, an asyncio
  engine with an asyncio pool: a wait for that pool or for a row lock is an ``await``, not a
  blocked thread;
- Argon2id hashing and verification (tens of milliseconds of CPU each) run in a worker thread
  (:mod:`authmodels.services._off_loop`).

**Engines.** :func:`authmodels.db.create_async_db_engine` resolves the URL as every entry point
does (argument, ``AUTHMODELS_DATABASE_URL`` / ``DATABASE_URL``, the embedded server) and uses
``postgresql+psycopg_async``; it needs ``greenlet``, the ``async`` extra
(``pip install "authmodels[async]"``). The pytest plugin has async fixtures
(``authmodels_async_session`` and the others, :mod:`authmodels.testing.plugin`).

``tests/aio/test_mirror.py`` derives the list of functions from :mod:`authmodels.services` and
fails when one has no async twin here, or a twin whose signature or docstring differs.
"""
