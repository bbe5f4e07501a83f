"""The numbers that go into official 通报 (issue 13): a piece counted once, units judged
only while they exist, the monthly report, exports of closed periods, no double posts,
exemptions, classes ranked separately and the 约稿 sanctions of the yearly 评比."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import select

from bot.rules import RuleError, load_rules
from handlers import quotas, registration
from storage.models import Draft, Member, OfficerTerm, PointsEntry, Unit

from .conftest import COORDINATOR, populate, start_harness
from .test_standings import rules_file

ROOT = Path(__file__).resolve().parents[1]


@asynccontextmanager
async def county(tmp_path, fake_onebot, start: datetime, **overrides):
    """The bot from `start`, with 城关镇 (李明, 10020) and 经信局 (周强, 10030)."""
    harness, server = await start_harness(tmp_path, fake_onebot, start=start, **overrides)
    try:
        await populate(harness)
        yield harness
    finally:
        await harness.close()
        await server.close()


async def numbers(harness) -> list[int]:
    return [d.id for d in await harness.drafts()]


def uploaded(harness) -> Path:
    return Path([p for a, p in harness.fake.calls if a.startswith("upload_")][-1]["file"])


def sheet_rows(path: Path, name: str) -> list[list]:
    return [[c.value for c in row] for row in load_workbook(path)[name].iter_rows(min_row=2)]


# ------------------------------------------------------------------ 2: one piece, one count


async def test_a_returned_piece_and_its_revision_count_once(tmp_path, fake_onebot):
    async with county(tmp_path, fake_onebot, datetime(2026, 11, 2, 10, 0)) as h:
        await h.say(COORDINATOR, "/设任务 城关镇 月 报送 4")
        h.clock.set(datetime(2026, 11, 17, 10, 0))
        await h.say(10020, "/报送 城关镇推进人居环境整治\n正文一")
        await h.say(10020, "/报送 城关镇开展森林防火\n正文二")
        first, second = await numbers(h)
        await h.say(COORDINATOR, f"/退回 G{first} 请补充数据")
        h.clock.set(datetime(2026, 11, 18, 10, 0))
        await h.say(10020, f"/报送 #G{first} 城关镇推进人居环境整治\n正文一，补充了数据")
        revision = (await numbers(h))[-1]
        assert h.last_reply().endswith(
            f"编号G{revision}，为G{first}的修改稿，与原稿计为一条（11月第1条）。"
        )
        await h.say(10020, "/报送 城关镇冬季安全生产\n正文三")
        assert h.last_reply().endswith("本月第3条。")
        await h.tell(10020, "/任务")
        assert "本月报送：3/4条（75%）" in h.last_reply()
        await h.say(COORDINATOR, f"/采用 G{revision} 市")  # points follow the live revision
        await h.say(10020, "/排行 周")
        assert "第1名 城关镇 3分（报送3条，采用1条）" in h.last_reply()
        h.clock.set(datetime(2026, 11, 23, 10, 0))
        await h.say(COORDINATOR, "/通报 周")  # the weekly report of 16-22
        weekly = h.last_reply()
        assert (
            "全县报送信息3条，被采用1条" in weekly and "城关镇：报送3条，采用1条，积3分" in weekly
        )
        await h.say(COORDINATOR, "/导出 上周")
        rows = sheet_rows(uploaded(h), "稿件")
        assert [(r[0], r[5], r[9]) for r in rows] == [
            (f"G{revision}", datetime(2026, 11, 17, 10, 0), f"G{first}、G{revision}"),
            (f"G{second}", datetime(2026, 11, 17, 10, 0), None),
            (f"G{revision + 1}", datetime(2026, 11, 18, 10, 0), None),
        ]
        assert sheet_rows(uploaded(h), "排名")[0][4] == len(rows) == 3


async def test_a_piece_counts_in_the_month_of_its_first_submission(tmp_path, fake_onebot):
    async with county(tmp_path, fake_onebot, datetime(2026, 10, 30, 10, 0)) as h:
        await h.say(COORDINATOR, "/设任务 城关镇 月 报送 4")
        await h.say(10020, "/报送 城关镇十月工作\n正文一")
        [october] = await numbers(h)
        await h.say(COORDINATOR, f"/退回 G{october} 请修改")
        h.clock.set(datetime(2026, 11, 2, 10, 0))
        await h.say(10020, f"/报送 #G{october} 城关镇十月工作（修改稿）\n正文一改")
        revision = (await numbers(h))[-1]
        assert h.last_reply().endswith(f"为G{october}的修改稿，与原稿计为一条（10月第1条）。")
        await h.say(10020, "/报送 城关镇十一月工作\n正文二")
        assert h.last_reply().endswith("本月第1条。")
        await h.tell(10020, "/任务")
        assert "本月报送：1/4条" in h.last_reply()
        await h.say(COORDINATOR, "/排行 上月")
        assert "城关镇 0分（报送1条，采用0条）" in h.last_reply()
        # withdrawing a revision gives the piece back to the returned original: still one
        await h.say(COORDINATOR, f"/退回 G{revision + 1} 请修改")
        await h.say(10020, f"/报送 #G{revision + 1} 城关镇十一月工作（修改稿）\n正文二改")
        await h.say(10020, f"/撤回 G{revision + 2}")
        await h.tell(10020, "/任务")
        assert "本月报送：1/4条" in h.last_reply()


# ------------------------------------------------------------------ 4: units judged while they exist


async def test_a_new_unit_is_judged_from_the_day_it_was_added(tmp_path, fake_onebot):
    async with county(tmp_path, fake_onebot, datetime(2026, 11, 2, 10, 0)) as h:
        await h.say(COORDINATOR, "/设任务 全部 年 积分 12")
        await h.say(10020, "/报送 城关镇信息\n正文")
        h.clock.set(datetime(2026, 11, 24, 10, 0))  # a Tuesday
        await h.say(COORDINATOR, "/添加单位 文江镇")
        await h.say(COORDINATOR, "/通报 周")  # last week (16-22): before 文江镇 existed
        weekly = h.last_reply()
        assert "文江镇" not in weekly
        assert "未报送信息的单位（2个）：经信局（连续3周）、城关镇（连续2周）" in weekly
        await h.tell(COORDINATOR, "/任务 文江镇")
        # 28 of 2026's 248 working days are left from the 24th: 12 x 28/248 = 1.35
        assert (
            "本年度积分：0/12分（按实际考核天数折算为1.4分）（0%），按进度应达0，" in h.last_reply()
        )
        h.clock.set(datetime(2026, 11, 30, 10, 0))
        await h.say(COORDINATOR, "/通报 周")  # 23-29: silent from the week it was added
        assert "文江镇（连续1周）" in h.last_reply()


async def test_a_retired_unit_leaves_reminders_and_rankings_with_its_history(tmp_path, fake_onebot):
    async with county(tmp_path, fake_onebot, datetime(2026, 11, 23, 10, 0)) as h:
        await h.say(COORDINATOR, "/设任务 全部 月 报送 6")
        await h.say(10030, "/报送 经信局信息\n正文")
        h.clock.set(datetime(2026, 11, 25, 10, 0))
        await h.say(10030, "/停用单位 经信局")
        assert "仅限协调员使用" in h.last_reply()
        await h.say(COORDINATOR, "/停用单位 经信局")
        assert h.last_reply().strip() == (
            "已停用单位：经信局。自即日起不再催报、不参加以后各期的排名，历史稿件和积分保留；"
            "其信息员周强的登记已注销。"
        )
        await h.say(COORDINATOR, "/停用单位 经信局")
        assert "经信局已于2026-11-25停用" in h.last_reply()
        h.fake.clear()
        await h.say(COORDINATOR, "/催报")
        assert "经信局" not in "".join(h.fake.texts())
        await h.say(10020, "/排行 周")  # this week began before the retirement: still shown
        assert "经信局 0分（报送1条" in h.last_reply()
        await h.say(COORDINATOR, "/单位")
        assert "经信局" not in h.last_reply()
        h.fake.clear()
        await h.advance_to(datetime(2026, 11, 30, 9, 0))  # the report of that week shows it
        assert "经信局：报送1条" in h.fake.texts("group")[-1]
        await h.say(10020, "/排行 周")  # the next week does not
        assert "经信局" not in h.last_reply()
        async with h.bot.db.reader() as s:
            unit = (await s.execute(select(Unit).where(Unit.name == "经信局"))).scalar_one()
            term = (
                await s.execute(select(OfficerTerm).where(OfficerTerm.unit_id == unit.id))
            ).scalar_one()
            assert (unit.active, unit.retired_at) == (False, datetime(2026, 11, 25, 10, 0))
            assert term.ended_at == datetime(2026, 11, 25, 10, 0)
            assert len((await s.execute(select(Draft).where(Draft.unit_id == unit.id))).all()) == 1


async def test_retire_unit_operation_is_what_the_console_calls(group):
    async with group.bot.db.reader() as s:
        coordinator = (
            await s.execute(select(Member).where(Member.im_id == COORDINATOR))
        ).scalar_one()
        unit = (await s.execute(select(Unit).where(Unit.name == "城关镇"))).scalar_one()
    async with group.bot.acting(coordinator) as ctx:
        retired = await registration.retire_unit(ctx, await ctx.repo.units.get(unit.id))
    assert [m.name for m in retired] == ["李明"]
    await group.say(10020, "/报送 标题\n正文")  # its officer is no longer registered
    assert "/绑定" in group.last_reply()


# ------------------------------------------------------------------ 5: the monthly report


async def test_the_monthly_report_shows_quota_completion_and_urgent_pieces(tmp_path, fake_onebot):
    async with county(tmp_path, fake_onebot, datetime(2026, 11, 2, 10, 0)) as h:
        await h.say(COORDINATOR, "/设任务 全部 月 报送 4")
        await h.say(COORDINATOR, "/设任务 经信局 月 采用 1")
        for i in range(4):
            await h.say(10020, f"/报送 城关镇信息{i}\n正文{i}")
        await h.say(10030, "/报送 #紧急 经信局突发事件一\n正文")
        await h.say(10030, "/报送 #紧急 经信局突发事件二\n正文")
        late = (await numbers(h))[-1]
        await h.say(COORDINATOR, f"/迟报 G{late} 超过2小时")
        h.clock.set(datetime(2026, 11, 24, 10, 0))
        await h.say(COORDINATOR, "/添加单位 文江镇")
        await h.say(10020, "/报送 城关镇信息4\n正文4")
        h.fake.clear()
        await h.advance_to(datetime(2026, 12, 1, 9, 0))
        report = h.fake.texts("group")[-1]
        assert report.startswith("【高县政务信息月通报】2026年11月\n一、11月全县报送信息7条")
        assert "本月" not in report
        assert (
            "三、11月任务完成情况：\n"
            "城关镇：报送5/4条（125%），已完成\n"
            "经信局：报送2/4条（50%），未完成；采用0/1条（0%），未完成\n"
            # 5 of November's 21 working days from the 24th: 4 x 5/21 = 0.95
            "文江镇：报送0/4条（按实际考核天数折算为1条）（0%），未完成\n"
            "四、紧急信息：经信局2条（迟报1条）。"
        ) in report


async def test_no_report_speaks_of_this_period_about_a_past_one(group):
    group.clock.set(datetime(2026, 12, 1, 10, 0))
    await group.say(10020, "/报送 城关镇十二月信息\n正文")
    group.clock.set(datetime(2027, 1, 4, 10, 0))
    for word in ("周", "月", "季", "年"):
        await group.say(COORDINATOR, f"/通报 {word}")
        assert not re.search("本周|本月|本季|本年", group.last_reply()), group.last_reply()
    await group.say(COORDINATOR, "/排行 上月")
    assert (
        group.last_reply()
        .strip()
        .startswith("高县政务信息2026年12月积分排行（2026年12月01日至12月31日）")
    )


# ------------------------------------------------------------------ 7: exports of a period


async def test_export_with_a_date_exports_the_whole_period(tmp_path, fake_onebot):
    async with county(tmp_path, fake_onebot, datetime(2026, 11, 20, 10, 0)) as h:
        await h.say(10020, "/报送 城关镇信息\n正文")
        env = {"PATH": "/usr/bin:/bin", "XINXIBOT_BOT_DATABASE": h.bot.config.bot.database}
        out = tmp_path / "11月.xlsx"
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bot.cli", "export", "--period", "month", "--date", "2026-11-01",
             "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert [r[2] for r in sheet_rows(out, "稿件")] == ["城关镇信息"]
        h.clock.set(datetime(2027, 1, 5, 10, 0))
        for word, rows in (("去年", 1), ("上季", 1), ("上月", 0), ("月", 0)):
            await h.say(COORDINATOR, f"/导出 {word}")
            assert len(sheet_rows(uploaded(h), "稿件")) == rows, word
        before = len(h.replies())
        await h.say(COORDINATOR, "/导出 前年")
        # (the quarter's scheduled 评比, due since the clock moved, may be posted meanwhile)
        assert any("格式不正确" in t for t in h.replies()[before:]), h.replies()[before:]


# ------------------------------------------------------------------ 10: no double posts


async def test_the_same_report_or_topic_is_not_posted_twice_unless_asked(group):
    await group.say(COORDINATOR, "/通报 周")
    group.fake.clear()
    await group.say(COORDINATOR, "/通报 周")
    assert [t.strip() for t in group.fake.texts()] == [
        "周通报（2026年11月16日至11月22日）已于11月23日10:00发布，未重复发布。"
        "如需重新发布，请发送“/通报 周 重发”。"
    ]
    await group.say(COORDINATOR, "/通报 周 重发")
    assert group.last_reply().strip().startswith("【高县政务信息周通报】2026年11月16日")
    await group.say(COORDINATOR, "/约稿 冬季安全生产 截止11月30日 对象 城关镇")
    group.fake.clear()
    group.clock.set(datetime(2026, 11, 23, 11, 0))
    await group.say(COORDINATOR, "/约稿 冬季安全生产 截止11月30日 对象 城关镇")
    assert [t.strip() for t in group.fake.texts()] == [
        "约稿Y1《冬季安全生产》（截止11-30 18:00）已于11月23日10:00发布，未重复发布。"
        "如确需再次发布，请在“/约稿”后加“重发”，如：/约稿 重发 冬季安全生产 ……"
    ]
    await group.say(COORDINATOR, "/约稿 重发 冬季安全生产 截止11月30日 对象 城关镇")
    assert group.last_reply().strip().startswith("【约稿Y2】冬季安全生产")
    await group.say(COORDINATOR, "/约稿 冬季安全生产 截止12月1日 对象 城关镇")  # another deadline
    assert group.last_reply().strip().startswith("【约稿Y3】冬季安全生产")


# ------------------------------------------------------------------ 11: exemptions


async def test_an_exempt_unit_is_not_reminded_and_its_share_is_removed(tmp_path, fake_onebot):
    async with county(tmp_path, fake_onebot, datetime(2026, 10, 8, 9, 0)) as h:
        await h.say(COORDINATOR, "/设任务 全部 月 报送 6")
        await h.say(COORDINATOR, "/约稿 防汛工作 截止10月30日 对象 城关镇，经信局")
        await h.say(COORDINATOR, "/暂停催报 城关镇 10月16日 防汛值班")
        assert h.last_reply().strip() == (
            "已暂停对城关镇的催报至2026年10月16日（防汛值班），期间不催报，任务按未暂停的工作日折算。"
        )
        await h.say(10020, "/暂停催报 城关镇 10月16日")
        assert "仅限协调员使用" in h.last_reply()
        await h.say(COORDINATOR, "/暂停催报 城关镇 10月1日")
        assert "不是今后的日期" in h.last_reply()
        h.fake.clear()
        await h.advance_to(datetime(2026, 10, 15, 9, 30))  # the scheduled quota reminder
        mentions = {
            s["data"]["qq"] for _, _, segs in h.fake.sent() for s in segs if s["type"] == "at"
        }
        assert mentions == {"10030"}
        [digest] = h.fake.texts("private", COORDINATOR)
        assert "暂停催报：城关镇（至10月16日，防汛值班）" in digest
        await h.tell(10020, "/任务")
        # October has 18 working days; 8..16 (8 of them, the 10th a Saturday worked) are
        # exempt: 6 x 10/18 = 3.3
        text = h.last_reply()
        assert "本月报送：0/6条（按实际考核天数折算为3.3条）（0%），按进度应达0，" in text
        assert "暂停催报至2026年10月16日（防汛值班）" in text
        h.fake.clear()
        await h.say(COORDINATOR, "/催报 Y1")
        assert "城关镇" not in h.fake.texts("group")[0]
        await h.say(COORDINATOR, "/恢复催报 城关镇")
        assert h.last_reply().strip() == "已恢复对城关镇的催报。"
        await h.say(COORDINATOR, "/恢复催报 城关镇")
        assert "城关镇目前没有暂停催报" in h.last_reply()
        from storage.models import Exemption

        async with h.bot.db.reader() as s:
            [row] = (await s.execute(select(Exemption))).scalars().all()
        assert (row.until.isoformat(), row.reason, row.ended_at) == (
            "2026-10-16", "防汛值班", datetime(2026, 10, 15, 9, 30))  # fmt: skip


async def test_exemption_operations_for_the_console(october_like):
    h, coordinator, unit = october_like
    async with h.bot.acting(coordinator) as ctx:
        row = await quotas.exempt_unit(
            ctx, await ctx.repo.units.get(unit.id), datetime(2026, 12, 20).date(), None
        )
    async with h.bot.acting(coordinator) as ctx:
        ended = await quotas.end_exemption(ctx, await ctx.repo.units.get(unit.id))
    assert ended.id == row.id and ended.ended_by == coordinator.id


@pytest.fixture
async def october_like(group):
    async with group.bot.db.reader() as s:
        coordinator = (
            await s.execute(select(Member).where(Member.im_id == COORDINATOR))
        ).scalar_one()
        unit = (await s.execute(select(Unit).where(Unit.name == "城关镇"))).scalar_one()
    return group, coordinator, unit


# ------------------------------------------------------------------ 12: classes


async def test_classes_are_ranked_separately(tmp_path, fake_onebot):
    async with county(
        tmp_path, fake_onebot, datetime(2026, 11, 23, 10, 0), standings__by_class=True
    ) as h:
        await h.say(COORDINATOR, "/添加单位 文江镇")
        await h.say(COORDINATOR, "/添加单位 财政局 部门 二类部门")
        assert "类别：二类部门" in h.last_reply()
        await h.say(COORDINATOR, "/设类别 经信局 一类部门")
        assert h.last_reply().strip() == "已将经信局的类别设为一类部门。"
        await h.say(COORDINATOR, "/设类别 经信局 三类部门")
        assert (
            h.last_reply().strip()
            == "类别“三类部门”不在配置的类别中。可用类别：乡镇、一类部门、二类部门、直报点。"
        )
        await h.say(10020, "/报送 城关镇信息\n正文")
        await h.say(COORDINATOR, f"/采用 G{(await numbers(h))[-1]} 县")
        await h.say(10020, "/排行")
        assert h.last_reply().split("\n")[1:] == [
            "【乡镇】",
            "第1名 城关镇 1分（报送1条，采用1条），较上周持平",
            "第2名 文江镇 0分（报送0条，采用0条），较上周下降1位",
            "【一类部门】",
            "第1名 经信局 0分（报送0条，采用0条），较上周持平",
            "【二类部门】",
            "第1名 财政局 0分（报送0条，采用0条），较上周持平",
        ]
        await h.say(10020, "/排行 月 乡镇")
        assert h.last_reply().split("\n")[1:] == [
            "【乡镇】",
            "第1名 城关镇 1分（报送1条，采用1条）",
            "第2名 文江镇 0分（报送0条，采用0条）",
        ]
        await h.say(10020, "/排行 月 五类部门")
        assert "可用类别：乡镇、一类部门、二类部门、直报点" in h.last_reply()
        await h.say(COORDINATOR, "/导出 年")
        ranking = sheet_rows(uploaded(h), "排名")
        assert [(r[0], r[1], r[3]) for r in ranking] == [
            (1, "城关镇", "乡镇"), (2, "文江镇", "乡镇"), (1, "经信局", "一类部门"), (1, "财政局", "二类部门"),
        ]  # fmt: skip


def test_the_import_sheet_sets_classes(tmp_path):
    path = tmp_path / "units.xlsx"
    wb = Workbook()
    ws = wb.active
    ws.append(["单位名称", "类型", "类别"])
    ws.append(["经信局", "部门", "一类部门"])
    ws.append(["财政局", "部门", "特类部门"])
    wb.save(path)
    env = {
        "PATH": "/usr/bin:/bin",
        "XINXIBOT_BOT_DATABASE": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
    }
    run = subprocess.run([sys.executable, "-m", "bot.cli", "units", "import", str(path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (
        "第3行「类别」：类别应为配置的类别之一（乡镇、一类部门、二类部门、直报点） 特类部门"
        in run.stdout
    )
    run = subprocess.run([sys.executable, "-m", "bot.cli", "units", "import", str(path), "--skip-bad"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    import sqlite3

    assert sqlite3.connect(tmp_path / "x.db").execute(
        "select name, klass from unit"
    ).fetchall() == [("经信局", "一类部门")]


# ------------------------------------------------------------------ 14: 约稿 sanctions


async def test_units_that_miss_too_many_topics_are_zeroed_in_the_yearly_rating(
    tmp_path, fake_onebot
):
    rules = rules_file(
        tmp_path / "rules.toml",
        ("missed_limit = 0 ", "missed_limit = 2 "),
        ('missed_action = "flag"', 'missed_action = "zero"'),
    )
    async with county(
        tmp_path, fake_onebot, datetime(2026, 11, 2, 10, 0), bot__scoring=str(rules)
    ) as h:
        await h.say(10030, "/报送 经信局信息\n正文")
        await h.say(COORDINATOR, f"/采用 G{(await numbers(h))[-1]} 省")
        await h.say(10020, "/报送 城关镇信息\n正文")
        await h.say(COORDINATOR, f"/采用 G{(await numbers(h))[-1]} 县")
        await h.say(COORDINATOR, "/约稿 一号约稿 截止11月5日 对象 经信局")
        await h.say(COORDINATOR, "/约稿 二号约稿 截止11月6日 对象 经信局，城关镇")
        await h.say(10020, "/报送 #Y2 城关镇回应\n正文")
        await h.advance_to(datetime(2026, 11, 9, 10, 0))  # both deadlines passed
        points_rows = await h.count(PointsEntry)
        h.clock.set(datetime(2027, 1, 4, 10, 0))
        await h.say(COORDINATOR, "/通报 年")
        text = h.last_reply()
        assert "第1名 城关镇 1分" in text and "第2名 经信局 0分" in text
        assert (
            "四、全年约稿未回应达2次的单位：经信局（2次，实得5分），按规则年度积分计为0。" in text
        )
        await h.say(COORDINATOR, "/导出 去年")
        ranking = sheet_rows(uploaded(h), "排名")
        assert [(r[1], r[11], r[12]) for r in ranking] == [("城关镇", 1, 0), ("经信局", 0, 2)]
        assert "按规则年度积分计为0（实得5分）" in ranking[1][13]
        assert await h.count(PointsEntry) == points_rows  # a presentation rule: nothing deleted


def test_the_sanction_keys_are_validated(tmp_path):
    assert load_rules(None).missed_limit == 0  # off by default
    older = rules_file(tmp_path / "older.toml", ("missed_limit = 0 ", "#"), ("missed_action", "#"))
    assert (load_rules(older).missed_limit, load_rules(older).missed_action) == (0, "flag")
    for old, new, key in (
        ('missed_action = "flag"', 'missed_action = "ban"', "topic.missed_action"),
        ("missed_limit = 0 ", "missed_limit = -1 ", "topic.missed_limit"),
        ("missed_limit = 0 ", "missed_limit = 1.5 ", "topic.missed_limit"),
    ):
        with pytest.raises(RuleError) as err:
            load_rules(rules_file(tmp_path / "r.toml", (old, new)))
        assert err.value.key == key


async def test_the_migration_makes_pieces_of_existing_revision_chains(tmp_path):
    """A database from before pieces: G1 returned, revised as G2 (withdrawn) and G3; G4 alone."""
    from sqlalchemy import text

    from storage import migrate
    from storage.db import Database

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    await migrate.upgrade(db.engine, "0001")
    rows = [(1, None, "returned", "2026-10-30"), (2, 1, "withdrawn", "2026-11-02"),
            (3, 1, "submitted", "2026-11-03"), (4, None, "submitted", "2026-11-04")]  # fmt: skip
    async with db.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO unit VALUES (1, '城关镇', 'township', NULL, 1, '2026-01-01')")
        )
        await conn.execute(
            text(
                "INSERT INTO member VALUES (1, 10020, '李明', 'officer', 1, '2026-01-01', '2026-01-01')"
            )
        )
        for draft_id, revision_of, status, day in rows:
            await conn.execute(
                text("INSERT INTO draft (id, unit_id, submitter_id, title, body, category, urgent, source, status, "
                     "revision_of, content_hash, submitted_at) VALUES (:id, 1, 1, 't', '', '动态', 0, 'group', "
                     ":status, :rev, :id, :day)"),
                {"id": draft_id, "rev": revision_of, "status": status, "day": f"{day} 10:00:00.000000"},
            )  # fmt: skip
    await migrate.upgrade(db.engine)
    async with db.reader() as s:
        got = (await s.execute(select(Draft.id, Draft.piece_id, Draft.piece_at, Draft.live))).all()
    assert [(i, p, at.date().isoformat(), live) for i, p, at, live in got] == [
        (1, None, "2026-10-30", False), (2, 1, "2026-10-30", False),
        (3, 1, "2026-10-30", True), (4, None, "2026-11-04", True),
    ]  # fmt: skip
    async with db.transaction() as s:  # numbers are still never reused after the rebuild
        await s.execute(text("DELETE FROM draft WHERE id = 4"))
    async with db.engine.begin() as conn:
        await conn.execute(text("INSERT INTO draft (unit_id, submitter_id, title, body, category, urgent, source, "
                                "status, content_hash, submitted_at, piece_at, live) VALUES (1, 1, 't', '', '动态', "
                                "0, 'group', 'submitted', 'x', '2026-11-05', '2026-11-05', 1)"))  # fmt: skip
        assert (await conn.execute(text("SELECT max(id) FROM draft"))).scalar() == 5
    await db.close()
