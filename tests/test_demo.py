"""The demo county and the sandbox transport, without a browser."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.server import BOT_KEY
from storage.models import Draft, Member, Role, Topic, Unit

from .test_files import make_docx

pytestmark = pytest.mark.sqlite_only("xinxibot demo is SQLite by design (DESIGN §7)")


async def test_demo_seed_upload_and_fast_forward(tmp_path):
    from bot.sandbox import SANDBOX_KEY, make_demo_app

    app = make_demo_app(tmp_path / "demo.db", "127.0.0.1", 0)
    async with TestClient(TestServer(app)) as client:
        bot = app[BOT_KEY]
        async with bot.db.reader() as s:
            kinds = Counter((await s.execute(select(Unit.kind))).scalars())
            roles = Counter((await s.execute(select(Member.role))).scalars())
            drafts = (await s.execute(select(func.count()).select_from(Draft))).scalar_one()
            [topic] = (await s.execute(select(Topic))).scalars().all()
        assert sum(kinds.values()) >= 12 and set(kinds) == {
            "township",
            "department",
            "direct_point",
        }
        assert roles[Role.coordinator] == 2 and roles[Role.officer] >= 12
        assert drafts >= 20 and topic.status == "open"

        sandbox = app[SANDBOX_KEY]
        sandbox.base_url = str(client.make_url("")).rstrip("/")
        form = aiohttp.FormData()
        form.add_field("user_id", "10020")
        form.add_field("chat", "group")
        form.add_field(
            "file", make_docx("城关镇沙盒上传的稿件", "正文第一段。"), filename="稿件.docx"
        )
        assert (await client.post("/sandbox/upload", data=form)).status == 200
        while bot._tasks:  # the background download
            await asyncio.wait(set(bot._tasks), timeout=10)
        await bot.sender.drained()
        state = await (await client.get("/sandbox/state")).json()
        texts = [line["text"] for line in state["lines"]]
        assert "[文件] 稿件.docx" in texts
        assert any("已收到 城关镇《城关镇沙盒上传的稿件》" in t for t in texts)

        assert (await client.post("/sandbox/advance", json={"minutes": 0})).status == 400
        before = state["now"]
        reply = await (await client.post("/sandbox/advance", json={"minutes": 60 * 24})).json()
        assert reply["now"] > before


async def test_demo_fast_forward_reaches_the_quota_reminder(tmp_path):
    from bot.sandbox import make_demo_app

    app = make_demo_app(tmp_path / "demo.db", "127.0.0.1", 0)
    async with TestClient(TestServer(app)) as client:
        texts: list[str] = []
        for _ in range(8):  # weekly report, topic reminders ... up to the 25th's quota reminder
            assert (await client.post("/sandbox/advance", json={"to_next": True})).status == 200
            state = await (await client.get("/sandbox/state")).json()
            texts = [line["text"] for line in state["lines"]]
            if any("【催报提醒】" in t for t in texts):
                break
        reminder = next(t for t in texts if "【催报提醒】" in t)
        assert "本月报送" in reminder and "/4条" in reminder
        assert any(
            "【催报汇总】" in t and "胜天镇" in t for t in texts
        )  # no officer: flagged privately
