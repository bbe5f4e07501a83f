"""Schema migrations through Alembic, run on the app's own async engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.ext.asyncio import AsyncEngine

HERE = Path(__file__).parent


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to `revision` (idempotent; fast when already there)."""
    cfg = alembic_config()

    def run(sync_conn) -> None:
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)
