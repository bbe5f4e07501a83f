"""Submitting drafts by message, end to end through signed POSTs and the fake OneBot API."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from storage.models import CollectSession, Draft, DraftEvent, DraftStatus

from .conftest import COORDINATOR, GROUP, fixture, populate, start_harness


async def test_officer_submits_draft_from_array_fixture(group):
    event = fixture("group_message_array.json")
    assert await group.post_event(event) == 204
    [draft] = await group.drafts()
    assert draft.title == "城关镇探索“积分制”推动人居环境整治"
    assert draft.body == "今年以来，城关镇……"
    assert draft.category == "调研"
    assert draft.char_count == 10  # body only, punctuation counted, no whitespace
    assert draft.source == "group"
    [(kind, target, segments)] = group.fake.sent()
    assert (kind, target) == ("group", GROUP)
    assert segments[0] == {"type": "at", "data": {"qq": "10020"}}
    assert group.last_reply() == f" 已收到 城关镇《{draft.title}》，编号G{draft.id}，本月第1条。"


async def test_receipt_counts_the_units_drafts_this_month(group):
    for i in range(3):
        await group.say(10020, f"/报送 第{i}条信息\n正文{i}")
    assert group.last_reply().endswith("本月第3条。")
    group.clock.advance(timedelta(days=10))  # into December
    await group.say(10020, "/报送 十二月第一条\n正文")
    assert group.last_reply().endswith("本月第1条。")


async def test_tags_set_category_urgency_and_topic(group):
    await group.say(10020, "/报送 #紧急 #Y12 城关镇突发山火已扑灭\n今日14时……")
    [draft] = await group.drafts()
    assert (draft.category, draft.urgent, draft.topic_ref) == ("紧急", True, "Y12")
    await group.say(10020, "/报送 ＃约稿７ ＃建议 关于农村公路养护的建议\n建议……")
    draft = (await group.drafts())[-1]
    assert (draft.category, draft.urgent, draft.topic_ref) == ("建议", False, "Y7")


async def test_unknown_tag_is_refused_with_the_valid_ones(group):
    await group.say(10020, "/报送 #八卦 标题\n正文")
    assert "未识别的标签 #八卦" in group.last_reply()
    assert "#调研" in group.last_reply()
    assert await group.drafts() == []


async def test_submission_without_title_is_refused(group):
    await group.say(10020, "/报送")
    assert "缺少标题" in group.last_reply()
    await group.say(10020, "/报送 #调研")
    assert "缺少标题" in group.last_reply()
    assert await group.drafts() == []


async def test_stranger_cannot_submit(group):
    await group.say(10099, "/报送 我的稿件\n正文", name="路人")
    assert "仅限已登记人员使用" in group.last_reply()
    assert "/绑定" in group.last_reply()
    assert await group.drafts() == []


async def test_coordinator_cannot_submit(group):
    await group.say(COORDINATOR, "/报送 标题\n正文")
    assert "仅限信息员使用" in group.last_reply()
    assert await group.drafts() == []


async def test_exact_duplicate_is_refused_with_existing_number(group):
    await group.say(10020, "/报送 城关镇开展森林防火\n今年以来，城关镇……")
    first = (await group.drafts())[0]
    await group.say(
        10020, "/报送 城关镇开展森林防火\n今年以来， 城关镇……  "
    )  # only whitespace differs
    assert f"已报送的G{first.id}" in group.last_reply()
    assert len(await group.drafts()) == 1
    # another unit may send the same text
    await group.say(10030, "/报送 城关镇开展森林防火\n今年以来，城关镇……")
    assert len(await group.drafts()) == 2


async def test_collecting_mode_until_done(group):
    await group.say(10020, "/报送 #经验 城关镇“三个一批”推进项目建设")
    assert "/完成" in group.last_reply()
    await group.say(10020, "今年以来，城关镇坚持项目为王。")
    await group.say(10030, "这是别人的闲聊，不应进入正文")
    await group.say(10020, "一是签约一批；二是开工一批。")
    assert await group.drafts() == []
    await group.say(10020, "/完成")
    [draft] = await group.drafts()
    assert draft.title == "城关镇“三个一批”推进项目建设"
    assert draft.category == "经验"
    assert draft.body == "今年以来，城关镇坚持项目为王。\n一是签约一批；二是开工一批。"
    assert "编号G" in group.last_reply()
    assert await group.count(CollectSession) == 0


async def test_collecting_idle_prompt_after_ten_minutes(group):
    await group.say(10020, "/报送 长稿件")
    await group.say(10020, "第一段")
    group.fake.clear()
    group.clock.advance(timedelta(minutes=9))
    await group.bot.tick()
    await group.settle()
    assert group.fake.sent() == []
    group.clock.advance(timedelta(minutes=2))
    await group.bot.tick()
    await group.settle()
    [text] = group.replies()
    assert "未收到新内容" in text and "/完成" in text
    await group.bot.tick()  # asked once, not every tick
    await group.settle()
    assert len(group.replies()) == 1


async def test_cancel_and_done_without_collection(group):
    await group.say(10020, "/完成")
    assert "没有正在接收正文的稿件" in group.last_reply()
    await group.say(10020, "/报送 将放弃的稿件")
    await group.say(10020, "一些内容")
    await group.say(10020, "/取消")
    assert "已取消" in group.last_reply()
    assert await group.drafts() == []


async def test_withdraw_own_draft_but_not_another_units(group):
    await group.say(10020, "/报送 城关镇信息\n正文")
    [draft] = await group.drafts()
    await group.say(10030, f"/撤回 G{draft.id}")
    assert "不属于您所在单位" in group.last_reply()
    assert (await group.drafts())[0].status == DraftStatus.submitted
    await group.say(10020, f"/撤回 g{draft.id}")
    assert f"已撤回稿件G{draft.id}" in group.last_reply()
    assert (await group.drafts())[0].status == DraftStatus.withdrawn
    await group.say(10020, f"/撤回 G{draft.id}")
    assert "不能撤回" in group.last_reply()
    await group.say(10020, "/撤回 G99999")
    assert "未找到稿件G99999" in group.last_reply()
    # a withdrawn draft does not block sending the same text again
    await group.say(10020, "/报送 城关镇信息\n正文")
    assert len(await group.drafts()) == 2


async def test_my_drafts_lists_own_unit_only(group):
    await group.say(10020, "/报送 城关镇稿件一\n正文一")
    await group.say(10030, "/报送 经信局稿件\n正文")
    await group.tell(10020, "/我的稿件")
    text = group.last_reply()
    assert "城关镇近期稿件（共1条）" in text
    assert "城关镇稿件一" in text and "经信局稿件" not in text
    assert group.fake.sent()[-1][:2] == ("private", 10020)


async def test_my_drafts_shows_each_drafts_points(group):
    await group.say(10020, "/报送 城关镇稿件一\n正文一")
    await group.say(10020, "/报送 城关镇稿件二\n正文二")
    first, second = await group.drafts()
    await group.say(COORDINATOR, f"/采用 G{first.id} 县")
    await group.tell(10020, "/我的稿件")
    lines = group.last_reply().splitlines()
    assert any(f"G{first.id}" in x and "《城关镇稿件一》已采用，3字，1分" in x for x in lines)
    assert any(f"G{second.id}" in x and "《城关镇稿件二》已报送，3字，0分" in x for x in lines)


async def test_show_draft_sends_full_text_privately(group):
    await group.say(10020, "/报送 城关镇稿件\n第一段正文。\n第二段正文。")
    [draft] = await group.drafts()
    group.fake.clear()
    await group.say(COORDINATOR, f"/稿件 G{draft.id}")
    # two targets: delivered concurrently, so in no particular order between them
    assert sorted((k, t) for k, t, _ in group.fake.sent()) == [
        ("group", GROUP),
        ("private", COORDINATOR),
    ]
    [detail] = group.fake.texts("private", COORDINATOR)
    assert "第一段正文。\n第二段正文。" in detail
    assert "报送（李明）" in detail  # history row with who
    await group.say(10030, f"/稿件 G{draft.id}")
    assert "不属于您所在单位" in group.last_reply()


async def test_long_message_refused_with_limit_and_nothing_stored(group):
    await group.say(10020, "/报送 超长稿件\n" + "字" * 50_000)
    assert "超过20000字的上限" in group.last_reply()
    assert await group.drafts() == []


async def test_flood_guard_limits_drafts_per_hour(tmp_path, fake_onebot):
    from .conftest import start_harness

    harness, server = await start_harness(tmp_path, fake_onebot, limits__drafts_per_hour=2)
    try:
        await harness.say(COORDINATOR, "/添加单位 城关镇")
        await harness.register(10020, "城关镇", "李明")
        await harness.say(10020, "/报送 一\n正文一")
        await harness.say(10020, "/报送 二\n正文二")
        await harness.say(10020, "/报送 三\n正文三")
        assert "一小时内报送已达2条上限" in harness.last_reply()
        assert len(await harness.drafts()) == 2
        harness.clock.advance(timedelta(minutes=61))
        await harness.say(10020, "/报送 三\n正文三")
        assert len(await harness.drafts()) == 3
    finally:
        await harness.client.close()
        await server.close()


async def test_private_submission_gets_detailed_receipt(group):
    await group.tell(10020, "/报送 #调研 城关镇调研报告\n" + "调研内容。" * 500)
    [draft] = await group.drafts()
    assert draft.source == "private" and draft.char_count == 2500
    text = group.last_reply()
    assert text.startswith(f"已收到 城关镇《城关镇调研报告》，编号G{draft.id}")
    assert "字数：2500" in text and "类别：调研" in text


async def test_history_row_written_with_submission(group):
    await group.say(10020, "/报送 有历史的稿件\n正文")
    async with group.bot.db.reader() as s:
        events = (await s.execute(select(DraftEvent))).scalars().all()
        draft = (await s.execute(select(Draft))).scalar_one()
    assert [(e.action, e.draft_id) for e in events] == [("submit", draft.id)]


async def test_collecting_survives_a_restart(tmp_path, fake_onebot):
    """The open conversation lives in memory for speed; the drafts router restores it at start."""
    harness, server = await start_harness(tmp_path, fake_onebot)
    await populate(harness)
    await harness.say(10020, "/报送 跨重启的长稿件")
    await harness.say(10020, "重启前的一段。")
    await harness.close()
    await server.close()

    harness, server = await start_harness(tmp_path, fake_onebot)
    try:
        assert harness.bot.conversations == {("group", GROUP, 10020): "drafts"}
        for text in ("重启后的一段。", "/完成"):  # not ordinary chat: it is collected
            event = harness.message_event(10020, text)
            event["message_id"] += 10_000  # the new harness counts message ids from 1000 again
            await harness.post_event(event)
        [draft] = await harness.drafts()
        assert (draft.title, draft.body) == ("跨重启的长稿件", "重启前的一段。\n重启后的一段。")
        assert harness.bot.conversations == {}
    finally:
        await harness.close()
        await server.close()


async def test_urgent_draft_is_told_to_every_coordinator_at_once(tmp_path, fake_onebot):
    """紧急信息's fast path: late in the evening (quiet hours), each coordinator gets a private
    message of its own at once; an ordinary draft tells no one but its submitter."""
    harness, server = await start_harness(
        tmp_path, fake_onebot, start=datetime(2026, 11, 23, 22, 30),
        bot__coordinators=[str(COORDINATOR), "10002"],
    )  # fmt: skip
    try:
        await populate(harness)
        await harness.say(10020, "/报送 城关镇日常信息\n正文")
        assert harness.fake.texts("private", COORDINATOR) == []
        await harness.say(10020, "/报送 #紧急 城关镇突发山火已扑灭\n今日21时……")
        [draft] = [d for d in await harness.drafts() if d.urgent]
        for coordinator in (COORDINATOR, 10002):
            assert harness.fake.texts("private", coordinator) == [
                f"紧急信息：城关镇于11-23 22:30报送《城关镇突发山火已扑灭》，编号G{draft.id}，"
                f"7字，请及时审核。私聊发送 /稿件 G{draft.id} 查看全文。"
            ]
    finally:
        await harness.close()
        await server.close()
