"""The outbox's at-most-once rules for answers that may or may not have gone through."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

from .conftest import COORDINATOR, GROUP, populate, start_harness


async def test_async_status_counts_as_delivered(tmp_path, fake_onebot):
    h, server = await start_harness(tmp_path, fake_onebot)
    try:
        await populate(h)
        fake_onebot.fail_actions["send_group_msg"] = {"status": "async", "retcode": 1, "data": None}
        calls = len(fake_onebot.calls)
        await h.say(10020, "/报送 异步回执\n正文")
        await h.advance(minutes=10)
        assert len(fake_onebot.calls) == calls + 1  # once, never retried
        assert (await h.outbox())[-1].status == "sent"
    finally:
        await h.close()
        await server.close()


async def test_timeout_is_unknown_and_never_resent(tmp_path, fake_onebot):
    h, server = await start_harness(tmp_path, fake_onebot, onebot__api_timeout_seconds=1)
    try:
        await populate(h)
        fake_onebot.delay = 1.5  # the call reaches the implementation, the answer comes too late
        await h.say(10020, "/报送 超时回执\n正文")
        fake_onebot.delay = 0
        row = (await h.outbox())[-1]
        assert row.status == "unknown" and row.attempts == 1
        await h.advance(hours=1)
        texts = fake_onebot.texts("group", GROUP)
        assert sum("超时回执" in t for t in texts) == 1
        assert (await h.outbox())[-1].status == "unknown"
    finally:
        await h.close()
        await server.close()


async def test_messages_older_than_a_day_are_dropped_and_coordinators_told(tmp_path, fake_onebot):
    h, server = await start_harness(tmp_path, fake_onebot)
    try:
        await populate(h)
        api_url = h.bot.http_api.api_url
        h.bot.http_api.api_url = "http://127.0.0.1:9"  # the OneBot side is gone for a long weekend
        await h.say(10020, "/报送 过期回执\n正文")
        await h.advance(hours=25)
        h.bot.http_api.api_url = api_url
        await h.advance(minutes=1)
        rows = await h.outbox()
        assert [r.status for r in rows if "过期回执" in r.segments] == ["dropped"]
        assert not any("过期回执" in t for t in fake_onebot.texts("group", GROUP))
        notes = fake_onebot.texts("private", COORDINATOR)
        assert any("1条" in t and "未再补发" in t for t in notes), notes
    finally:
        await h.close()
        await server.close()


GROUP2 = 700100300


async def send_times(h, steps: int, step: timedelta) -> list[tuple[timedelta, int]]:
    """(clock offset, target group) of each message sent while stepping the clock."""
    start, seen, out = h.clock.now(), 0, []
    for _ in range(steps):
        await h.advance(seconds=step.total_seconds())
        sent = h.fake.sent()
        out += [(h.clock.now() - start, target) for _, target, _ in sent[seen:]]
        seen = len(sent)
    return out


async def test_one_account_sends_about_one_message_a_second_across_groups(tmp_path, fake_onebot):
    h, server = await start_harness(
        tmp_path, fake_onebot, onebot__rate_per_minute=20, onebot__groups=[GROUP, GROUP2]
    )
    try:
        await populate(h)
        await send_times(h, 40, timedelta(seconds=1))  # the registration replies go out
        fake_onebot.clear()
        for i in range(3):  # replies waiting for two groups of the same account
            await h.post_event(h.message_event(10020, f"/报送 甲群第{i}条\n正文"), settle=False)
            await h.post_event(h.message_event(10099, "/帮助", group=GROUP2), settle=False)
        times = await send_times(h, 40, timedelta(milliseconds=250))
        gaps = [b[0] - a[0] for a, b in pairwise(times)]
        assert {t for _, t in times} == {GROUP, GROUP2}
        assert gaps and min(gaps) >= timedelta(milliseconds=750)  # 1 s with jitter
        receipts = sum(t.count("已收到") for t in fake_onebot.texts("group", GROUP))
        assert receipts == 3 and len(fake_onebot.texts("group", GROUP)) < 3  # still merged
    finally:
        await h.close()
        await server.close()


async def test_rate_zero_lifts_the_account_pace_too(group):
    # the harness runs with rate_per_minute = 0: everything goes out at one instant
    for i in range(6):
        await group.post_event(
            group.message_event(10020, f"/报送 不限速第{i}条\n正文"), settle=False
        )
        await group.post_event(group.message_event(10030, f"/报送 同时第{i}条\n正文"), settle=False)
    await group.settle()
    assert sum(t.count("已收到") for t in group.replies()) == 12
