"""Schema migrations through Alembic, run on the app's own async engine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

from .locks import MIGRATION

HERE = Path(__file__).parent
# The newest revision in migrations/versions (tests/test_storage.py checks it
# against Alembic). A database already there starts without importing Alembic,
# which alone took a fifth of the start-up time.
HEAD = "0009_rollup"


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    return cfg


async def current(engine: AsyncEngine) -> str | None:
    """The database's revision (None: no schema yet)."""
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except DBAPIError:
        return None


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to `revision` (idempotent; fast when already there)."""
    if revision == "head" and await current(engine) == HEAD:
        return
    from alembic import command

    cfg = alembic_config()

    def run(sync_conn) -> None:
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # two processes starting at once migrate in turn
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION})
        await conn.run_sync(run)
