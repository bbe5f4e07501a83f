"""Review, adoption, forwarding, instructions and late reports: rows, points, notices."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import Adoption, DraftStatus, Forward, Instruction, PointsEntry

from .conftest import COORDINATOR, GROUP


async def points(group, draft_id: int) -> list[tuple[str, float, str]]:
    async with group.bot.db.reader() as s:
        q = (
            select(PointsEntry)
            .where(PointsEntry.draft_id == draft_id, PointsEntry.void.is_(False))
            .order_by(PointsEntry.id)
        )
        return [(p.kind, p.points, p.rule_version) for p in (await s.execute(q)).scalars()]


async def submit(
    group, text: str = "/报送 城关镇推进人居环境整治\n今年以来……", user: int = 10020
) -> int:
    await group.say(user, text)
    return (await group.drafts())[-1].id


async def test_adoption_scores_by_the_rule_file_and_tells_the_unit(group):
    g = await submit(group)
    group.fake.clear()
    await group.say(COORDINATOR, f"/采用 G{g} 省 第12期")
    async with group.bot.db.reader() as s:
        [a] = (await s.execute(select(Adoption))).scalars().all()
    assert (a.outlet, a.level, a.form, a.issue) == (
        "省政府办公厅信息刊物",
        "province",
        "full",
        "12",
    )
    assert await points(group, g) == [("adoption", 5.0, "2026")]
    sent = group.fake.sent()
    group_msgs = [(t, segs) for k, t, segs in sent if k == "group"]
    [(target, segs)] = group_msgs
    assert target == GROUP and segs[0] == {"type": "at", "data": {"qq": "10020"}}
    assert (
        group.fake.texts("group")[0]
        == f" 城关镇《城关镇推进人居环境整治》（G{g}）被《省政府办公厅信息刊物》全文采用，积5分。"
    )
    [detail] = group.fake.texts("private", 10020)
    assert "第12期" in detail and "该稿件累计5分" in detail
    assert (await group.drafts())[-1].status == DraftStatus.adopted


async def test_several_outlets_one_row_each_and_duplicates_refused(group):
    g = await submit(group)
    await group.say(COORDINATOR, f"/采用 G{g} 县刊")
    await group.say(COORDINATOR, f"/采用 G{g} 快报 摘编")
    await group.say(COORDINATOR, f"/采用 G{g} 国 综合")
    await group.say(COORDINATOR, f"/采用 G{g} 政务信息快报")
    assert "已于2026-11-23 10:00被《政务信息快报》摘编采用，未重复记录" in group.last_reply()
    assert [p for _, p, _ in await points(group, g)] == [1.0, 1.5, 5.0]


async def test_revoke_a_wrong_adoption_keeps_history(group):
    g = await submit(group)
    await group.say(COORDINATOR, f"/采用 G{g} 市")
    await group.say(COORDINATOR, f"/采用 G{g} 市 撤销")
    assert "已撤销稿件" in group.last_reply()
    assert await points(group, g) == []
    assert (await group.drafts())[-1].status == DraftStatus.submitted
    async with group.bot.db.reader() as s:
        [a] = (await s.execute(select(Adoption))).scalars().all()
    assert a.revoked_at is not None
    await group.tell(COORDINATOR, f"/稿件 G{g}")
    history = group.fake.texts("private", COORDINATOR)[-1]
    assert (
        "采用（王科长）：政务信息快报" in history and "撤销采用（王科长）：政务信息快报" in history
    )
    await group.say(COORDINATOR, f"/采用 G{g} 市")  # may be recorded again after the revocation
    assert [p for _, p, _ in await points(group, g)] == [3.0]


async def test_bad_adoptions_are_refused(group):
    g = await submit(group)
    await group.say(COORDINATOR, "/采用 G999 省")
    assert "未找到稿件G999" in group.last_reply()
    await group.say(COORDINATOR, f"/采用 G{g} 火星")
    assert (
        "未找到刊物或级别“火星”" in group.last_reply()
        and "省政府办公厅信息刊物（省刊/省）" in group.last_reply()
    )
    await group.say(COORDINATOR, f"/采用 G{g} 县 综合")
    assert "没有“综合”形式" in group.last_reply()
    await group.say(COORDINATOR, f"/采用 G{g} 省 全本")
    assert "无法识别“全本”" in group.last_reply()
    await group.say(10020, f"/采用 G{g} 省")
    assert "仅限协调员使用" in group.last_reply()
    await group.say(10020, f"/撤回 G{g}")
    await group.say(COORDINATOR, f"/采用 G{g} 省")
    assert "状态为“已撤回”，不能进行此操作" in group.last_reply()
    assert await points(group, g) == []


async def test_research_multiplier_topic_and_urgent_bonuses(group):
    long_body = "调研内容。" * 400  # 2000 characters
    g1 = await submit(group, f"/报送 #调研 城关镇调研报告\n{long_body}")
    await group.say(COORDINATOR, f"/采用 G{g1} 省")
    assert await points(group, g1) == [("adoption", 7.5, "2026")]
    await group.say(COORDINATOR, "/约稿 安全生产 截止11月30日 对象 城关镇")
    g2 = await submit(group, "/报送 #Y1 #紧急 城关镇突发情况\n今日……")
    await group.say(COORDINATOR, f"/采用 G{g2} 县")
    await group.say(COORDINATOR, f"/采用 G{g2} 市")  # bonuses only at the first adoption
    assert await points(group, g2) == [
        ("adoption", 1.0, "2026"), ("topic_bonus", 1.0, "2026"), ("urgent_bonus", 2.0, "2026"), ("adoption", 3.0, "2026")
    ]  # fmt: skip
    assert "约稿加分1分，紧急信息及时报送加分2分" in group.fake.texts("private", 10020)[-2]
    await group.say(COORDINATOR, f"/迟报 G{g2} 超过2小时")
    assert [k for k, _, _ in await points(group, g2)] == [
        "adoption",
        "topic_bonus",
        "adoption",
        "urgent_late",
    ]
    assert "积-5分" in group.fake.texts("private", 10020)[-1]
    await group.say(COORDINATOR, f"/迟报 G{g2}")
    assert "已记录迟报，未重复记录" in group.last_reply()


async def test_instructions_count_once_per_level(group):
    g = await submit(group)
    await group.say(COORDINATOR, f"/批示 G{g} 省领导 请省发改委研究")
    assert "获省领导批示，积10分" in group.fake.texts("group")[-1]
    await group.say(COORDINATOR, f"/批示 G{g} 省领导 主要")
    assert "同一级别领导对同一稿件的批示只计一次" in group.fake.texts("private", 10020)[-1]
    await group.say(COORDINATOR, f"/批示 G{g} 县领导")
    assert [p for _, p, _ in await points(group, g)] == [10.0, 0.0, 2.0]
    async with group.bot.db.reader() as s:
        rows = (
            await s.execute(select(Instruction.level, Instruction.main, Instruction.note))
        ).all()
    assert rows == [
        ("province", False, "请省发改委研究"),
        ("province", True, None),
        ("county", False, None),
    ]
    await group.say(COORDINATOR, f"/批示 G{g} 乡领导")
    assert "无法识别批示级别" in group.last_reply()


async def test_forwarding_recorded_once(group):
    g = await submit(group)
    await group.say(COORDINATOR, f"/上报 G{g} 省")
    assert f"已记录稿件G{g}《城关镇推进人居环境整治》报省办" in group.last_reply()
    await group.say(COORDINATOR, f"/上报 G{g} 省")
    assert "已记录报省办，未重复记录" in group.last_reply()
    await group.say(COORDINATOR, f"/上报 G{g} 市")
    assert "格式不正确" in group.last_reply()
    async with group.bot.db.reader() as s:
        assert len((await s.execute(select(Forward))).all()) == 1
    assert await points(group, g) == [("forwarded", 0.0, "2026")]  # the default credit is 0


async def test_return_then_resubmit_links_the_revision(group):
    g = await submit(group)
    await group.say(COORDINATOR, f"/退回 G{g}")
    assert "退回需写明理由" in group.last_reply()
    await group.say(COORDINATOR, f"/退回 G{g} 数据需核实，请补充具体成效")
    assert "理由已私信告知李明" in group.fake.texts("group", GROUP)[-1]
    notice = group.fake.texts("private", 10020)[-1]
    assert "理由：数据需核实，请补充具体成效" in notice and f"/报送 #G{g}" in notice
    await group.say(10020, f"/报送 #G{g} 城关镇推进人居环境整治成效明显\n修改后的正文")
    revised = (await group.drafts())[-1]
    assert revised.revision_of == g
    await group.say(10020, "/报送 #G999 标题\n正文")
    assert "不是本单位退回修改的稿件" in group.last_reply()
    await group.tell(10020, f"/稿件 G{g}")
    assert f"修改重报为（李明）：G{revised.id}" in group.fake.texts("private", 10020)[-1]


async def test_reject_is_a_history_row_and_the_submitter_is_told(group):
    g = await submit(group)
    await group.say(COORDINATOR, f"/不采用 G{g} 内容重复")
    assert "已记录稿件" in group.fake.texts("group", GROUP)[-1]
    assert (await group.drafts())[-1].status == DraftStatus.rejected
    assert "经审核不予采用。理由：内容重复" in group.fake.texts("private", 10020)[-1]
