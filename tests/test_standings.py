"""Standings from rows: the seeds' figures, ties, the weekly post, reports, export, rules, rescore."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from bot.rules import DEFAULT_RULES, RuleError, load_rules
from handlers.scoring import adoption_points
from storage import standings as st
from storage.models import Adoption, Draft, PointsEntry, UnitKind
from storage.queries import Repo, content_hash

from .conftest import COORDINATOR, GROUP, populate, start_harness

FORMS = {"全文": "full", "摘编": "excerpt", "综合": "combined"}


def rules_file(path: Path, *replacements: tuple[str, str]) -> Path:
    """The built-in rule file with some lines changed."""
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    return path


async def add_adoptions(
    bot, unit_name: str, outlet_word: str, forms: list[str], at: datetime
) -> None:
    """Rows as the commands write them: a draft, its adoption and its points row each."""
    rules = bot.rules
    outlet = rules.outlet(outlet_word)
    async with bot.db.transaction() as s:
        repo = Repo(s)
        unit = await repo.units.find(unit_name) or await repo.units.create(
            unit_name, UnitKind.direct_point, [], at
        )
        member = await repo.members.ensure(90000 + unit.id, unit_name, at)
        for i, form_word in enumerate(forms):
            title = f"{unit_name}信息{i}-{outlet.level}-{form_word}"
            draft = Draft(unit_id=unit.id, submitter_id=member.id, title=title, body="正文", char_count=2,
                          content_hash=content_hash(title, "正文"), submitted_at=at)  # fmt: skip
            await repo.drafts.create(draft, member)
            form = FORMS[form_word]
            adoption = Adoption(draft_id=draft.id, unit_id=unit.id, outlet=outlet.name, level=outlet.level,
                                form=form, at=at, by=member.id)  # fmt: skip
            await repo.reviews.add(adoption)
            points = adoption_points(rules, outlet, form, draft)
            repo.reviews.add_points(
                unit.id, draft.id, "adoption", adoption.id, points, rules.version, at
            )


async def test_seed_figures_and_ties(group):
    """Jan-Aug of the city in seed 001: 石泉 6 province adoptions 21 points, 白河 6 -> 27,
    汉阴 2 -> 4, 旬阳 3 -> 9 (default rule file: province full 5, excerpt 3, combined 2)."""
    at = datetime(2026, 8, 15, 10, 0)
    await add_adoptions(group.bot, "石泉县", "省", ["全文"] * 3 + ["综合"] * 3, at)
    await add_adoptions(group.bot, "白河县", "省", ["全文"] * 5 + ["综合"], at)
    await add_adoptions(group.bot, "汉阴县", "省", ["综合"] * 2, at)
    await add_adoptions(group.bot, "旬阳县", "省", ["摘编"] * 3, at)
    await add_adoptions(
        group.bot, "平利县", "省刊", ["全文", "全文", "全文", "摘编", "摘编"], at
    )  # also 21
    rows = await st.standings(group.bot.db, datetime(2026, 1, 1), datetime(2026, 9, 1))
    table = [(r.rank, r.name, r.adopted["province"], r.points) for r in rows if r.points]
    assert table == [
        (1, "白河县", 6, 27.0),
        (2, "平利县", 5, 21.0),
        (2, "石泉县", 6, 21.0),  # ties share a rank
        (4, "旬阳县", 3, 9.0),
        (5, "汉阴县", 2, 4.0),
    ]
    group.clock.set(datetime(2026, 9, 1, 10, 0))
    await group.say(10020, "/排行 年")
    text = group.last_reply()
    assert "第1名 白河县 27分（报送6条，采用6条）" in text
    assert "并列第2名 平利县 21分" in text and "并列第2名 石泉县 21分" in text


async def test_a_countys_own_rule_file_totals_its_figures(tmp_path, fake_onebot):
    """Seed 002: 高县 had 3 adoptions by the province's 《川政晨讯》 and 72 by the city's
    《政务信息快报》, 191 points under its rule file (here: 晨讯 5; 快报 3 full, 2 excerpt)."""
    rules = rules_file(
        tmp_path / "gaoxian.toml",
        (
            'name = "省政府办公厅信息刊物"\naliases = ["省刊", "省"]',
            'name = "川政晨讯"\naliases = ["晨讯", "省"]',
        ),
        (
            "points = { full = 3, excerpt = 1.5, combined = 1 }",
            "points = { full = 3, excerpt = 2, combined = 1 }",
        ),
        ('version = "2026"', 'version = "高县2011"'),
    )
    harness, server = await start_harness(
        tmp_path, fake_onebot, start=datetime(2026, 6, 30, 10, 0), bot__scoring=str(rules)
    )
    try:
        at = datetime(2026, 3, 1, 10, 0)
        await add_adoptions(harness.bot, "高县", "晨讯", ["全文"] * 3, at)
        await add_adoptions(harness.bot, "高县", "快报", ["全文"] * 32 + ["摘编"] * 40, at)
        standings = await st.standings(harness.bot.db, datetime(2026, 1, 1), datetime(2026, 7, 1))
        [row] = [r for r in standings if r.name == "高县"]
        async with harness.bot.db.reader() as s:
            versions = set((await s.execute(select(PointsEntry.rule_version))).scalars())
        assert (row.adopted["province"], row.adopted["city"], row.points) == (3, 72, 191.0)
        assert versions == {"高县2011"}
    finally:
        await harness.close()
        await server.close()


async def test_weekly_post_exact_text(tmp_path, fake_onebot):
    # the bot runs since Tuesday of last week (Mon 11-16 .. Sun 11-22)
    group, server = await start_harness(tmp_path, fake_onebot, start=datetime(2026, 11, 17, 10, 0))
    try:
        await populate(group)
        await group.say(COORDINATOR, "/添加单位 文江镇")
        await group.say(10020, "/报送 城关镇推进人居环境整治\n正文一")
        await group.say(10020, "/报送 城关镇开展森林防火\n正文二")
        drafts = await group.drafts()
        await group.say(COORDINATOR, f"/采用 G{drafts[0].id} 市")
        await group.say(COORDINATOR, "/约稿 冬季安全生产 截止11月27日 对象 城关镇，文江镇")
        await group.say(10020, "/报送 #Y1 城关镇冬季安全生产做法\n正文三")
        group.fake.clear()
        await group.advance_to(datetime(2026, 11, 23, 8, 59))
        assert group.replies() == []
        await group.advance_to(datetime(2026, 11, 23, 9, 0))  # Monday 09:00: the weekly job
        assert group.replies() == [
            "【高县政务信息周通报】2026年11月16日至11月22日\n"
            "一、报送情况：全县报送信息3条，被采用1条，领导批示0次，积3分。\n"
            "城关镇：报送3条，采用1条，积3分\n"
            "二、年度累计排名（截至11月22日）：\n"
            # before last week all three were tied first at 0 points
            "第1名 城关镇 3分（报送3条，采用1条），较前一周持平\n"
            "并列第2名 文江镇 0分（报送0条，采用0条），较前一周下降1位\n"
            "并列第2名 经信局 0分（报送0条，采用0条），较前一周下降1位\n"
            "三、未报送信息的单位（2个）：文江镇（连续1周）、经信局（连续1周）。\n"
            "四、进行中的约稿：\n"
            "Y1《冬季安全生产》截止11-27 18:00，尚未报送：文江镇。"
        ]
        await group.advance(minutes=5)
        assert len(group.replies()) == 1  # posted once
        assert dict(group.bot.scheduler.upcoming())["report:week"] == datetime(2026, 11, 30, 9, 0)
    finally:
        await group.close()
        await server.close()


async def test_reports_and_ranking_with_no_data(group):
    await group.say(10020, "/排行 周")
    assert group.last_reply().endswith("本期暂无数据。")
    await group.say(COORDINATOR, "/通报 月")
    assert "【高县政务信息月通报】2026年10月" in group.last_reply()
    await group.say(COORDINATOR, "/通报 季")
    assert "本期暂无数据" in group.last_reply()
    await group.say(COORDINATOR, "/排行 天")
    assert "格式不正确" in group.last_reply()


async def test_monthly_report_names_units_without_adoption_for_months(group):
    group.clock.set(datetime(2026, 7, 1, 10, 0))
    await group.say(
        COORDINATOR, "/添加单位 胜天镇"
    )  # created in July: 4 months without adoption by October
    await add_adoptions(group.bot, "城关镇", "县", ["全文"], datetime(2026, 10, 20, 10, 0))
    group.clock.set(datetime(2026, 11, 2, 10, 0))
    await group.say(COORDINATOR, "/通报 月")
    text = group.last_reply()
    assert "第1名 城关镇 1分" in text
    assert "连续3个月以上无信息被采用的单位：胜天镇（4个月）" in text


async def test_yearly_rating_names_excellent_and_under_minimum(group):
    await add_adoptions(group.bot, "城关镇", "省", ["全文"] * 3, datetime(2025, 5, 1, 10, 0))
    await add_adoptions(group.bot, "经信局", "县", ["全文"] * 2, datetime(2025, 5, 1, 10, 0))
    await group.say(COORDINATOR, "/通报 年")
    text = group.last_reply()
    assert "【高县政务信息年度评比】2025年01月至2025年12月" in text
    assert "二、优秀单位（前15名，2个）：城关镇、经信局。" in text
    assert "三、年度积分低于12分的单位（1个）：经信局。" in text


async def test_export_workbook_cells_read_back(group):
    await group.say(10020, "/报送 城关镇推进人居环境整治\n今年以来……")
    g = (await group.drafts())[-1].id
    await group.say(COORDINATOR, f"/采用 G{g} 省 摘编")
    group.fake.clear()
    await group.say(COORDINATOR, "/导出 月")
    assert "已生成，正在发送" in group.fake.texts()[0]
    [params] = [p for action, p in group.fake.calls if action == "upload_group_file"]
    assert params["group_id"] == GROUP and params["name"].endswith(".xlsx")
    wb = load_workbook(params["file"])
    ranking, drafts = wb["排名"], wb["稿件"]
    assert [c.value for c in ranking[1]] == [
        "名次",
        "单位",
        "类型",
        "类别",
        "报送",
        "县级采用",
        "市级采用",
        "省级采用",
        "国家级采用",
        "采用合计",
        "领导批示",
        "积分",
        "约稿未回应",
        "备注",
    ]
    assert [c.value for c in ranking[2]] == [
        1,
        "城关镇",
        "乡镇",
        "乡镇",
        1,
        0,
        0,
        1,
        0,
        1,
        0,
        3,
        0,
        None,
    ]
    assert [c.value for c in drafts[2]] == [
        f"G{g}",
        "城关镇",
        "城关镇推进人居环境整治",
        "动态",
        6,
        datetime(2026, 11, 23, 10, 0),
        "已采用",
        "省政府办公厅信息刊物（摘编）",
        3,
        None,
    ]
    assert isinstance(drafts["F2"].value, datetime)
    assert ranking.column_dimensions["B"].width == 22


async def test_export_falls_back_to_a_private_message(group):
    group.fake.fail_actions["upload_group_file"] = {
        "status": "failed",
        "retcode": 1404,
        "data": None,
    }
    await group.say(COORDINATOR, "/导出")
    await group.settle()
    assert "已保存在机器人所在服务器" in group.fake.texts("private", COORDINATOR)[-1]


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('level = "city"', 'level = "town"', "outlet[1].level"),
        ("excerpt = 0.5", "exerpt = 0.5", "outlet[0].points.exerpt"),
        ('aliases = ["快报", "市"]', 'aliases = ["快报", "县刊"]', "outlet[1].aliases"),
        (
            "points = { full = 1, excerpt = 0.5 }",
            "points = { excerpt = 0.5 }",
            "outlet[0].points.full",
        ),
        ("urgent_late = -5", 'urgent_late = "-5"', "penalty.urgent_late"),
        ("national = 20\nprovince = 10", "nation = 20\nprovince = 10", "instruction.nation"),
    ],
)
def test_rule_file_typos_name_the_key(tmp_path, old, new, key):
    path = rules_file(tmp_path / "rules.toml", (old, new))
    with pytest.raises(RuleError) as err:
        load_rules(path)
    assert err.value.key == key


def run_cli(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def test_rescore_prints_and_applies_changes(group, tmp_path):
    await group.say(10020, "/报送 城关镇信息\n正文")
    g = (await group.drafts())[-1].id
    await group.say(COORDINATOR, f"/采用 G{g} 省")
    rules = rules_file(
        tmp_path / "new.toml",
        (
            "points = { full = 5, excerpt = 3, combined = 2 }",
            "points = { full = 6, excerpt = 3, combined = 2 }",
        ),
        ('version = "2026"', 'version = "2027"'),
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "XINXIBOT_BOT_DATABASE": group.bot.config.bot.database,
        "XINXIBOT_BOT_SCORING": str(rules),
    }
    dry = run_cli("rescore", "--from", "2026-11-01", "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0, dry.stderr
    assert (
        f"G{g} 采用：5 → 6（规则版本 2026 → 2027）" in dry.stdout and "试算，未保存" in dry.stdout
    )
    done = run_cli("rescore", "--from", "2026-11-01", cwd=tmp_path, env=env)
    assert "共1条积分记录" in done.stdout and "合计变动1分" in done.stdout
    async with group.bot.db.reader() as s:
        [entry] = (await s.execute(PointsEntry.__table__.select())).all()
    assert (entry.points, entry.rule_version) == (6.0, "2027")
    again = run_cli("rescore", "--from", "2026-11-01", cwd=tmp_path, env=env)
    assert "共0条积分记录" in again.stdout


@pytest.mark.no_database  # refused before the database is opened
def test_bad_rule_file_stops_start_up(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(
        'version = "x"\n[[outlet]]\nname = "县刊"\nlevel = "town"\npoints = { full = 1 }\n',
        encoding="utf-8",
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "XINXIBOT_BOT_SCORING": str(path),
        "XINXIBOT_BOT_DATABASE": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
    }
    result = run_cli("standings", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        "积分规则文件有误，未执行：",
        "“outlet[0].level”的取值 town 不可用。允许的取值：以下之一：county、city、province、national",
    ]
