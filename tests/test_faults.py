"""The OneBot side down for ten simulated minutes: nothing lost, once each, in order, paced."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from .conftest import COORDINATOR, GROUP, populate, start_harness


async def test_onebot_down_then_back(tmp_path, fake_onebot):
    h, server = await start_harness(
        tmp_path, fake_onebot, start=datetime(2026, 11, 24, 10, 0), onebot__rate_per_minute=20
    )
    try:
        await populate(h)
        api_url = h.bot.http_api.api_url
        before = len(await h.outbox())
        # minutes 0-3: connection refused (nothing listens there)
        h.bot.http_api.api_url = "http://127.0.0.1:9"
        for i in range(12):
            await h.say(10020 if i % 2 else 10030, f"/报送 断线期间第{i:02d}条\n正文{i}")
        await h.say(COORDINATOR, "/约稿 断线期间的约稿 截止11月28日 对象 城关镇")
        await h.say(COORDINATOR, "/催报 Y1")
        for i in range(12, 16):
            await h.say(10020, f"/报送 断线期间第{i:02d}条\n正文{i}")
        assert fake_onebot.calls == []
        await h.advance(minutes=3)
        # minutes 3-6: the implementation answers HTTP 500
        h.bot.http_api.api_url = api_url
        fake_onebot.http_status = 500
        await h.advance(minutes=3)
        # minutes 6-10: it answers status "failed" (NapCat: retcode 200 with failed)
        fake_onebot.http_status = None
        fake_onebot.fail_actions["send_group_msg"] = {
            "status": "failed",
            "retcode": 200,
            "data": None,
        }
        await h.advance(minutes=4)
        failed_calls = len(fake_onebot.calls)
        assert failed_calls > 0
        assert all(r.status == "pending" for r in (await h.outbox())[before:])
        # back: everything goes out once, in order, no faster than the rate limit
        del fake_onebot.fail_actions["send_group_msg"]
        start = h.clock.now()
        sent_by_minute = []
        for _ in range(10):
            await h.advance(minutes=1)
            sent_by_minute.append(len(fake_onebot.sent()) - failed_calls)
        outbox = await h.outbox()
        assert all(r.status == "sent" for r in outbox), [r.status for r in outbox]
        delivered = fake_onebot.texts()[failed_calls:]
        joined = "\n".join(delivered)
        numbers = [int(n) for n in re.findall(r"断线期间第(\d+)条", joined)]
        assert numbers == list(range(16))  # each receipt once, in order
        assert joined.count("【约稿提醒】Y1") == 1 and joined.index("第11条") < joined.index(
            "【约稿提醒】Y1"
        ) < joined.index("第12条")
        for minutes, count in enumerate(sent_by_minute, start=1):
            assert count <= 5 + 20 * minutes, (minutes, count)  # burst 5, then 20 a minute
        assert (
            len([k for k, t, _ in fake_onebot.sent()[failed_calls:] if (k, t) == ("group", GROUP)])
            < 16
        )  # merged
        assert h.clock.now() - start == timedelta(minutes=10)
    finally:
        await h.close()
        await server.close()
