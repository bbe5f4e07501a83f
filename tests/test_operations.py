"""Operations called outside a chat event (`app.acting`), as the console and the scheduled
jobs call them: the same rows, points and notices as the chat command, the same refusal
text, and none of the chat door's own answers."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from sqlalchemy import select

from bot.context import Refusal
from handlers import quotas, review, topics
from storage.models import Adoption, DraftEvent, Member, PointsEntry, Quota, Topic, Unit

from .conftest import COORDINATOR, GROUP, populate, start_harness

GROUP2 = 700100300


async def member(harness, im_id: int) -> Member:
    async with harness.bot.db.reader() as s:
        return (await s.execute(select(Member).where(Member.im_id == im_id))).scalar_one()


async def unit(harness, name: str) -> Unit:
    async with harness.bot.db.reader() as s:
        return (await s.execute(select(Unit).where(Unit.name == name))).scalar_one()


def sent(harness) -> list[tuple[str, int, list[str], str]]:
    """What reached the OneBot side: (kind, target, @-mentions, text with G numbers masked),
    sorted (the sender keeps the order per target only)."""
    return sorted(
        (
            kind,
            target,
            [s["data"]["qq"] for s in segments if s["type"] == "at"],
            re.sub(r"G\d+", "G#", "".join(s["data"].get("text", "") for s in segments)).strip(),
        )
        for kind, target, segments in harness.fake.sent()
    )


@pytest.fixture
async def two_groups(tmp_path, fake_onebot):
    """The bot serving two groups, with the usual two units and officers."""
    harness, server = await start_harness(tmp_path, fake_onebot, onebot__groups=[GROUP, GROUP2])
    await populate(harness)
    yield harness
    await harness.close()
    await server.close()


async def test_adoption_by_operation_sends_what_adopt_from_private_chat_sends(two_groups):
    h = two_groups
    for body in ("正文一。", "正文二。"):
        await h.say(10020, f"/报送 城关镇推进人居环境整治\n{body}")
    first, second = (d.id for d in await h.drafts())
    h.fake.clear()
    await h.tell(COORDINATOR, f"/采用 G{first} 县 全文 第3期")
    by_chat = sent(h)

    h.fake.clear()
    coordinator = await member(h, COORDINATOR)
    async with h.bot.acting(coordinator) as ctx:
        draft = await ctx.repo.drafts.get(second)
        recorded = await review.adopt(ctx, draft, h.bot.rules.outlet("县"), "full", "3")
    await h.settle()
    by_operation = sent(h)

    one_liner = "城关镇《城关镇推进人居环境整治》（G#）被《县政务信息》全文采用，积1分。"
    assert re.sub(r"G\d+", "G#", recorded.notice) == one_liner
    assert by_operation == [
        ("group", GROUP, ["10020"], one_liner),
        ("group", GROUP2, ["10020"], one_liner),
        ("private", 10020, [], by_operation[2][3]),
    ]
    assert "稿件采用通知" in by_operation[2][3] and "第3期" in by_operation[2][3]
    # the chat door adds only the coordinator's own confirmation
    assert by_chat == sorted([*by_operation, ("private", COORDINATOR, [], one_liner)])

    async with h.bot.db.reader() as s:
        adoption = (await s.execute(select(Adoption).where(Adoption.draft_id == second))).one()[0]
        points = (await s.execute(select(PointsEntry).where(PointsEntry.draft_id == second))).all()
        history = (await s.execute(select(DraftEvent).where(DraftEvent.draft_id == second))).all()
    assert (adoption.outlet, adoption.form, adoption.issue, adoption.by) == (
        "县政务信息",
        "full",
        "3",
        coordinator.id,
    )
    assert [(p.kind, p.points) for (p,) in points] == [("adoption", 1.0)]
    assert [(e.action, e.actor_id) for (e,) in history][-1] == ("adopt", coordinator.id)
    await h.say(10020, f"/稿件 G{second}")  # the history names the acting coordinator
    assert re.search(r"采用（王科长）", h.fake.texts("private", 10020)[-1])


async def test_return_by_operation_tells_only_the_submitter(group):
    await group.say(10020, "/报送 城关镇推进人居环境整治\n正文。")
    number = (await group.drafts())[-1].id
    group.fake.clear()
    coordinator = await member(group, COORDINATOR)
    async with group.bot.acting(coordinator) as ctx:
        submitter = await review.return_draft(ctx, await ctx.repo.drafts.get(number), "请补充数据")
    await group.settle()
    assert submitter.im_id == 10020
    assert [(k, t) for k, t, _, _ in sent(group)] == [("private", 10020)]
    assert group.last_reply().startswith(
        f"您报送的稿件G{number}《城关镇推进人居环境整治》已退回修改"
    )
    assert "理由：请补充数据" in group.last_reply()
    draft = (await group.drafts())[-1]
    assert draft.status == "returned"
    async with group.bot.db.reader() as s:
        [(event,)] = (
            await s.execute(
                select(DraftEvent).where(
                    DraftEvent.draft_id == number, DraftEvent.action == "return"
                )
            )
        ).all()
    assert (event.actor_id, event.reason) == (coordinator.id, "请补充数据")


async def test_publish_topic_by_operation_posts_to_every_group_and_schedules(two_groups):
    h = two_groups
    coordinator = await member(h, COORDINATOR)
    town = await unit(h, "城关镇")
    async with h.bot.acting(coordinator) as ctx:
        topic = await topics.publish_topic(
            ctx, "冬季安全生产", datetime(2026, 11, 30, 17, 0), [town], "请报送本单位做法。"
        )
    await h.settle()
    assert [(k, t, at) for k, t, at, _ in sent(h)] == [
        ("group", GROUP, ["10020"]),
        ("group", GROUP2, ["10020"]),
    ]
    assert h.last_reply().strip().startswith("【约稿Y1】冬季安全生产\n截止时间：2026-11-30 17:00")
    async with h.bot.db.reader() as s:
        row = (await s.execute(select(Topic))).scalar_one()
    assert (row.id, row.title, row.brief, row.all_units, row.created_by) == (
        topic.id,
        "冬季安全生产",
        "请报送本单位做法。",
        False,
        coordinator.id,
    )
    assert {k for k, _ in h.bot.scheduler.upcoming() if k.startswith("topic:")} == {
        "topic:1:24h",
        "topic:1:2h",
        "topic:1:close",
    }


async def test_set_quota_by_operation_then_the_reminder_run_as_a_job_would(group):
    coordinator = await member(group, COORDINATOR)
    town = await unit(group, "城关镇")
    async with group.bot.acting(coordinator) as ctx:
        old = await quotas.set_quota(ctx, town, None, "month", "submitted", 4)
    await group.settle()
    assert old is None and group.fake.sent() == []  # setting a quota tells nobody
    async with group.bot.db.reader() as s:
        quota = (await s.execute(select(Quota))).scalar_one()
    assert (quota.scope, quota.unit_id, quota.period, quota.metric, quota.target) == (
        "unit",
        town.id,
        "month",
        "submitted",
        4.0,
    )
    assert quota.created_by == coordinator.id

    group.clock.set(datetime(2026, 11, 27, 10, 0))  # added on the 23rd: behind by the 27th
    async with group.bot.acting(None) as ctx:  # no actor: the bot itself, as the schedule
        outcome = await quotas.remind_lagging(ctx, "scheduled")
    await group.settle()
    assert outcome == {"lagging": 1, "reminded": 1, "already": False}
    [(kind, target, mention, text), digest] = sent(group)  # "group" < "private"
    assert (kind, target, mention) == ("group", GROUP, ["10020"])
    assert "【催报提醒】" in text and "城关镇" in text
    assert digest[:2] == ("private", COORDINATOR) and "【催报汇总】" in digest[3]


async def test_refusal_from_an_operation_has_the_chat_text_and_writes_nothing(group):
    await group.say(10020, "/报送 城关镇推进人居环境整治\n正文。")
    number = (await group.drafts())[-1].id
    await group.say(COORDINATOR, f"/采用 G{number} 县")
    await group.say(COORDINATOR, f"/采用 G{number} 县")
    chat_duplicate = group.last_reply().strip()
    await group.say(COORDINATOR, f"/退回 G{number}")
    chat_no_reason = group.last_reply().strip()
    group.fake.clear()

    coordinator = await member(group, COORDINATOR)
    with pytest.raises(Refusal) as duplicate:
        async with group.bot.acting(coordinator) as ctx:
            draft = await ctx.repo.drafts.get(number)
            await review.adopt(ctx, draft, group.bot.rules.outlet("县"), "full")
    with pytest.raises(Refusal) as no_reason:
        async with group.bot.acting(coordinator) as ctx:
            await review.return_draft(ctx, await ctx.repo.drafts.get(number), "")
    await group.settle()

    assert "被《县政务信息》全文采用，未重复记录" in chat_duplicate
    assert chat_duplicate == duplicate.value.text.strip()
    assert chat_no_reason.startswith("退回需写明理由")
    assert chat_no_reason == no_reason.value.text.strip()
    assert await group.count(Adoption) == 1
    assert group.fake.sent() == []
