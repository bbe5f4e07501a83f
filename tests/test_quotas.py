"""Quotas and reminders to lagging units, on the moved clock (October 2026 has a holiday week)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select, update

from handlers.quotas import reminder_times
from storage.models import PointsEntry, Quota, ReminderLog, Unit

from .conftest import COORDINATOR, GROUP, populate, start_harness
from .test_standings import rules_file

OCT_8 = datetime(2026, 10, 8, 9, 0)  # first working day after the National Day week


@pytest.fixture
async def october(tmp_path, fake_onebot):
    """Three units from 8 October: 城关镇 (李明), 经信局 (周强), 文江镇 (no officer);
    every unit must submit 6 drafts a month; base points 10 for meeting it."""
    rules = rules_file(tmp_path / "rules.toml", ("monthly_quota_met = 0", "monthly_quota_met = 10"))
    harness, server = await start_harness(
        tmp_path, fake_onebot, start=OCT_8, bot__scoring=str(rules)
    )
    await populate(harness)
    await harness.say(COORDINATOR, "/添加单位 文江镇")
    await harness.say(COORDINATOR, "/设任务 全部 月 报送 6")
    harness.fake.clear()
    yield harness
    await harness.close()
    await server.close()


async def submit(harness, user: int, n: int, tag: str) -> None:
    for i in range(n):
        await harness.say(user, f"/报送 {tag}第{i}条\n正文{tag}{i}")


async def test_bad_quota_commands_change_nothing(group):
    cases = [
        ("/设任务 城关镇 月 报送 -3", "任务数量“-3”无效"),
        ("/设任务 城关镇 月 报送 0.5", "任务数量“0.5”无效"),
        ("/设任务 城关镇 月 字数 4", "无法识别任务类型“字数”"),
        ("/设任务 城关镇 周 报送 4", "无法识别周期“周”"),
        ("/设任务 城关乡 月 报送 4", "未找到单位“城关乡”。您是否指：城关镇"),
        ("/设任务 城关镇 月 报送", "格式不正确"),
    ]
    for text, reply in cases:
        await group.say(COORDINATOR, text)
        assert reply in group.last_reply(), text
    async with group.bot.db.transaction() as s:
        await s.execute(update(Unit).where(Unit.name == "经信局").values(active=False))
    await group.say(COORDINATOR, "/设任务 经信局 年 积分 30")
    assert "已撤销，不能设定任务" in group.last_reply()
    await group.say(10020, "/设任务 城关镇 月 报送 4")
    assert "仅限协调员使用" in group.last_reply()
    async with group.bot.db.reader() as s:
        assert (await s.execute(select(Quota))).first() is None
    await group.say(COORDINATOR, "/设任务 城关镇 年 积分 12.5")
    assert "已设定城关镇每年积分任务12.5分" in group.last_reply()


async def test_unit_quota_overrides_and_history_is_kept(october):
    h = october
    await h.say(COORDINATOR, "/设任务 城关镇 月 报送 2")
    await h.say(COORDINATOR, "/设任务 城关镇 年 积分 30")  # several quotas per unit
    await h.say(COORDINATOR, "/设任务 城关镇 月 报送 3")
    assert "原为2条，此前各期仍按原任务考核" in h.last_reply()
    await h.tell(10020, "/任务")
    text = h.last_reply()
    assert "本月报送：0/3条（0%）" in text and "本年度积分：0/30分" in text
    await h.tell(10030, "/任务")
    assert "本月报送：0/6条" in h.last_reply()
    await h.tell(10030, "/任务 城关镇")
    assert "只能查看本单位" in h.last_reply()
    async with h.bot.db.reader() as s:
        rows = (
            await s.execute(select(Quota.scope, Quota.target, Quota.valid_to).order_by(Quota.id))
        ).all()
    assert [(scope, target, ended is not None) for scope, target, ended in rows] == [
        ("all", 6, False), ("unit", 2, True), ("unit", 30, False), ("unit", 3, False),
    ]  # fmt: skip


async def test_every_unit_is_judged_by_its_own_quota_in_the_overview(october):
    h = october
    await h.say(COORDINATOR, "/添加单位 新华镇 乡镇")  # the same kind as 城关镇, added later
    await h.say(COORDINATOR, "/设任务 新华镇 月 报送 1")
    h.clock.set(datetime(2026, 10, 15, 9, 0))  # six of October's 18 working days passed
    await h.tell(COORDINATOR, "/任务")
    overview = h.last_reply()
    assert "城关镇 本月报送 0/6条" in overview  # the all-units quota
    assert "新华镇 本月报送 0/1条" in overview  # its own, not its kind's neighbour's


async def test_pro_rating_across_october_with_its_holiday_week(october):
    h = october
    # October 2026 has 18 working days (1-7 off, Saturday the 10th worked); by the morning
    # of the 15th six have passed (8, 9, 10, 12, 13, 14): a quota of 6 expects 2 by then.
    await submit(h, 10020, 2, "城关镇")
    await submit(h, 10030, 1, "经信局")
    h.clock.set(datetime(2026, 10, 15, 9, 0))
    await h.tell(COORDINATOR, "/任务 经信局")
    assert "本月报送：1/6条（16%），按进度应达2，期末前还需5条，进度落后" in h.last_reply()
    await h.tell(COORDINATOR, "/任务 城关镇")
    assert "本月报送：2/6条（33%），按进度应达2，期末前还需4条\n" in h.last_reply() + "\n"


async def test_scheduled_reminder_mentions_exactly_the_lagging_units(october):
    h = october
    await submit(h, 10020, 2, "城关镇")  # on track
    await submit(h, 10030, 1, "经信局")  # behind
    h.fake.clear()
    await h.advance_to(datetime(2026, 10, 15, 9, 29))
    assert h.fake.sent() == []
    await h.advance_to(datetime(2026, 10, 15, 9, 30))  # schedule "15 09:30"
    [(kind, target, segments)] = [m for m in h.fake.sent() if m[0] == "group"]
    assert (kind, target) == ("group", GROUP)
    assert [s["data"]["qq"] for s in segments if s["type"] == "at"] == ["10030"]
    text = h.fake.texts("group")[0]
    assert "经信局：本月报送1/6条，按进度应达2，期末前还需5条" in text
    assert "城关镇" not in text and "文江镇" not in text  # 文江镇 has no officer to @
    [digest] = h.fake.texts("private", COORDINATOR)
    assert "进度落后的单位2个" in digest and "经信局" in digest
    assert "无在册信息员、未能在群内提醒：文江镇" in digest
    async with h.bot.db.reader() as s:
        logged = (await s.execute(select(ReminderLog.unit_id, ReminderLog.stage))).all()
    assert len(logged) == 2 and {stage for _, stage in logged} == {"scheduled"}
    # no second reminder of the same quota the same day
    h.fake.clear()
    await h.say(COORDINATOR, "/催报")
    assert h.fake.sent() == [("group", GROUP, h.fake.sent()[0][2])]
    assert "今日均已提醒过，未重复发送" in h.last_reply()
    await h.tell(10030, "/任务")
    assert "最近一次催报：2026-10-15 09:30" in h.last_reply()


async def test_escalation_after_three_lagging_runs(october):
    h = october
    for day in (12, 13, 14):
        await h.advance_to(datetime(2026, 10, day, 10, 0))
        await h.say(COORDINATOR, "/催报")
    digests = h.fake.texts("private", COORDINATOR)
    assert "建议电话督促" not in digests[1]
    assert "连续3次催报仍落后、建议电话督促：城关镇、文江镇、经信局" in digests[2]


async def test_base_points_at_month_end(october):
    h = october
    await h.say(COORDINATOR, "/设任务 经信局 月 报送 0")  # 经信局: no monthly quota
    await submit(h, 10020, 6, "城关镇")  # met
    await submit(h, 10030, 7, "经信局")  # no quota: no base points
    await h.advance_to(datetime(2026, 11, 1, 0, 10))
    async with h.bot.db.reader() as s:
        rows = (await s.execute(select(Unit.name, PointsEntry.kind, PointsEntry.points, PointsEntry.at)
                                .join(Unit, Unit.id == PointsEntry.unit_id))).all()  # fmt: skip
    assert rows == [("城关镇", "base", 10.0, datetime(2026, 10, 31, 23, 59, 59))]
    await h.advance(hours=1)
    async with h.bot.db.reader() as s:
        assert len((await s.execute(select(PointsEntry))).all()) == 1  # once
    assert dict(h.bot.scheduler.upcoming())["quota:base"] == datetime(2026, 12, 1, 0, 10)


async def test_reminder_days_follow_the_calendar(group):
    app = group.bot
    app.config.schedule.quota_reminders = ["31 09:30", "15 09:30", "-3 09:30"]
    # February 2026: the 28th is a Saturday worked in exchange for the Spring Festival;
    # the 15th falls in the holiday and moves back to Saturday the 14th, also worked.
    assert reminder_times(app, 2026, 2) == [datetime(2026, 2, 14, 9, 30), datetime(2026, 2, 26, 9, 30),
                                            datetime(2026, 2, 28, 9, 30)]  # fmt: skip
    # February 2027 (fallback Mon-Fri): the 28th is a Sunday -> Friday the 26th
    assert datetime(2027, 2, 26, 9, 30) in reminder_times(app, 2027, 2)
    # November 2026: the third working day before the month's end is the 26th
    assert datetime(2026, 11, 26, 9, 30) in reminder_times(app, 2026, 11)


async def test_missing_calendar_of_next_year_is_told_to_coordinators_once(tmp_path, fake_onebot):
    """From 1 December, at the first posting time, every coordinator is told privately that
    the installed chinesecalendar lacks next year; once, not on every tick or day."""
    harness, server = await start_harness(tmp_path, fake_onebot, start=datetime(2026, 11, 30, 9))
    try:
        await populate(harness)
        harness.bot.calendar.covers = lambda year: year != 2027  # the package as installed
        await harness.bot.tick()  # November: not yet
        harness.clock.set(datetime(2026, 12, 1, 6, 30))  # quiet hours: not yet
        await harness.bot.tick()
        await harness.settle()
        assert harness.fake.texts("private", COORDINATOR) == []
        harness.clock.set(datetime(2026, 12, 1, 9, 0))
        await harness.bot.tick()
        await harness.bot.tick()
        harness.clock.set(datetime(2026, 12, 2, 9, 0))
        await harness.bot.tick()
        await harness.settle()
        [warning] = harness.fake.texts("private", COORDINATOR)
        assert warning.startswith(
            "日历提醒：本机安装的 chinesecalendar 尚无2027年的国务院节假日安排"
        )
        assert "pip install -U chinesecalendar" in warning
        assert harness.fake.texts("group", GROUP) == []  # coordinators only
    finally:
        await harness.close()
        await server.close()


async def test_no_calendar_warning_when_next_year_is_known(tmp_path, fake_onebot):
    harness, server = await start_harness(tmp_path, fake_onebot, start=datetime(2026, 12, 1, 9))
    try:
        await populate(harness)
        harness.bot.calendar.covers = lambda year: True
        await harness.bot.tick()
        await harness.settle()
        assert harness.fake.texts("private", COORDINATOR) == []
    finally:
        await harness.close()
        await server.close()
