"""Topic requests (约稿) from publication to deadline, on the moved clock."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update

from storage.models import ReminderLog, Topic, TopicClaim, Unit

from .conftest import COORDINATOR, GROUP, fixture, populate, start_harness

ROOT = Path(__file__).resolve().parent.parent


def at_ids(segments: list[dict]) -> list[str]:
    return [s["data"]["qq"] for s in segments if s["type"] == "at"]


async def topics(group) -> list[Topic]:
    async with group.bot.db.reader() as s:
        return list((await s.execute(select(Topic).order_by(Topic.id))).scalars())


def jobs(group) -> dict[str, datetime]:
    return {k: v for k, v in group.bot.scheduler.upcoming() if k.startswith("topic:")}


async def test_publish_from_fullwidth_fixture_mentions_target_officers(group):
    await group.say(COORDINATOR, "/添加单位 文江镇")
    await group.register(10021, "文江镇", "陈芳")
    group.fake.clear()
    await group.post_event(fixture("group_message_fullwidth.json"))
    [topic] = await topics(group)
    assert (topic.title, topic.deadline) == (
        "关于冬季安全生产的经验做法",
        datetime(2026, 12, 5, 17, 0),
    )
    assert topic.brief == "请重点反映隐患排查的新举措。"
    [(kind, target, segments)] = group.fake.sent()
    assert (kind, target) == ("group", GROUP)
    assert at_ids(segments) == ["10020", "10030"]  # not 陈芳 of 文江镇
    text = group.last_reply()
    assert "【约稿Y1】关于冬季安全生产的经验做法" in text and "约稿对象：城关镇、经信局" in text
    assert jobs(group) == {
        # 24 h before is Friday 17:00; 2 h before, Sat 12-05 15:00, is no working day: back
        # to the last working time before it, Friday 17:00 too: of two on one day, the later
        "topic:1:2h": datetime(2026, 12, 4, 17, 0),
        "topic:1:close": datetime(2026, 12, 7, 8, 0),  # Sat 12-05 17:00 -> next working morning
    }


async def test_publish_to_all_units_when_no_target(group):
    await group.say(COORDINATOR, "/约稿 一季度经济运行情况 截止周五\n请各单位报送。")
    [topic] = await topics(group)
    assert topic.all_units and topic.deadline == datetime(2026, 11, 27, 18, 0)
    assert at_ids(group.fake.sent()[-1][2]) == ["10020", "10030"]
    assert "全体单位（2个）" in group.last_reply()


async def test_bad_topic_requests_create_nothing(group):
    cases = [
        ("/约稿 标题 截止1900-01-01", "已过"),
        ("/约稿 标题 截止2026-11-20", "已过"),
        ("/约稿 标题 截止下个月吧", "无法识别截止时间"),
        ("/约稿 截止11月30日", "缺少约稿标题"),
        ("/约稿 只有标题", "缺少截止时间"),
        ("/约稿 标题 截止11月30日 对象 城关乡", "未找到单位“城关乡”。您是否指：城关镇"),
        ("/约稿 标题 截止11月30日 对象 城关镇，城关", "“城关镇”重复出现"),
    ]
    for text, reply in cases:
        await group.say(COORDINATOR, text)
        assert reply in group.last_reply(), text
    async with group.bot.db.transaction() as s:
        await s.execute(update(Unit).where(Unit.name == "经信局").values(active=False))
    await group.say(COORDINATOR, "/约稿 标题 截止11月30日 对象 经信局")
    assert "已撤销" in group.last_reply()
    await group.say(10020, "/约稿 标题 截止11月30日")
    assert "仅限协调员使用" in group.last_reply()
    assert await topics(group) == []
    assert jobs(group) == {}


async def test_coordinator_publishes_in_private(group):
    await group.tell(COORDINATOR, "/约稿 防汛工作 截止11月30日 对象 城关镇")
    sent = group.fake.sent()  # two targets, delivered concurrently: in either order
    assert sorted((k, t) for k, t, _ in sent) == [("group", GROUP), ("private", COORDINATOR)]
    assert "已发布到1个信息工作群" in group.fake.texts("private", COORDINATOR)[0]


async def test_claim_answer_and_list(group):
    await group.say(COORDINATOR, "/约稿 冬季安全生产 截止11月30日17时 对象 城关镇")
    await group.say(10020, "/认领 Y1")
    assert "城关镇已认领约稿Y1" in group.last_reply()
    await group.say(10020, "/认领 y1")
    assert "无需重复认领" in group.last_reply()
    await group.say(10030, "/认领 Y1")
    assert "经信局不在约稿Y1的对象中" in group.last_reply()
    await group.say(COORDINATOR, "/认领 Y1")
    assert "仅限信息员使用" in group.last_reply()
    await group.say(10099, "/认领 Y1")
    assert "仅限已登记人员使用" in group.last_reply()
    await group.say(10020, "/报送 #Y1 城关镇冬季安全生产做法\n正文")
    assert "注意" not in group.last_reply()
    await group.say(10020, "/约稿列表")
    assert (
        "Y1《冬季安全生产》截止2026-11-30 17:00，对象1个单位，已报送1个（城关镇），已认领：城关镇"
        in group.last_reply()
    )
    async with group.bot.db.reader() as s:
        assert len((await s.execute(select(TopicClaim))).all()) == 1


async def test_reminders_name_exactly_the_units_that_have_not_answered(group):
    await group.say(COORDINATOR, "/添加单位 文江镇")  # no officer: listed, nobody to mention
    await group.say(COORDINATOR, "/约稿 冬季安全生产 截止11月26日18时")
    await group.say(10030, "/报送 #Y1 经信局的稿件\n正文")
    group.fake.clear()
    await group.advance_to(datetime(2026, 11, 25, 17, 59))
    assert group.fake.sent() == []
    await group.advance(minutes=1)  # 24 h before
    [(kind, _, segments)] = group.fake.sent()
    text = group.last_reply()
    assert kind == "group" and at_ids(segments) == ["10020"]
    assert "以下2个单位尚未报送" in text and "城关镇" in text and "文江镇（未登记信息员）" in text
    assert "经信局" not in text
    await group.say(10020, "/报送 #Y1 城关镇的稿件\n正文")
    group.fake.clear()
    await group.advance_to(datetime(2026, 11, 26, 16, 0))  # 2 h before: only 文江镇 left
    text = group.last_reply()
    assert (
        at_ids(group.fake.sent()[-1][2]) == []
        and "以下1个单位尚未报送" in text
        and "城关镇" not in text
    )
    async with group.bot.db.reader() as s:
        logged = (await s.execute(select(ReminderLog.day, ReminderLog.stage))).all()
    assert sorted(logged) == [("2026-11-25", "24h"), ("2026-11-25", "24h"), ("2026-11-26", "2h")]


async def test_no_reminder_when_everyone_answered_and_closing_post(group):
    await group.say(COORDINATOR, "/约稿 冬季安全生产 截止11月26日18时 对象 城关镇")
    await group.say(10020, "/报送 #Y1 城关镇的稿件\n正文")
    group.fake.clear()
    await group.advance_to(datetime(2026, 11, 26, 17, 0))
    assert group.fake.sent() == []
    await group.advance_to(datetime(2026, 11, 26, 18, 0))
    assert (
        "【约稿截止】Y1《冬季安全生产》已截止。已报送1个单位：城关镇；未报送0个单位。"
        == group.last_reply()
    )
    [topic] = await topics(group)
    assert topic.status == "closed" and topic.closed_reason == "deadline"
    await group.say(10020, "/报送 #Y1 迟到的稿件\n正文")
    assert "约稿Y1已结束，已按普通稿件登记" in group.last_reply()
    await group.say(10020, "/报送 #Y99 不存在的约稿\n正文")
    assert "约稿Y99不存在" in group.last_reply()
    await group.say(10020, "/认领 Y1")
    assert "已于2026-11-26 18:00结束" in group.last_reply()


async def test_reminder_due_at_2230_moves_back_to_1700(group):
    await group.say(COORDINATOR, "/约稿 夜间截止的约稿 截止11月26日22时30分 对象 城关镇")
    assert jobs(group)["topic:1:24h"] == datetime(2026, 11, 25, 17, 0)
    assert jobs(group)["topic:1:2h"] == datetime(2026, 11, 26, 20, 30)
    group.fake.clear()
    await group.advance_to(datetime(2026, 11, 25, 16, 59))
    assert group.fake.sent() == []
    await group.advance_to(datetime(2026, 11, 25, 17, 0))
    assert "【约稿提醒】Y1" in group.last_reply()


async def test_a_24h_reminder_before_a_weekend_keeps_the_2h_last_call(group):
    """Monday 17:00 deadline: 24 h before is Sunday, so that reminder goes out on Friday at
    17:00, and the 2 h last call on Monday at 15:00 still goes out."""
    await group.say(COORDINATOR, "/约稿 周一截止的约稿 截止11月30日17时 对象 城关镇")
    assert jobs(group) == {
        "topic:1:24h": datetime(2026, 11, 27, 17, 0),
        "topic:1:2h": datetime(2026, 11, 30, 15, 0),
        "topic:1:close": datetime(2026, 11, 30, 17, 0),
    }
    group.fake.clear()
    await group.advance_to(datetime(2026, 11, 27, 17, 0))
    await group.advance_to(datetime(2026, 11, 30, 15, 0))
    reminders = [t for t in group.replies() if "【约稿提醒】Y1" in t]  # the weekly report too
    assert len(reminders) == 2


async def test_close_topic_and_remind_now(group):
    await group.say(COORDINATOR, "/约稿 临时约稿 截止11月30日 对象 城关镇")
    await group.say(COORDINATOR, "/催报 Y1")
    assert "【约稿提醒】Y1《临时约稿》" in group.last_reply()
    await group.say(COORDINATOR, "/催报 Y1")
    assert "今日已提醒过" in group.last_reply()
    await group.say(COORDINATOR, "/结束约稿 Y1")
    assert "已结束，不再提醒" in group.last_reply()
    assert jobs(group) == {}
    await group.say(COORDINATOR, "/催报 Y1")
    assert "已于" in group.last_reply()


async def test_national_day_reminders_move_before_the_holiday(tmp_path, fake_onebot):
    harness, server = await start_harness(tmp_path, fake_onebot, start=datetime(2026, 9, 28, 10, 0))
    try:
        await populate(harness)
        await harness.say(COORDINATOR, "/约稿 国庆期间安全 截止10月2日 对象 城关镇")
        # 24 h before = 10-01 18:00 and 2 h before = 10-02 16:00 fall in the holiday:
        # both move back to the last working day before; on one day, only the later goes.
        assert "topic:1:24h" not in jobs(harness)
        assert jobs(harness)["topic:1:2h"] == datetime(2026, 9, 30, 17, 0)
        assert jobs(harness)["topic:1:close"] == datetime(
            2026, 10, 8, 8, 0
        )  # first working day after
        harness.fake.clear()
        await harness.advance_to(datetime(2026, 9, 30, 17, 0))
        assert len(harness.replies()) == 1 and "【约稿提醒】Y1" in harness.last_reply()
    finally:
        await harness.close()
        await server.close()


async def test_january_2027_deadline_uses_the_fallback_calendar(tmp_path, fake_onebot, caplog):
    caplog.set_level(logging.WARNING)
    harness, server = await start_harness(
        tmp_path,
        fake_onebot,
        start=datetime(2026, 12, 28, 10, 0),
        calendar__holidays=["2027-01-01"],
    )
    try:
        await populate(harness)
        await harness.say(COORDINATOR, "/约稿 新年第一周重点工作 截止2027-01-05 对象 城关镇")
        assert jobs(harness)["topic:1:24h"] == datetime(
            2027, 1, 4, 18, 0
        )  # a Monday, Mon-Fri fallback
        await harness.say(COORDINATOR, "/约稿 元旦值班安排 截止1月2日 对象 城关镇")
        # 24 h before = Fri 2027-01-01 18:00: a holiday by the config list -> 12-31 17:00;
        # 2 h before = Sat 16:00 -> 12-31 17:00 as well: the later one only
        assert jobs(harness)["topic:2:2h"] == datetime(2026, 12, 31, 17, 0)
        assert "topic:2:24h" not in jobs(harness)
        warnings = [
            r for r in caplog.records if "no holiday arrangement for 2027" in r.getMessage()
        ]
        assert len(warnings) == 1
        harness.fake.clear()
        await harness.advance_to(datetime(2027, 1, 4, 18, 0))
        assert any("新年第一周重点工作" in t for t in harness.replies())
    finally:
        await harness.close()
        await server.close()


async def test_restart_between_scheduling_and_firing_fires_once(tmp_path, fake_onebot):
    harness, server = await start_harness(tmp_path, fake_onebot)
    await populate(harness)
    await harness.say(COORDINATOR, "/约稿 跨重启的约稿 截止11月26日18时 对象 城关镇")
    await harness.close()
    await server.close()  # the bot stops; its jobs stay in the database

    # it comes back 30 minutes after the 24 h reminder was due (still useful)
    harness, server = await start_harness(
        tmp_path, fake_onebot, start=datetime(2026, 11, 25, 18, 30)
    )
    try:
        fake_onebot.clear()
        await harness.bot.scheduler.run_due()
        await harness.settle()
        assert [t for t in harness.replies() if "【约稿提醒】Y1" in t] == [harness.last_reply()]
        await harness.advance(minutes=1)
        await harness.bot.scheduler.run_due()
        assert len(harness.replies()) == 1  # never twice
        for target in harness.bot.scheduler.targets():
            assert target in harness.bot.registry.jobs  # every stored job still resolves
        assert set(jobs(harness)) == {"topic:1:2h", "topic:1:close"}
    finally:
        await harness.close()
        await server.close()


async def test_units_missing_a_topic_at_the_deadline_get_the_penalty_row(group):
    from storage.models import PointsEntry

    await group.say(COORDINATOR, "/约稿 冬季安全生产 截止11月26日18时")
    await group.say(10020, "/报送 #Y1 城关镇的稿件\n正文")
    await group.advance_to(datetime(2026, 11, 26, 18, 0))
    async with group.bot.db.reader() as s:
        rows = (
            await s.execute(select(PointsEntry.unit_id, PointsEntry.kind, PointsEntry.points))
        ).all()
        units = dict((await s.execute(select(Unit.id, Unit.name))).all())
    assert [(units[u], k, p) for u, k, p in rows] == [
        ("经信局", "topic_missed", 0.0)
    ]  # default rule: 0


async def test_start_up_gives_every_open_topic_its_jobs(tmp_path, fake_onebot):
    """The topics router's start-up hook schedules what an open topic lacks (a topic
    seeded into the database, as the demo does, or jobs lost with an old job store)."""
    harness, server = await start_harness(tmp_path, fake_onebot)
    await populate(harness)
    await harness.say(COORDINATOR, "/约稿 冬季安全生产 截止11月30日17时 对象 城关镇")
    await harness.say(COORDINATOR, "/约稿 已结束的约稿 截止11月30日17时 对象 城关镇")
    await harness.say(COORDINATOR, "/结束约稿 Y2")
    harness.bot.scheduler.cancel("topic:")
    await harness.close()
    await server.close()

    harness, server = await start_harness(tmp_path, fake_onebot)
    try:
        assert set(jobs(harness)) == {"topic:1:24h", "topic:1:2h", "topic:1:close"}
        fake_onebot.clear()
        await harness.advance_to(jobs(harness)["topic:1:24h"])
        assert "【约稿提醒】Y1" in harness.last_reply()
    finally:
        await harness.close()
        await server.close()


async def test_jobs_missed_while_down_post_at_the_next_posting_time(tmp_path, fake_onebot):
    """Down from Monday morning to Wednesday 22:00: Y1's 24 h reminder (due Wednesday 18:00)
    and Y2's closing post (18:00) are late, in quiet hours: nothing goes out at 22:00; both
    go out at 08:00 on Thursday, once. Y2's reminders, useless after its deadline, never."""
    harness, server = await start_harness(tmp_path, fake_onebot)
    await populate(harness)
    await harness.say(COORDINATOR, "/约稿 周四截止的约稿 截止11月26日18时 对象 城关镇")
    await harness.say(COORDINATOR, "/约稿 周三截止的约稿 截止11月25日18时 对象 城关镇")
    await harness.close()
    await server.close()

    harness, server = await start_harness(
        tmp_path, fake_onebot, start=datetime(2026, 11, 25, 22, 0)
    )
    try:
        fake_onebot.clear()
        await harness.bot.scheduler.run_due()
        await harness.settle()
        assert fake_onebot.sent() == []
        assert dict(harness.bot.scheduler.upcoming())["topic:1:24h"] == datetime(2026, 11, 26, 8)
        await harness.advance_to(datetime(2026, 11, 26, 8, 0))
        posts = "\\n".join(harness.replies())
        assert posts.count("【约稿提醒】Y1") == 1
        assert posts.count("Y2") == 1 and "周三截止的约稿" in posts
        assert "【约稿提醒】Y2" not in posts
        sent = len(fake_onebot.sent())
        await harness.advance(minutes=30)
        await harness.bot.scheduler.run_due()
        assert len(fake_onebot.sent()) == sent  # never twice
    finally:
        await harness.close()
        await server.close()


def documented_examples(command: str) -> list[str]:
    """Every complete `/约稿 …` (or other) example in the help texts and the README: a
    command up to the end of its sentence or code span, placeholders and options
    (`标题 截止时间`, `[…]`, `…`, `|`) excluded — those are usage lines, not examples."""
    sources = [ROOT / "README.md", *sorted((ROOT / "templates").glob("*.j2")),
               ROOT / "templates" / "commands.toml"]  # fmt: skip
    found = []
    for path in sources:
        for m in re.finditer(rf"/{command} [^`“”；;。\n）\"]+", path.read_text(encoding="utf-8")):
            text = m.group(0).strip().rstrip("，、,")
            if not re.search(r"[\[…|{]|截止时间|日期|重发|标题 ", text):
                found.append(text)
    return list(dict.fromkeys(found))


async def test_every_documented_topic_example_publishes(group):
    examples = documented_examples("约稿")
    assert len(examples) >= 3, examples  # the help's and the README's own
    for n, example in enumerate(examples, 1):
        await group.say(COORDINATOR, example)
        assert f"【约稿Y{n}】" in group.last_reply(), (example, group.last_reply())


async def test_every_documented_exemption_example_parses(group):
    examples = documented_examples("暂停催报")
    assert examples
    for example in examples:
        await group.say(COORDINATOR, example)
        assert group.last_reply().startswith(" 已暂停对"), (example, group.last_reply())


async def test_a_deadline_without_the_word_is_found_before_the_targets(group):
    await group.say(COORDINATOR, "/约稿 冬季安全生产经验 周五 对象 城关镇")
    [topic] = await topics(group)
    assert (topic.title, topic.deadline) == ("冬季安全生产经验", datetime(2026, 11, 27, 18, 0))
    await group.say(COORDINATOR, "/约稿 周五例会材料 11-30 17:00")
    topic = (await topics(group))[-1]
    assert (topic.title, topic.deadline) == ("周五例会材料", datetime(2026, 11, 30, 17, 0))
    await group.say(COORDINATOR, "/约稿 没有时间的约稿 对象 城关镇")
    assert "缺少截止时间" in group.last_reply()
    await group.say(COORDINATOR, "/约稿 周五")  # a time and no title
    assert "缺少截止时间" in group.last_reply() or "缺少约稿标题" in group.last_reply()
    assert len(await topics(group)) == 2
