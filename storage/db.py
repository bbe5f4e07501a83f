"""Engine and transactions.

One transaction per event: the event's effects, its outbox messages and its
processed-event key commit together. SQLite allows one writer at a time, so
write transactions are serialised by an asyncio lock instead of colliding on
"database is locked", and those that queue for it are committed together
(`GroupCommit`: one transaction and one fsync for the group, a savepoint each).

SQLite statements of the event path run on the event-loop thread. aiosqlite
hands every call (cursor, execute, fetch, commit) to a worker thread and back;
one such hop costs ~0.5 ms on a small VM while the statement itself costs
microseconds, so an event's ten statements spent ~25 ms hopping (bench/README.md).
Long scans (the standings aggregates) keep aiosqlite's worker
threads through `scan_engine`, so a province-sized ranking never stalls the loop.

PostgreSQL needs no write lock; what it adds is failure from outside: the server
unreachable (`DatabaseUnavailable`: the event is refused with 503 and redelivered)
and conflicts between processes (`is_conflict`: the transaction is run again).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .cache import RowCache, StoreSession

# SQLite durability: WAL with synchronous=FULL fsyncs the WAL on every commit,
# so a draft whose receipt went out survives a power cut, not only a crash.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
)


# PostgreSQL: how long to wait for a connection before calling the server unreachable.
CONNECT_TIMEOUT = 10
# SQLSTATEs a transaction may meet only because another process ran at the same
# time; running it again succeeds: serialization failure, deadlock, and a unique
# key inserted concurrently after both checked that it was free.
CONFLICT_STATES = {"40001", "40P01", "23505"}


class DatabaseUnavailable(Exception):
    """The database server cannot be reached: nothing was committed."""

    def __init__(self, url: str, error: object) -> None:
        super().__init__(f"{display_url(url)}: {error}")
        self.url, self.error = display_url(url), str(error)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def display_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


def is_unavailable(exc: BaseException) -> bool:
    """A lost or refused connection, or a server shutting down (SQLSTATE 08xxx, 57P0x)."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, DBAPIError):
        state = sqlstate(exc) or ""
        return exc.connection_invalidated or state.startswith(("08", "57P"))
    return False


def is_conflict(exc: BaseException) -> bool:
    """A failure that another process's concurrent transaction caused; worth a retry."""
    return isinstance(exc, DBAPIError) and sqlstate(exc) in CONFLICT_STATES


class _RunNow:
    """Stands in for aiosqlite's queue to its worker thread: runs each call at once."""

    def put_nowait(self, item: tuple[asyncio.Future | None, Any]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting caller, as aiosqlite does
            if future is not None:
                future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's API with every sqlite3 call made on the calling (event-loop) thread."""

    def __init__(self, connector: Any, iter_chunk_size: int = 64) -> None:
        super().__init__(connector, iter_chunk_size)
        self._tx = _RunNow()  # type: ignore[assignment]

    def __await__(self):
        return self._connect().__await__()  # no worker thread to start


def _inline_connect(database: str, **kwargs: Any) -> InlineConnection:
    return InlineConnection(lambda: sqlite3.connect(database, **kwargs))


def make_engine(url: str, inline: bool = True) -> AsyncEngine:
    """An engine for `url`; on SQLite, `inline` runs statements on the loop thread."""
    if is_sqlite(url):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"check_same_thread": False}
        if inline:
            connect_args["async_creator_fn"] = _inline_connect
        engine = create_async_engine(url, connect_args=connect_args)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            for pragma in SQLITE_PRAGMAS:
                cur.execute(pragma)
            cur.close()
            # The driver opens transactions late and implicitly, which breaks SAVEPOINT
            # (group commit): it is told not to, and every transaction begins with BEGIN.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    engine = create_async_engine(
        url,
        pool_size=10,
        max_overflow=5,
        pool_pre_ping=True,
        connect_args={"timeout": CONNECT_TIMEOUT},
    )
    raise_unavailable_on_connect(engine, url)
    return engine


def raise_unavailable_on_connect(engine: AsyncEngine, url: str) -> None:
    """Connecting refused, unreachable or timed out (the driver raises plain
    OSError) becomes DatabaseUnavailable."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect, _record, cargs, cparams):
        try:
            return dialect.connect(*cargs, **cparams)
        except OSError as exc:
            raise DatabaseUnavailable(url, exc) from exc


class WriteLock:
    """SQLite's one writer, in turns: first come, first served, except that
    `urgent` waiters (the outbox sender's short status updates) go before
    queued events. Without that, under a burst every delivery waited behind
    every queued submission and receipts fell seconds behind the commits."""

    def __init__(self, on_free: Callable[[], None] | None = None) -> None:
        self._held = False
        self._waiters: dict[bool, deque[asyncio.Future]] = {True: deque(), False: deque()}
        self._on_free = on_free  # called when it falls free with nobody waiting

    def contended(self) -> bool:
        """Somebody waits for the lock."""
        return any(not w.done() for queue in self._waiters.values() for w in queue)

    @asynccontextmanager
    async def hold(self, urgent: bool = False) -> AsyncIterator[None]:
        if self._held:  # a releasing holder hands over directly, so waiters imply held
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[urgent].append(waiter)
            try:
                await waiter  # ownership is handed over by the releasing holder
            except BaseException:
                if not waiter.cancelled() and waiter.done():
                    self._release()  # handed over just as we were cancelled: pass it on
                else:
                    self._waiters[urgent].remove(waiter)
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        for queue in (self._waiters[True], self._waiters[False]):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # _held stays True: the waiter owns it now
                    return
        self._held = False
        if self._on_free is not None:
            self._on_free()


class Counters:
    """SQL statements executed and transactions committed by this process (for
    `/metrics`: the ingest bench divides them by events of each kind)."""

    def __init__(self) -> None:
        self.statements = 0
        self.commits = 0

    def watch(self, engine: AsyncEngine) -> None:
        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _statement(*_args) -> None:
            self.statements += 1

        @event.listens_for(engine.sync_engine, "commit")
        def _commit(_conn) -> None:
            self.commits += 1


# Transactions committed together at most (group commit, SQLite): the first of a
# group waits for the others' work, so a group is kept small.
MAX_GROUP = 16


class _Group:
    """One SQLite transaction shared by the transactions that queued for it."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.size = 0
        self.working = False  # a member is between its SAVEPOINT and its RELEASE
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class GroupCommit:
    """SQLite's one writer, shared. A transaction that finds others queued for the write
    lock when it ends leaves its database transaction open for them: they join it, each
    in a SAVEPOINT of its own, and the last commits the group - one COMMIT, one fsync.
    A transaction whose work fails is rolled back to its savepoint alone. Each caller
    leaves only when its group has committed (or with the commit's error), so nothing it
    queued in the outbox can be sent before its commit."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.lock = WriteLock(on_free=self._orphaned)
        self._open: _Group | None = None

    @asynccontextmanager
    async def transaction(self, urgent: bool) -> AsyncIterator[AsyncSession]:
        failure: BaseException | None = None
        async with self.lock.hold(urgent):
            group = self._open
            if group is None:
                group = self._open = _Group(self.sessions(info={"writer": True}))
                await group.session.begin()
            group.size += 1
            first = group.size == 1  # alone so far: a failure rolls the transaction back
            group.working = True
            try:
                if first:
                    yield group.session
                else:
                    async with group.session.begin_nested():
                        yield group.session
            except BaseException as exc:  # rolled back to its savepoint; the group goes on
                failure = exc
                if first:
                    self._open = None
                    await group.session.close()  # rolls back; a new group starts afresh
                    raise
            finally:
                group.working = False
            # Statements run on the loop thread without yielding, so events that arrived
            # meanwhile queue only now: one turn of the loop lets them, to join the group.
            await asyncio.sleep(0)
            # An urgent transaction (the sender's status updates) commits at once: the
            # delivery of every waiting receipt waits for it.
            if self._open is group and (
                urgent or not self.lock.contended() or group.size >= MAX_GROUP
            ):
                await self._commit(group)  # (unless `commit_now` already did)
        if failure is not None:
            raise failure
        await group.committed

    async def _commit(self, group: _Group) -> None:
        self._open = None
        try:
            await group.session.commit()
        except BaseException as exc:
            group.committed.set_exception(exc)
            group.committed.exception()  # retrieved: its members raise it, if any wait
            await group.session.rollback()  # a failed COMMIT can leave the transaction open
        else:
            group.committed.set_result(None)
        finally:
            await group.session.close()

    def commit_now(self) -> None:
        """Commit the open group at once, if no member is in the middle of its work: for
        another writer of the database in this process (APScheduler's synchronous job
        store), which would otherwise wait for SQLite's lock while blocking the loop the
        group needs to commit. The group's calls run on this thread and never suspend."""
        group = self._open
        if group is None or group.working:
            return
        commit = self._commit(group)
        try:
            commit.send(None)
        except StopIteration:
            return
        commit.close()
        raise RuntimeError("committing a group suspended")

    def _orphaned(self) -> None:
        """The lock fell free with a group open (the one it was handed to was cancelled
        meanwhile): commit it, so its members do not wait for ever."""
        if self._open is not None:
            asyncio.get_running_loop().create_task(self._commit_orphan())

    async def _commit_orphan(self) -> None:
        async with self.lock.hold(urgent=True):
            if self._open is not None:
                await self._commit(self._open)


class Database:
    """Owns the engine and hands out sessions and write transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.counters = Counters()
        self.engine = make_engine(url)
        self.counters.watch(self.engine)
        # Only a database this process alone writes may be cached (storage/cache.py).
        self.cache = RowCache() if is_sqlite(url) else None
        self.sessions = async_sessionmaker(
            self.engine,
            expire_on_commit=False,
            sync_session_class=StoreSession,
            info={"cache": self.cache},
        )
        self.scan_engine = make_engine(url, inline=False) if is_sqlite(url) else self.engine
        if self.scan_engine is not self.engine:
            self.counters.watch(self.scan_engine)
        self._group = GroupCommit(self.sessions) if is_sqlite(url) else None

    @asynccontextmanager
    async def transaction(self, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on error.
        `urgent` (SQLite): go before the queued event transactions.
        A lost connection raises DatabaseUnavailable (nothing was committed, or,
        if the connection broke during COMMIT, perhaps it was: a redelivered
        event then finds its key)."""
        try:
            if self._group is None:
                async with self.sessions() as session, session.begin():
                    yield session
                return
            async with self._group.transaction(urgent) as session:
                yield session
        except DBAPIError as exc:
            if is_unavailable(exc):
                raise DatabaseUnavailable(self.url, exc.orig) from exc
            raise

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only (no lock: WAL readers do not block the writer)."""
        async with self.sessions() as session:
            yield session

    async def optimize(self) -> None:
        """Refresh the planner's statistics. The standings aggregates rely on them
        to skip-scan the unit-first covering indexes; with an analysis limit this
        takes milliseconds even on a province-sized database. (PostgreSQL's
        autovacuum keeps its statistics by itself.)"""
        if is_sqlite(self.url):
            async with self.transaction(urgent=True) as s:  # a write: SQLite's one writer
                await s.execute(text("PRAGMA analysis_limit=1000"))
                await s.execute(text("ANALYZE"))

    def commit_group_now(self) -> None:
        """See `GroupCommit.commit_now` (nothing to do on PostgreSQL)."""
        if self._group is not None:
            self._group.commit_now()

    async def close(self) -> None:
        await self.engine.dispose()
        if self.scan_engine is not self.engine:
            await self.scan_engine.dispose()
