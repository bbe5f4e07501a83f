"""Alembic environment. The connection is handed in by storage.migrate
(an async engine's connection run synchronously), or, for developers'
`alembic` commands, made from XINXIBOT_BOT_DATABASE."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables)

target_metadata = SQLModel.metadata

# APScheduler owns its job-store table; Alembic must not manage it.
EXTERNAL_TABLES = {"apscheduler_jobs"}


def include_object(obj, name, type_, reflected, compare_to):
    return not (type_ == "table" and name in EXTERNAL_TABLES)


def run_with(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        render_as_batch=True,  # SQLite cannot ALTER most things in place
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    url = os.environ.get("XINXIBOT_BOT_DATABASE", "sqlite+aiosqlite:///xinxibot.db")
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(run_with)
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_with(connection)
else:
    asyncio.run(_run_online())
