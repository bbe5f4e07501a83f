"""The event path's economies keep its guarantees: group commit (several events, one
COMMIT, each atomic on its own, nobody answered before the commit), the member and
unit cache (right after every write, a rollback included), and /metrics."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from sqlalchemy import select, text, update

from storage import migrate
from storage.db import Database
from storage.models import Draft, Member, Role, Unit
from storage.queries import Repo

from .conftest import database_url

NOW = datetime(2026, 11, 23, 9, 0)


async def _database(tmp_path) -> Database:
    db = Database(database_url(tmp_path))
    await migrate.upgrade(db.engine)
    async with db.transaction() as s:
        unit = Unit(name="城关镇", created_at=NOW)
        s.add(unit)
        await s.flush()
        s.add(Member(im_id=20001, name="张三", role=Role.officer, unit_id=unit.id,
                     created_at=NOW, updated_at=NOW))  # fmt: skip
    return db


async def _units(db: Database) -> list[str]:
    async with db.reader() as s:
        return list((await s.execute(select(Unit.name).order_by(Unit.id))).scalars())


@pytest.mark.sqlite_only("group commit shares SQLite's one writer; PostgreSQL has no write lock")
async def test_queued_transactions_commit_together_and_a_failing_one_alone(tmp_path):
    db = await _database(tmp_path)
    release = asyncio.Event()
    left: list[str] = []

    async def add(name: str, fail: bool = False, hold: asyncio.Event | None = None) -> None:
        async with db.transaction() as s:
            s.add(Unit(name=name, created_at=NOW))
            await s.flush()
            if hold is not None:
                await hold.wait()
            if fail:
                raise ValueError(name)
        left.append(name)

    commits = db.counters.commits
    first = asyncio.create_task(add("一", hold=release))
    await asyncio.sleep(0)
    others = [asyncio.create_task(add(n, fail=n == "三")) for n in ("二", "三", "四")]
    await asyncio.sleep(0)
    assert left == []
    release.set()
    results = await asyncio.gather(first, *others, return_exceptions=True)

    assert [type(r).__name__ for r in results] == ["NoneType", "NoneType", "ValueError", "NoneType"]
    assert await _units(db) == ["城关镇", "一", "二", "四"]
    assert db.counters.commits - commits == 1  # one COMMIT (one fsync) for the four
    assert sorted(left) == ["一", "二", "四"]
    await db.close()


@pytest.mark.sqlite_only("group commit shares SQLite's one writer; PostgreSQL has no write lock")
async def test_when_the_first_of_a_group_fails_the_others_still_commit(tmp_path):
    db = await _database(tmp_path)
    release = asyncio.Event()

    async def add(name: str, hold: asyncio.Event | None = None) -> None:
        async with db.transaction() as s:
            s.add(Unit(name=name, created_at=NOW))
            await s.flush()
            if hold is not None:
                await hold.wait()
                raise ValueError(name)

    first = asyncio.create_task(add("一", hold=release))
    await asyncio.sleep(0)
    others = [asyncio.create_task(add(n)) for n in ("二", "三")]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(first, *others, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["ValueError", "NoneType", "NoneType"]
    assert await _units(db) == ["城关镇", "二", "三"]
    await db.close()


@pytest.mark.sqlite_only("group commit shares SQLite's one writer; PostgreSQL has no write lock")
async def test_nobody_leaves_before_the_group_commits(tmp_path):
    db = await _database(tmp_path)
    first_done, second_in, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    left: list[str] = []

    async def add(name: str, entered: asyncio.Event, hold: asyncio.Event) -> None:
        async with db.transaction() as s:
            entered.set()
            await hold.wait()
            s.add(Unit(name=name, created_at=NOW))
        left.append(name)

    first_in = asyncio.Event()
    a = asyncio.create_task(add("一", first_in, first_done))
    await first_in.wait()
    b = asyncio.create_task(add("二", second_in, release))
    await asyncio.sleep(0)  # queued behind the first
    first_done.set()
    await second_in.wait()
    assert left == []  # the first one's work waits in the open group, uncommitted
    assert await _units(db) == ["城关镇"]
    release.set()
    await asyncio.gather(a, b)
    assert sorted(left) == ["一", "二"] and await _units(db) == ["城关镇", "一", "二"]
    await db.close()


@pytest.mark.sqlite_only("group commit shares SQLite's one writer; PostgreSQL has no write lock")
async def test_a_failed_commit_fails_every_member_of_the_group(tmp_path):
    db = await _database(tmp_path)
    release = asyncio.Event()

    async def orphan_member() -> None:  # checked at COMMIT: the whole group's commit fails
        async with db.transaction() as s:
            await s.execute(text("PRAGMA defer_foreign_keys = ON"))
            s.add(Member(im_id=20002, name="李四", role=Role.officer, unit_id=999,
                         created_at=NOW, updated_at=NOW))  # fmt: skip
            await s.flush()
            await release.wait()

    async def add(name: str) -> None:
        async with db.transaction() as s:
            s.add(Unit(name=name, created_at=NOW))

    first = asyncio.create_task(orphan_member())
    await asyncio.sleep(0)
    second = asyncio.create_task(add("二"))
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["IntegrityError", "IntegrityError"]
    assert await _units(db) == ["城关镇"]
    await add("三")  # the database is usable again
    assert await _units(db) == ["城关镇", "三"]
    await db.close()


@pytest.mark.sqlite_only("group commit shares SQLite's one writer; PostgreSQL has no write lock")
async def test_a_group_whose_next_member_was_cancelled_still_commits(tmp_path):
    db = await _database(tmp_path)
    release = asyncio.Event()
    done: list[str] = []

    async def add(name: str, hold: asyncio.Event | None = None) -> None:
        async with db.transaction() as s:
            s.add(Unit(name=name, created_at=NOW))
            if hold is not None:
                await hold.wait()
        done.append(name)

    first = asyncio.create_task(add("一", hold=release))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(add("二"))
    await asyncio.sleep(0)
    release.set()
    for _ in range(10):  # until the first leaves the group open and hands the lock over
        if not db._group.lock.contended():
            break
        await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.wait_for(first, 5)
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert done == ["一"] and await _units(db) == ["城关镇", "一"]
    await db.close()


@pytest.mark.sqlite_only("the cache is for a database one process writes (SQLite)")
async def test_a_cached_member_costs_no_statement_and_follows_every_write(tmp_path):
    db = await _database(tmp_path)
    async with db.transaction() as s:
        assert (await Repo(s).members.by_im(20001)).name == "张三"
    statements = db.counters.statements
    async with db.transaction() as s:
        member = await Repo(s).members.by_im(20001)
        assert member.name == "张三"
    assert db.counters.statements == statements  # from the cache: no SQL at all

    with pytest.raises(RuntimeError):  # changed, then rolled back: the cache forgets it
        async with db.transaction() as s:
            member = await Repo(s).members.by_im(20001)
            member.name = "李四"
            await s.flush()
            assert (await Repo(s).members.by_im(20001)).name == "李四"
            raise RuntimeError
    async with db.transaction() as s:
        assert (await Repo(s).members.by_im(20001)).name == "张三"

    async with db.transaction() as s:  # changed and committed
        (await Repo(s).members.by_im(20001)).name = "王五"
    async with db.transaction() as s:
        assert (await Repo(s).members.by_im(20001)).name == "王五"

    async with db.transaction() as s:  # a bulk UPDATE clears the cache
        await s.execute(update(Member).values(name="赵六"))
    async with db.transaction() as s:
        assert (await Repo(s).members.by_im(20001)).name == "赵六"
        unit = await Repo(s).units.get((await Repo(s).members.by_im(20001)).unit_id)
        unit.name = "城关镇人民政府"
    async with db.transaction() as s:
        assert (await Repo(s).units.get(1)).name == "城关镇人民政府"
    await db.close()


@pytest.mark.sqlite_only("the cache is for a database one process writes (SQLite)")
async def test_a_read_session_never_caches_its_older_snapshot(tmp_path):
    db = await _database(tmp_path)
    async with db.reader() as r:  # a console page: its snapshot begins with its first read
        await r.execute(select(Unit.id))
        async with db.transaction() as w:  # meanwhile an event renames the unit
            (await Repo(w).units.get(1)).name = "城关镇人民政府"
        assert (await Repo(r).units.get(1)).name == "城关镇"  # its snapshot
    async with db.transaction() as s:
        assert (await Repo(s).units.get(1)).name == "城关镇人民政府"
    await db.close()


@pytest.mark.sqlite_only("the cache is for a database one process writes (SQLite)")
async def test_a_failed_member_does_not_make_the_group_forget_what_it_changed(tmp_path):
    db = await _database(tmp_path)
    release = asyncio.Event()

    async def rename_then_fail_the_commit() -> None:
        async with db.transaction() as s:
            await s.execute(text("PRAGMA defer_foreign_keys = ON"))  # checked at COMMIT
            s.add(Member(im_id=20002, name="李四", role=Role.officer, unit_id=999,
                         created_at=NOW, updated_at=NOW))  # fmt: skip
            (await Repo(s).members.by_im(20001)).name = "王五"
            await s.flush()
            await release.wait()

    async def fail() -> None:  # rolled back to its savepoint
        async with db.transaction():
            raise ValueError

    async def read() -> str:  # sees the group's uncommitted rename
        async with db.transaction() as s:
            return (await Repo(s).members.by_im(20001)).name

    tasks = [asyncio.create_task(rename_then_fail_the_commit())]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(fail()), asyncio.create_task(read())]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    async with db.transaction() as s:  # the COMMIT failed: the rename is nowhere
        assert (await Repo(s).members.by_im(20001)).name == "张三"
    await db.close()


async def test_metrics_count_events_statements_and_commits(group):
    async def metrics() -> dict[str, float]:
        async with group.client.get(group.base + "/metrics") as r:
            assert r.status == 200
            lines = [line for line in (await r.text()).splitlines() if not line.startswith("#")]
        return {name: float(value) for name, value in (line.split() for line in lines)}

    before = await metrics()
    await group.say(10020, "/报送 关于冬季防火的情况\n全镇开展防火检查12次。")
    after = await metrics()
    assert "城关镇" in group.last_reply() and "G" in group.last_reply()
    assert after["xinxibot_events_total"] == before["xinxibot_events_total"] + 1
    assert after["xinxibot_sql_statements_total"] > before["xinxibot_sql_statements_total"]
    assert after["xinxibot_sql_commits_total"] > before["xinxibot_sql_commits_total"]
    assert await group.count(Draft) == 1
