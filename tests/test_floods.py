"""Floods: a stranger's 200 /帮助 cannot stall an officer's receipt; strangers get a
few answers a minute, then silence (logged once, no database work); courtesy
answers wait behind receipts and are dropped when stale or too many."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.sender import LOW_MAX_PENDING

from .conftest import GROUP, populate, start_harness

STRANGER = 10099


async def settled(h) -> None:
    """The registration replies out at the paced rate, the group's bucket full again."""
    while any(r.status == "pending" for r in await h.outbox()):
        await h.advance(seconds=1)
    await h.advance(minutes=1)
    h.fake.clear()


async def receipt_delay(h, title: str, limit: timedelta = timedelta(minutes=5)) -> timedelta:
    """Step the clock a second at a time until the receipt of `title` went out."""
    start = h.clock.now()
    while not any(title in t for t in h.fake.texts("group", GROUP)):
        assert h.clock.now() - start < limit, "no receipt"
        await h.advance(seconds=1)
    return h.clock.now() - start


async def test_a_strangers_flood_of_help_neither_stalls_receipts_nor_costs_database_work(
    tmp_path, fake_onebot, caplog
):
    caplog.set_level(logging.WARNING, logger="bot.throttle")
    # the production pace: 20 a minute per group (burst 5), one a second per account
    h, server = await start_harness(
        tmp_path, fake_onebot, start=datetime(2026, 11, 24, 10), onebot__rate_per_minute=20
    )
    try:
        await populate(h)
        await settled(h)
        handled = 0
        run = h.bot.dispatcher.run

        async def counted(event, action):
            nonlocal handled
            handled += 1
            await run(event, action)

        h.bot.dispatcher.run = counted  # run() is where an event's database work happens
        for _ in range(200):
            await h.post_event(h.message_event(STRANGER, "/帮助"), settle=False)
        await h.say(10020, "/报送 洪汛期间的紧急报送\n正文")
        assert await receipt_delay(h, "洪汛期间的紧急报送") <= timedelta(seconds=2)
        await h.advance(minutes=10)
        assert handled == 5 + 1  # the stranger's first five, and the officer's submission
        helps = [t for t in h.fake.texts("group", GROUP) if "可用命令" in t]
        assert sum(t.count("可用命令") for t in helps) == 5
        muted = [r for r in caplog.records if "without being registered" in r.getMessage()]
        assert len(muted) == 1  # logged once for the burst
        # a minute later the stranger is heard again
        await h.say(STRANGER, "/帮助")
        assert "可用命令" in h.fake.texts("group", GROUP)[-1]
    finally:
        await h.close()
        await server.close()


async def test_members_courtesy_answers_wait_behind_receipts_and_surplus_is_dropped(
    tmp_path, fake_onebot
):
    h, server = await start_harness(
        tmp_path, fake_onebot, start=datetime(2026, 11, 24, 10), onebot__rate_per_minute=20
    )
    try:
        await populate(h)
        await settled(h)
        for _ in range(30):  # a member: never throttled, but low priority
            await h.post_event(h.message_event(10030, "/帮助 报送"), settle=False)
        await h.post_event(h.message_event(10030, "/报送 #没有的标签 标题\n正文"), settle=False)
        await h.say(10020, "/报送 排在帮助之后提交\n正文")
        assert await receipt_delay(h, "排在帮助之后提交") <= timedelta(seconds=2)
        await h.advance(minutes=15)
        rows = await h.outbox()
        low = [r for r in rows if r.priority == 1]
        assert len(low) == 31
        assert sum(r.status == "dropped" for r in low) >= 31 - LOW_MAX_PENDING
        assert all(r.status == "sent" for r in rows if r.priority == 0)
        texts = h.fake.texts("group", GROUP)
        receipt = next(i for i, t in enumerate(texts) if "排在帮助之后提交" in t)
        assert receipt <= 1  # at most the help batch already under way went before it
    finally:
        await h.close()
        await server.close()
