"""Storage: migrations match the models, numbers are never reused, SQLite is durable.

Run on SQLite and, with XINXIBOT_TEST_DATABASE, on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, text
from sqlmodel import SQLModel

from storage import migrate
from storage.db import Database, WriteLock
from storage.models import Draft, Member, Unit
from storage.queries import Repo, char_count, content_hash

from .conftest import database_url


async def test_migrations_build_exactly_the_models(tmp_path):
    db = Database(database_url(tmp_path, "m", migrated=False))
    assert await migrate.current(db.engine) is None
    await migrate.upgrade(db.engine)
    await migrate.upgrade(db.engine)  # idempotent

    def diff(conn):
        return compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
    assert await migrate.current(db.engine) == migrate.HEAD
    await db.close()


@pytest.mark.no_database
def test_head_constant_is_alembics_head():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(migrate.alembic_config()).get_current_head() == migrate.HEAD


@pytest.mark.no_database
async def test_write_lock_lets_the_sender_go_before_queued_events():
    lock = WriteLock()
    order: list[str] = []
    release = asyncio.Event()

    async def take(name: str, urgent: bool = False, hold: asyncio.Event | None = None) -> None:
        async with lock.hold(urgent):
            order.append(name)
            if hold is not None:
                await hold.wait()

    first = asyncio.create_task(take("event 1", hold=release))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(take(f"event {i}")) for i in (2, 3)]
    cancelled = asyncio.create_task(take("cancelled event"))
    await asyncio.sleep(0)
    sender = asyncio.create_task(take("sender", urgent=True))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(first, *queued, sender, return_exceptions=True)
    assert order == ["event 1", "sender", "event 2", "event 3"]
    async with lock.hold():  # free again
        pass


@pytest.mark.sqlite_only("SQLite's journal and sync pragmas; PostgreSQL: the test below")
async def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 2  # FULL
    await db.close()


@pytest.mark.postgres
async def test_postgres_commits_are_durable_before_the_receipt(tmp_path):
    """The bot's sessions keep synchronous_commit on: COMMIT returns only once the
    WAL is flushed, so an acknowledged draft survives a power cut (as SQLite's FULL)."""
    db = Database(database_url(tmp_path))
    async with db.transaction() as s:
        assert (await s.execute(text("SHOW synchronous_commit"))).scalar() == "on"
        assert (await s.execute(text("SHOW fsync"))).scalar() == "on"
    await db.close()


async def test_draft_numbers_are_never_reused(tmp_path):
    db = Database(database_url(tmp_path, "n"))
    await migrate.upgrade(db.engine)
    now = datetime(2026, 11, 23, 10)

    async def add_draft(title: str) -> int:
        async with db.transaction() as s:
            repo = Repo(s)
            unit = await repo.units.find("城关镇") or await repo.units.create(
                "城关镇", "township", [], now
            )
            member = await repo.members.ensure(1, "李明", now)
            draft = Draft(
                unit_id=unit.id,
                submitter_id=member.id,
                title=title,
                body="x",
                content_hash=content_hash(title, "x"),
                submitted_at=now,
            )
            await repo.drafts.create(draft, member)
            return draft.id

    first, second = await add_draft("一"), await add_draft("二")
    async with db.transaction() as s:
        await s.execute(text("DELETE FROM draft_event"))
        await s.execute(delete(Draft).where(Draft.id == second))
    third = await add_draft("三")
    assert (first, second, third) == (1, 2, 3)
    async with db.reader() as s:
        assert (await s.execute(text("SELECT count(*) FROM member"))).scalar() == 1
        assert Unit.__tablename__ == "unit" and Member.__tablename__ == "member"
    await db.close()


@pytest.mark.no_database
def test_char_count_counts_non_whitespace_characters():
    assert char_count("今年以来，城关镇……") == 10
    assert char_count(" 一 二\n三\t四　五 ") == 5  # full-width space is whitespace too
    assert char_count("GDP增长8.5%") == 9
    assert content_hash("标题", "正 文") == content_hash("标 题", "正文\n")


async def test_served_groups_move_between_accounts(tmp_path):
    db = Database(database_url(tmp_path, "g"))
    await migrate.upgrade(db.engine)
    now = datetime(2026, 11, 23, 10)

    async def register(account: int, groups: list[int], only: bool = False) -> dict[int, int]:
        async with db.transaction() as s:
            await Repo(s).served.register(account, groups, "127.0.0.1:8080", now, only=only)
        async with db.reader() as s:
            return await Repo(s).served.routes()

    assert await register(1, [11, 12]) == {11: 1, 12: 1}
    assert await register(2, [13, 12]) == {11: 1, 12: 2, 13: 2}  # group 12 moved to account 2
    assert await register(1, [11, 14]) == {11: 1, 12: 2, 13: 2, 14: 1}
    assert await register(1, [14], only=True) == {14: 1}  # one process on SQLite: the rest is stale
    await db.close()
