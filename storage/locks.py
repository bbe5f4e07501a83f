"""PostgreSQL advisory locks: how several bot processes share one database.

Session-level locks live on one dedicated connection per process
(`LockConnection`) for the process's lifetime. They end with the session, so a
process killed with SIGKILL releases them as soon as the server sees its socket
close; the connection asks the server for TCP keepalives (10 s idle, then every
5 s, 3 probes), so a machine that vanishes without closing its socket releases
them within ~25 s. A frozen process (SIGSTOP) keeps its socket, and its locks,
until it resumes or dies.

Keys are 64-bit and per database; the top bits say "xinxibot", then the kind:
* `STARTUP`: held while a process migrates, registers its groups and opens the job store;
* `SCHEDULER`: held by the one process that runs scheduled jobs;
* `account_key(self_id)`: held by the process that serves that QQ account;
* `MIGRATION` (transaction-level): held while Alembic migrates (`xinxibot db upgrade` too).
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from .db import CONNECT_TIMEOUT, raise_unavailable_on_connect

_BASE = 0x5842 << 48  # "XB"
STARTUP = _BASE | 1 << 40
SCHEDULER = _BASE | 2 << 40
_ACCOUNT = _BASE | 3 << 40
MIGRATION = _BASE | 4 << 40

KEEPALIVES = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}


def account_key(self_id: int) -> int:
    return _ACCOUNT | self_id


class LockConnection:
    """A process's own connection for session-level advisory locks."""

    def __init__(self, url: str, name: str) -> None:
        """`name`: the session's application_name, so `pg_stat_activity` shows whose locks they are."""
        settings = KEEPALIVES | {"application_name": name}
        self.engine = create_async_engine(
            url,
            poolclass=NullPool,
            connect_args={"timeout": CONNECT_TIMEOUT, "server_settings": settings},
        )
        raise_unavailable_on_connect(self.engine, url)
        self.conn: AsyncConnection | None = None

    async def open(self) -> None:
        self.conn = await self.engine.connect()
        await self.conn.execution_options(isolation_level="AUTOCOMMIT")

    async def _scalar(self, sql: str, **params: Any) -> Any:
        assert self.conn is not None, "open() first"
        return (await self.conn.execute(text(sql), params)).scalar()

    async def try_lock(self, key: int) -> bool:
        """Take `key` if nobody holds it (held already by this session: True again)."""
        return bool(await self._scalar("SELECT pg_try_advisory_lock(:k)", k=key))

    async def lock(self, key: int) -> None:
        """Take `key`, waiting for its holder."""
        await self._scalar("SELECT pg_advisory_lock(:k)", k=key)

    async def unlock(self, key: int) -> None:
        await self._scalar("SELECT pg_advisory_unlock(:k)", k=key)

    async def held(self, key: int) -> bool:
        """Whether some session holds `key` in this database."""
        return bool(
            await self._scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1",
                hi=key >> 32,
                lo=key & 0xFFFFFFFF,
            )
        )

    async def ping(self) -> None:
        """Raises if the session, and with it every lock it held, is gone."""
        await self._scalar("SELECT 1")

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):  # lost: its session and locks are gone anyway
                await self.conn.close()
            self.conn = None
        await self.engine.dispose()
