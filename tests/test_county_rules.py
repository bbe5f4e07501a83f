"""Rules counties apply (issue 13, items 1, 3, 6, 8, 9, 13, 15, 16): revisions keep their
tags, late reporting only for urgent pieces, deadlines as the help shows them, reminders
before a deadline, jobs missed while down, joint pieces, the emergency fast path and the
small things a coordinator notices."""

from __future__ import annotations

from .conftest import COORDINATOR
from .test_review import points, submit

# ------------------------------------------------------------------ 1: revisions keep their tags


async def test_a_revision_keeps_topic_category_and_urgent_flag_and_earns_the_topic_bonus(group):
    await group.say(COORDINATOR, "/约稿 安全生产经验 截止11月30日 对象 城关镇")
    first = await submit(group, "/报送 #Y1 #经验 #紧急 城关镇安全生产经验\n正文一")
    await group.say(COORDINATOR, f"/退回 G{first} 请补充数据")
    revision = await submit(group, f"/报送 #G{first} 城关镇安全生产经验（修改稿）\n正文一，补充")
    [_, draft] = await group.drafts()
    assert (draft.id, draft.revision_of) == (revision, first)
    assert (draft.topic_ref, draft.category, draft.urgent) == ("Y1", "经验", True)
    await group.say(COORDINATOR, f"/采用 G{revision} 县")
    assert [k for k, _, _ in await points(group, revision)] == [
        "adoption",
        "topic_bonus",
        "urgent_bonus",
    ]
    assert "约稿加分1分" in group.fake.texts("private", 10020)[-1]


async def test_a_revision_that_states_its_own_tags_keeps_them(group):
    first = await submit(group, "/报送 #经验 城关镇安全生产经验\n正文一")
    await group.say(COORDINATOR, f"/退回 G{first} 请改为调研")
    await submit(group, f"/报送 #G{first} #调研 城关镇安全生产调研\n正文一，补充")
    [_, draft] = await group.drafts()
    assert (draft.revision_of, draft.topic_ref, draft.category, draft.urgent) == (
        first,
        None,
        "调研",
        False,
    )


# ------------------------------------------------------------------ 3: late only when urgent


async def test_late_reporting_is_refused_for_a_draft_that_is_not_urgent(group):
    g = await submit(group, "/报送 #经验 城关镇安全生产经验\n正文")
    await group.say(COORDINATOR, f"/不采用 G{g}")
    await group.say(COORDINATOR, f"/迟报 G{g} 超过2小时")
    assert group.last_reply().strip() == (
        f"稿件G{g}不是紧急信息（未标注 #紧急），迟报只记录紧急信息，未记录。"
    )
    assert await points(group, g) == []
    urgent = await submit(group, "/报送 #紧急 城关镇突发情况\n正文")
    await group.say(COORDINATOR, f"/迟报 G{urgent} 超过2小时")
    assert [k for k, _, _ in await points(group, urgent)] == ["urgent_late"]
