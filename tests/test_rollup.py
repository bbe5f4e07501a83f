"""Rollups: the standings read from them equal the standings counted from the raw rows,
over any range, after every kind of change; `xinxibot db verify` finds a rollup row
that disagrees (and says so, exit status 1) and `--repair` rewrites it.

Every test that runs the bot also ends with the same check (tests/conftest.py)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy import and_, case, delete, func, literal, or_, select, text, update

from handlers.scoring import rescore
from storage import rollup
from storage import standings as st
from storage.models import Adoption, Draft, DraftStatus, Instruction, PointsEntry, Unit, UnitKind
from storage.queries import Repo, content_hash

from .conftest import COORDINATOR, rollup_differences
from .test_standings import rules_file, run_cli


def ranges(now: datetime) -> list[tuple[datetime, datetime, datetime | None]]:
    """Ranges the bot asks for, and awkward ones: partial days and months, a year to
    date up to now + 1 s with the week's comparison point, empty and inverted ones."""
    week = st.period_containing("week", now)
    out: list[tuple[datetime, datetime, datetime | None]] = []
    for kind in ("week", "month", "quarter", "year"):
        p = st.period_containing(kind, now)
        out += [(p.start, st.shown_until(p, now), None), (p.start, p.end, None)]
        before = st.previous(p)
        out.append((before.start, before.end, None))
    year = st.period_containing("year", now)
    out += [
        (year.start, now + timedelta(seconds=1), week.start),
        (year.start, week.end, week.start),
        (year.start, week.end, year.start - timedelta(days=3)),  # comparison before the start
        (datetime(2026, 10, 3, 8, 30), datetime(2026, 11, 20, 17, 45), datetime(2026, 11, 5, 12)),
        (datetime(2026, 10, 31, 23, 59), datetime(2026, 11, 1, 0, 1), None),
        (datetime(2026, 11, 18, 9), datetime(2026, 11, 18, 11), None),  # within one day
        (datetime(2026, 9, 15, 6), datetime(2026, 12, 1), None),
        (datetime(2025, 12, 31, 12), datetime(2026, 11, 30, 12), datetime(2026, 3, 1)),
        (now, now, None),
        (now, now - timedelta(days=2), None),
    ]
    return out


async def counted_from_rows(db, start, end, compare_end=None) -> list[st.UnitStanding]:
    """The standings as they were computed before the rollups: one GROUP BY per table over
    the raw rows (a copy kept here as the independent reference)."""
    submitted = (
        select(Draft.unit_id, func.count())
        .where(Draft.piece_at >= start, Draft.piece_at < end, st.counted())
        .group_by(Draft.unit_id)
    )
    adopted = (
        select(Adoption.unit_id, Adoption.level, func.count())
        .where(Adoption.at >= start, Adoption.at < end, Adoption.revoked_at.is_(None))
        .group_by(Adoption.unit_id, Adoption.level)
    )
    instructions = (
        select(Instruction.unit_id, func.count())
        .where(Instruction.at >= start, Instruction.at < end)
        .group_by(Instruction.unit_id)
    )
    before = (
        case((PointsEntry.at < compare_end, PointsEntry.points), else_=0.0)
        if compare_end
        else literal(0.0)
    )
    points = (
        select(PointsEntry.unit_id, func.sum(PointsEntry.points), func.sum(before))
        .where(PointsEntry.at >= start, PointsEntry.at < end, PointsEntry.void.is_(False))
        .group_by(PointsEntry.unit_id)
    )
    existed = and_(Unit.created_at < end, or_(Unit.retired_at.is_(None), Unit.retired_at > start))
    async with db.reader() as s:
        units = (await s.execute(select(Unit.id, Unit.name, Unit.kind, Unit.klass, existed))).all()
        submitted, adopted, instructions, points = [
            (await s.execute(q)).all() for q in (submitted, adopted, instructions, points)
        ]
    with_figures = {row[0] for part in (submitted, adopted, instructions, points) for row in part}
    rows = {
        u: st.UnitStanding(u, name, kind, klass)
        for u, name, kind, klass, in_period in units
        if in_period or u in with_figures
    }
    for unit_id, n in submitted:
        if unit_id in rows:
            rows[unit_id].submitted = n
    for unit_id, level, n in adopted:
        if unit_id in rows:
            rows[unit_id].adopted[level] = n
    for unit_id, n in instructions:
        if unit_id in rows:
            rows[unit_id].instructions = n
    if compare_end is not None:
        for r in rows.values():
            r.points_before = 0.0
    for unit_id, p, b in points:
        if unit_id in rows:
            rows[unit_id].points = round(float(p), 2)
            if compare_end is not None:
                rows[unit_id].points_before = round(float(b), 2)
    return st.rank(list(rows.values()))


async def assert_rollups_equal_raw(db, now: datetime) -> None:
    for start, end, compare_end in ranges(now):
        from_rollups = await st.standings(db, start, end, compare_end)
        assert from_rollups == await st.standings(db, start, end, compare_end, rollups=False)
        assert from_rollups == await counted_from_rows(db, start, end, compare_end), (
            start,
            end,
            compare_end,
        )
        missed = await st.topics_missed(db, start, end)
        assert missed == {
            u: int(f[rollup.FIGURES.index("topics_missed")])
            for u, f in (await rollup.totals(db, start, end, rollups=False)).items()
            if f[rollup.FIGURES.index("topics_missed")]
        }
    assert await rollup.verify(db) == []


async def drafts(h) -> list[int]:
    return [d.id for d in await h.drafts()]


async def test_standings_from_rollups_equal_the_raw_rows_through_the_bot(group, tmp_path):
    """Submitted over several days; withdrawn; returned and revised; adopted, revoked,
    adopted jointly; an instruction; forwarded; rescored (void and new points rows);
    a unit retired. After each step the two computations agree on every range."""
    h, db = group, group.bot.db
    await h.say(COORDINATOR, "/添加单位 文江镇 乡镇")
    await h.register(10040, "文江镇", "赵敏")
    h.clock.set(datetime(2026, 10, 30, 16, 0))
    await h.say(10020, "/报送 十月底的信息\n正文零")
    h.clock.set(datetime(2026, 11, 17, 9, 30))
    await h.say(10020, "/报送 城关镇推进人居环境整治\n正文一")
    await h.say(10020, "/报送 城关镇开展森林防火\n正文二")
    await h.say(10030, "/报送 经信局稳工业\n正文三")
    await h.say(10040, "/报送 文江镇冬季防火工作\n正文四")
    october, first, second, third, fourth = await drafts(h)
    await assert_rollups_equal_raw(db, h.clock.now())

    await h.say(10020, f"/撤回 G{second}")  # withdrawn: no longer counted
    await h.say(COORDINATOR, f"/退回 G{first} 请补充数据")
    h.clock.set(datetime(2026, 11, 18, 10, 0))
    await h.say(10020, f"/报送 #G{first} 城关镇推进人居环境整治\n正文一，补充了数据")
    revision = (await drafts(h))[-1]
    await assert_rollups_equal_raw(db, h.clock.now())

    await h.say(COORDINATOR, f"/采用 G{revision} 市")
    await h.say(COORDINATOR, f"/采用 G{october} 县")
    await h.say(COORDINATOR, f"/采用 G{october} 县 撤销")  # revoked: gone from the counts
    await h.say(COORDINATOR, f"/采用 G{third} 市 综合 合并 G{fourth}")
    await h.say(COORDINATOR, f"/批示 G{third} 省领导 请省经信厅研究")
    await h.say(COORDINATOR, f"/上报 G{revision} 省")
    await assert_rollups_equal_raw(db, h.clock.now())

    # rescore with other points: the old rows void, new ones written
    rules = rules_file(
        tmp_path / "new.toml",
        ("combined = 1", "combined = 2"),
        ('version = "2026"', 'version = "2027"'),
    )
    from bot.rules import load_rules

    assert await rescore(db, load_rules(rules), datetime(2026, 1, 1))
    await assert_rollups_equal_raw(db, h.clock.now())

    h.clock.set(datetime(2026, 11, 19, 11, 0))
    await h.say(COORDINATOR, "/停用单位 经信局")
    await h.say(10020, "/排行 月")
    ranking = h.last_reply()
    assert "经信局" in ranking and "城关镇" in ranking
    await assert_rollups_equal_raw(db, h.clock.now())
    await assert_rollups_equal_raw(db, datetime(2027, 1, 5, 9, 0))  # next year: the unit left


async def test_every_kind_of_write_keeps_the_rollups(tmp_path, fake_onebot):
    """Rows inserted, changed column by column (status, live, piece_at, unit, level,
    revoked, void, points, kind), updated in bulk, deleted, and a savepoint rolled back:
    a random history of such writes, checked against the raw rows as it goes."""
    from .conftest import start_harness

    h, server = await start_harness(tmp_path, fake_onebot)
    db = h.bot.db
    rng = random.Random(17)
    base = datetime(2026, 9, 1)

    def moment() -> datetime:
        return base + timedelta(seconds=rng.randrange(0, 100 * 86400))

    try:
        async with db.transaction() as s:
            repo = Repo(s)
            units = [
                await repo.units.create(f"单位{i}", UnitKind.township, [], base) for i in range(4)
            ]
            member = await repo.members.ensure(90001, "信息员", base)
        unit_ids = [u.id for u in units]
        for step in range(12):
            async with db.transaction() as s:
                for _ in range(15):
                    at = moment()
                    unit_id = rng.choice(unit_ids)
                    title = f"信息{rng.random()}"
                    draft = Draft(
                        unit_id=unit_id, submitter_id=member.id, title=title,
                        content_hash=content_hash(title, ""), submitted_at=at, piece_at=at,
                        status=rng.choice(list(DraftStatus)), live=rng.random() < 0.8,
                    )  # fmt: skip
                    s.add(draft)
                    await s.flush()
                    level = rng.choice(rollup.LEVELS)
                    s.add(Adoption(draft_id=draft.id, unit_id=unit_id, outlet="刊物", level=level,
                                   form="full", at=moment(), by=member.id))  # fmt: skip
                    s.add(Instruction(draft_id=draft.id, unit_id=unit_id, level=level,
                                      at=moment(), by=member.id))  # fmt: skip
                    s.add(PointsEntry(unit_id=unit_id, draft_id=draft.id, points=rng.choice([0, 0.33, 1.5, 3]),
                                      kind=rng.choice(["adoption", "topic_missed"]), rule_version="x",
                                      at=moment(), void=rng.random() < 0.2))  # fmt: skip
                await s.flush()
                # the ORM changes single columns of loaded rows
                for d in (await s.execute(select(Draft).order_by(Draft.id))).scalars():
                    r = rng.random()
                    if r < 0.1:
                        d.status = rng.choice(list(DraftStatus))
                    elif r < 0.2:
                        d.live = not d.live
                    elif r < 0.25:
                        d.piece_at = moment()
                    elif r < 0.3:
                        d.unit_id = rng.choice(unit_ids)
                for a in (await s.execute(select(Adoption))).scalars():
                    r = rng.random()
                    if r < 0.1:
                        a.revoked_at = None if a.revoked_at else moment()
                    elif r < 0.15:
                        a.level = rng.choice(rollup.LEVELS)
                    elif r < 0.2:
                        a.at = moment()
                for p in (await s.execute(select(PointsEntry))).scalars():
                    r = rng.random()
                    if r < 0.1:
                        p.void = not p.void
                    elif r < 0.15:
                        p.points = round(rng.uniform(-2, 5), 2)
                    elif r < 0.2:
                        p.kind = "topic_missed" if p.kind != "topic_missed" else "base"
                    elif r < 0.25:
                        p.at = moment()
                # bulk statements, as rescore and the revision code write them
                since = moment()
                await s.execute(
                    update(PointsEntry).where(PointsEntry.at >= since).values(void=True)
                )
                await s.execute(update(Draft).where(Draft.id % 7 == step % 7).values(live=False))
                await s.execute(
                    update(Instruction).where(Instruction.id % 5 == step % 5).values(at=moment())
                )
                if step % 3 == 2:
                    await s.execute(delete(Instruction).where(Instruction.id % 4 == 0))
                    await s.execute(
                        delete(PointsEntry).where(PointsEntry.id % 9 == 0, PointsEntry.void)
                    )
                # one event's work rolled back to its savepoint: its rollup changes go too
                nested = await s.begin_nested()
                await s.execute(update(PointsEntry).values(points=PointsEntry.points + 100))
                await s.execute(update(Draft).values(status=DraftStatus.submitted, live=True))
                await nested.rollback()
            await assert_rollups_equal_raw(db, moment())
        # a rolled-back transaction leaves no trace either
        try:
            async with db.transaction() as s:
                await s.execute(update(Adoption).values(revoked_at=None))
                raise RuntimeError("the event failed")
        except RuntimeError:
            pass
        assert await rollup.verify(db) == []
    finally:
        await h.close()
        await server.close()


async def test_verify_finds_a_corrupted_rollup_row_and_repair_rewrites_it(group, tmp_path):
    h = group
    await h.say(10020, "/报送 城关镇信息\n正文")
    async with h.bot.db.transaction() as s:
        unit_id = (await s.execute(select(Unit.id).where(Unit.name == "城关镇"))).scalar_one()
        await s.execute(text("UPDATE rollup SET submitted = submitted + 2 WHERE span = 'month'"))
    [difference] = await rollup.verify(h.bot.db)
    assert (difference.unit, difference.span, difference.figure) == ("城关镇", "month", "submitted")
    assert (difference.stored, difference.expected) == (3, 1)
    assert difference.unit_id == unit_id

    env = {"PATH": "/usr/bin:/bin", "XINXIBOT_BOT_DATABASE": h.bot.config.bot.database}
    found = run_cli("db", "verify", cwd=tmp_path, env=env)
    assert found.returncode == 1, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0].startswith("【不一致】统计汇总与原始记录有 1 处不同")
    assert lines[1] == f"单位“城关镇”（编号 {unit_id}）2026年11月 报送：汇总为 3，按原始记录应为 1"
    assert "xinxibot db verify --repair" in lines[-1]

    repaired = run_cli("db", "verify", "--repair", cwd=tmp_path, env=env)
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stdout.splitlines()[-1] == "已按原始记录重建统计汇总，复查一致。"
    clean = run_cli("db", "verify", cwd=tmp_path, env=env)
    assert clean.returncode == 0 and clean.stdout.startswith("【通过】"), clean.stdout
    assert await rollup_differences(h.bot.config.bot.database) == []
    await h.say(10020, "/排行 月")
    assert "城关镇 0分（报送1条" in h.last_reply(), h.last_reply()


@pytest.mark.no_database
def test_a_range_is_read_from_years_months_days_and_raw_edges():
    d = lambda *a: datetime(*a).date()  # noqa: E731
    # the year to date: this year's row, less what lies after now (nothing, normally)
    p = rollup.plan(datetime(2026, 1, 1), datetime(2026, 11, 23, 9, 0, 1))
    assert p.terms == (
        (-1, "day", d(2026, 11, 24), d(2026, 12, 1)),
        (-1, "month", d(2026, 12, 1), d(2027, 1, 1)),
        (1, "year", d(2026, 1, 1), d(2027, 1, 1)),
    )
    assert p.edges == ((-1, datetime(2026, 11, 23, 9, 0, 1), datetime(2026, 11, 24)),)
    # a week: its days
    assert rollup.plan(datetime(2026, 11, 16), datetime(2026, 11, 23)) == rollup.Plan(
        ((1, "day", d(2026, 11, 16), d(2026, 11, 23)),), ()
    )
    # a partial first day from the raw rows; whole months in the middle
    p = rollup.plan(datetime(2026, 10, 3, 8, 30), datetime(2026, 12, 2))
    assert p.edges == ((1, datetime(2026, 10, 3, 8, 30), datetime(2026, 10, 4)),)
    assert p.terms == (  # October as its month less its first three days
        (-1, "day", d(2026, 10, 1), d(2026, 10, 4)),
        (1, "day", d(2026, 12, 1), d(2026, 12, 2)),
        (1, "month", d(2026, 10, 1), d(2026, 12, 1)),
    )
    assert rollup.plan(datetime(2026, 11, 18, 9), datetime(2026, 11, 18, 11)) == rollup.Plan(
        (), ((1, datetime(2026, 11, 18, 9), datetime(2026, 11, 18, 11)),)
    )
    assert rollup.plan(datetime(2026, 11, 18), datetime(2026, 11, 18)) == rollup.Plan((), ())
