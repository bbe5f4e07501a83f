"""Event identity: message ids are 32-bit hashes that repeat over months (a fake
go-cqhttp sends -1 for every message). A redelivery has the same account,
chat, sender, id and event `time`; anything else is a new message."""

from __future__ import annotations

import asyncio
import json

from storage.models import ProcessedEvent
from storage.queries import Repo

from .conftest import GROUP, SELF_ID, fixture, start_harness, until
from .test_websocket import answer_api_calls


def submission(title: str, message_id: int = -1, time: int | None = 1795000000) -> dict:
    event = fixture("group_message_array.json")
    event.update(user_id=10020, message_id=message_id, group_id=GROUP)
    event["message"] = [{"type": "text", "data": {"text": f"/报送 {title}\n正文"}}]
    if time is None:
        del event["time"]
    else:
        event["time"] = time
    return event


async def test_a_reused_message_id_with_another_time_is_a_new_message(group):
    await group.post_event(submission("一月的稿件", message_id=-1, time=1795000000))
    await group.post_event(submission("三月的稿件", message_id=-1, time=1800000000))
    assert [d.title for d in await group.drafts()] == ["一月的稿件", "三月的稿件"]
    assert sum("已收到" in t for t in group.replies()) == 2


async def test_same_id_and_time_from_another_sender_or_chat_is_new(group):
    await group.post_event(submission("李明的稿件"))
    other = submission("周强的稿件")
    other["user_id"] = 10030
    await group.post_event(other)
    assert len(await group.drafts()) == 2


async def test_exact_redelivery_is_dropped(group):
    event = submission("只算一次")
    for _ in range(3):
        assert await group.post_event(event) == 204
    assert len(await group.drafts()) == 1
    assert sum("已收到" in t for t in group.replies()) == 1


async def test_exact_redelivery_over_two_transports_at_once_is_processed_once(
    tmp_path, fake_onebot
):
    """HTTP POST and reverse WebSocket both enabled: every event arrives twice, together."""
    h, server = await start_harness(tmp_path, fake_onebot, onebot__access_token="tok")
    try:
        await h.say(10001, "/添加单位 城关镇")
        await h.register(10020, "城关镇", "李明")
        url = h.base.replace("http", "ws") + "/onebot/v11/ws"
        headers = {"X-Self-ID": str(SELF_ID), "Authorization": "Bearer tok"}
        async with h.client.ws_connect(url, headers=headers) as ws:
            calls: list[dict] = []
            responder = asyncio.create_task(answer_api_calls(ws, calls, asyncio.Event()))
            event = submission("两路同时到达")
            await asyncio.gather(h.post_event(event, settle=False), ws.send_str(json.dumps(event)))
            await until(
                lambda: any("两路同时到达" in json.dumps(c, ensure_ascii=False) for c in calls), h
            )
            await h.advance(seconds=5)
            responder.cancel()
        assert [d.title for d in await h.drafts()] == ["两路同时到达"]
        receipts = [c for c in calls if "两路同时到达" in json.dumps(c, ensure_ascii=False)]
        assert len(receipts) == 1 and receipts[0]["action"] == "send_group_msg"
        assert not any("两路同时到达" in t for t in fake_onebot.texts())  # the socket was used
    finally:
        await h.close()
        await server.close()


async def test_an_event_without_time_is_deduplicated_within_a_window(group):
    event = submission("没有时间的事件", message_id=77, time=None)
    await group.post_event(event)
    await group.advance(minutes=5)
    await group.post_event(event)  # a retry a few minutes later: the same delivery
    assert len(await group.drafts()) == 1
    await group.advance(minutes=6)
    event["message"][0]["data"]["text"] = "/报送 同一编号的新消息\n正文"
    await group.post_event(event)  # past the window: the id was reused by a new message
    assert [d.title for d in await group.drafts()] == ["没有时间的事件", "同一编号的新消息"]


async def test_old_message_keys_are_pruned_and_permanent_keys_never(group):
    permanent = [
        "report:week:2026-11-16",
        "base-points:2026-10-01 00:00:00",
        "quota-remind:2026-11-25 09:30:00",
        "hint:10099:2026-11-23",
        "file:3300000001:700100200:/a1b2",
        "filejob:1",
    ]
    async with group.bot.db.transaction() as s:
        for key in permanent:
            await Repo(s).events.claim(key, group.clock.now())
    event = submission("三天前的稿件")
    await group.post_event(event)
    message_keys = {k for k in await group.processed_keys() if k.startswith("msg:")}
    assert f"msg:{SELF_ID}:group:{GROUP}:10020:-1:1795000000" in message_keys
    await group.advance(days=3)
    await group.bot.tick()
    keys = await group.processed_keys()
    assert not {k for k in keys if k.startswith("msg:")}
    assert set(permanent) <= keys
    assert await group.count(ProcessedEvent) == len(keys)
    await group.post_event(event)  # nobody redelivers after days; if one did, it is new again
    assert f"msg:{SELF_ID}:group:{GROUP}:10020:-1:1795000000" in await group.processed_keys()
    assert "G1" in group.last_reply()  # answered: the same text as G1 (the duplicate rule)
