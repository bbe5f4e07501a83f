"""A stranger floods the group with /帮助 while an officer submits: how long does
the officer's receipt wait?

    python bench/flood.py                 # 200 /帮助, the default limits (20 a minute per group)
    python bench/flood.py --helps 500

The bot runs in this process on SQLite behind its real HTTP endpoint, with the
default outbound limits, against a fake OneBot HTTP API; time is the injected
clock, moved a second at a time as the test harness does, so the figures are
the delays users would see, not this machine's speed. Printed: the receipt's
delay, the group messages sent before it, the help texts the stranger got in
the next ten minutes and how many of the stranger's events reached the
database. Run it on an older checkout (PYTHONPATH=that/checkout) for a
before/after comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.app import BotApp  # noqa: E402
from bot.clock import Clock  # noqa: E402
from bot.config import build  # noqa: E402
from bot.server import make_web_app  # noqa: E402
from handlers import ROUTERS  # noqa: E402

GROUP, SELF_ID, SECRET = 700100200, 3300000001, "bench-secret"
COORDINATOR, OFFICER, STRANGER = 10001, 10020, 10099


class FakeApi:
    def __init__(self, clock: Clock) -> None:
        self.clock, self.sent = clock, []  # (clock time, group or user, text)

    async def handle(self, request: web.Request) -> web.Response:
        params = await request.json()
        text = "".join(s["data"].get("text", "") for s in params.get("message", []))
        self.sent.append((self.clock.now(), params.get("group_id") or params.get("user_id"), text))
        return web.json_response({"status": "ok", "retcode": 0, "data": {"message_id": 1}})


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def run(helps: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="xinxibot-flood-"))
    start = datetime(2026, 11, 24, 10, 0)
    holder: list[Clock] = []
    api = FakeApi(Clock("Asia/Shanghai", frozen_at=start))
    api_app = web.Application()
    api_app.router.add_post("/{action}", api.handle)
    api_runner, api_url = await serve(api_app)
    config = build(
        {
            "bot": {"database": f"sqlite+aiosqlite:///{tmp / 'bot.db'}",
                    "coordinators": [str(COORDINATOR)], "files_dir": str(tmp / "files")},
            "onebot": {"groups": [GROUP], "api_url": api_url, "secret": SECRET},
        },
        env={},
        base_dir=tmp,
    )  # fmt: skip
    bot = BotApp(config, ROUTERS, clock=Clock(config.tz, frozen_at=start))
    api.clock = bot.clock
    holder.append(bot.clock)
    bot_runner, base = await serve(make_web_app(bot))
    ids = iter(range(1, 1 << 30))
    handled = 0
    run_event = bot.dispatcher.run

    async def counted(event, action):
        nonlocal handled
        handled += event.user_id == STRANGER
        await run_event(event, action)

    bot.dispatcher.run = counted

    async with aiohttp.ClientSession() as client:

        async def say(user: int, text: str) -> None:
            event = {
                "time": 1795000000, "self_id": SELF_ID, "post_type": "message",
                "message_type": "group", "sub_type": "normal", "message_id": next(ids),
                "group_id": GROUP, "user_id": user, "font": 0,
                "message": [{"type": "text", "data": {"text": text}}], "raw_message": text,
                "sender": {"user_id": user, "nickname": f"用户{user}", "card": ""},
            }  # fmt: skip
            body = json.dumps(event, ensure_ascii=False).encode()
            signature = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
            headers = {"X-Self-ID": str(SELF_ID), "X-Signature": signature}
            async with client.post(base + "/onebot/v11/", data=body, headers=headers) as resp:
                assert resp.status == 204, resp.status

        async def step(seconds: float = 1.0) -> None:
            bot.clock.advance(timedelta(seconds=seconds))
            await bot.sender.drained()

        await say(COORDINATOR, "/添加单位 城关镇 乡镇")
        await say(COORDINATOR, f"/登记 {OFFICER} 城关镇")
        for _ in range(120):  # the registration replies out, the group's budget full again
            await step()
        api.sent.clear()
        for _ in range(helps):
            await say(STRANGER, "/帮助")
        submitted = bot.clock.now()
        await say(OFFICER, "/报送 洪汛期间的紧急报送\n正文")
        while not any("洪汛期间" in text for _, _, text in api.sent):
            await step()
            if bot.clock.now() - submitted > timedelta(hours=2):
                raise SystemExit("no receipt within 2 hours")
        at = next(i for i, (_, _, text) in enumerate(api.sent) if "洪汛期间" in text)
        delay = (api.sent[at][0] - submitted).total_seconds()
        for _ in range(600):
            await step()
        help_texts = sum(text.count("可用命令") for _, _, text in api.sent)
    print(f"stranger /帮助 sent                 {helps}")
    print(f"officer's receipt delay (clock)     {delay:.0f} s")
    print(f"group messages sent before it       {at}")
    print(f"help texts the stranger got (10 min) {help_texts}")
    print(f"stranger events that reached the DB {handled}")
    await bot_runner.cleanup()
    await api_runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helps", type=int, default=200)
    asyncio.run(run(parser.parse_args().helps))
