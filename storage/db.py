"""Engine and transactions.

One transaction per event: the event's effects, its outbox messages and its
processed-event key commit together. SQLite allows one writer at a time, so
write transactions are serialised by an asyncio lock instead of colliding on
"database is locked".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# SQLite durability: WAL with synchronous=FULL fsyncs the WAL on every commit,
# so a draft whose receipt went out survives a power cut, not only a crash.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str) -> AsyncEngine:
    if is_sqlite(url):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            for pragma in SQLITE_PRAGMAS:
                cur.execute(pragma)
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=5, pool_pre_ping=True)


class Database:
    """Owns the engine and hands out sessions and write transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if is_sqlite(url) else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on error."""
        if self._write_lock is None:
            async with self.sessions() as session, session.begin():
                yield session
            return
        async with self._write_lock, self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only (no lock: WAL readers do not block the writer)."""
        async with self.sessions() as session:
            yield session

    async def optimize(self) -> None:
        """Refresh the planner's statistics. The standings aggregates rely on them
        to skip-scan the unit-first covering indexes; with an analysis limit this
        takes milliseconds even on a province-sized database."""
        if is_sqlite(self.url):
            async with self.engine.begin() as conn:
                await conn.exec_driver_sql("PRAGMA analysis_limit=1000")
                await conn.exec_driver_sql("ANALYZE")
        else:
            async with self.engine.begin() as conn:
                await conn.exec_driver_sql("ANALYZE")

    async def close(self) -> None:
        await self.engine.dispose()
