"""The demo county and the sandbox transport, without a browser."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.server import BOT_KEY
from handlers import ROUTERS
from storage.models import Adoption, BulletinIssue, Draft, Member, Role, Topic, Unit

from .test_files import make_docx

TZ = ZoneInfo("Asia/Shanghai")
pytestmark = pytest.mark.sqlite_only("xinxibot demo is SQLite by design (DESIGN §7)")


async def test_demo_seed_upload_and_fast_forward(tmp_path):
    from bot.sandbox import make_demo_app

    app = make_demo_app(tmp_path / "demo.db", "127.0.0.1", 0, ROUTERS)
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
        async with bot.db.reader() as s:
            issues = (await s.execute(select(BulletinIssue).order_by(BulletinIssue.id))).scalars()
            assert [(i.number, i.status) for i in issues] == [
                (1, "printed"), (2, "printed"), (3, "preparing")
            ]  # fmt: skip
            adopted = (await s.execute(select(Adoption.issue))).scalars().all()
            assert sorted(adopted) == ["1", "1", "1", "2", "2", "2"]

        form = aiohttp.FormData()
        form.add_field("user_id", "10020")
        form.add_field("chat", "group")
        form.add_field(
            "file", make_docx("城关镇沙盒上传的稿件", "正文第一段。"), filename="稿件.docx"
        )
        headers = {"X-Sandbox-Upload": "1"}
        assert (await client.post("/sandbox/upload", data=form, headers=headers)).status == 200
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

    app = make_demo_app(tmp_path / "demo.db", "127.0.0.1", 0, ROUTERS)
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


async def settled(app) -> None:
    bot = app[BOT_KEY]
    while bot._tasks:
        await asyncio.wait(set(bot._tasks), timeout=10)
    await bot.sender.drained()


async def test_visitor_listed_once_after_binding_and_mentions_apart(tmp_path):
    from bot.sandbox import make_demo_app

    app = make_demo_app(tmp_path / "demo.db", "127.0.0.1", 0, ROUTERS)
    async with TestClient(TestServer(app)) as client:
        await client.post("/sandbox/say", json={"user_id": 10099, "text": "/绑定 胜天镇"})
        await client.post("/sandbox/say", json={"user_id": 10001, "text": "/同意 1"})
        await settled(app)
        state = await (await client.get("/sandbox/state")).json()
        visitors = [m for m in state["members"] if m["id"] == 10099]
        assert [(m["role"], m["unit"]) for m in visitors] == [("officer", "胜天镇")]
        for _ in range(5):  # the weekly report may come first
            await client.post("/sandbox/advance", json={"to_next": True})
            state = await (await client.get("/sandbox/state")).json()
            texts = [line["text"] for line in state["lines"]]
            if any("【约稿提醒】" in t for t in texts):
                break
        reminder = next(t for t in texts if "【约稿提醒】" in t)
        assert reminder.startswith("@李明 @陈芳 @马超 ")  # not "@李明@陈芳@马超"


async def test_export_is_a_download_after_its_announcement(tmp_path):
    from bot.sandbox import make_demo_app

    app = make_demo_app(tmp_path / "demo.db", "127.0.0.1", 0, ROUTERS)
    async with TestClient(TestServer(app)) as client:
        await client.post("/sandbox/say", json={"user_id": 10001, "text": "/导出 月"})
        await settled(app)
        lines = (await (await client.get("/sandbox/state")).json())["lines"]
        announced = next(i for i, x in enumerate(lines) if "已生成，正在发送" in x["text"])
        sent = next(i for i, x in enumerate(lines) if x["file"] and x["sender"] == "bot")
        assert announced < sent
        name = lines[sent]["file"]["name"]
        assert name.endswith(".xlsx") and lines[sent]["text"] == f"[文件] {name}"
        resp = await client.get(f"/sandbox/files/{lines[sent]['file']['id']}")
        assert resp.headers["Content-Disposition"].startswith("attachment; filename*=UTF-8''")
        assert (await resp.read())[:2] == b"PK"  # an .xlsx workbook


async def test_restarted_demo_resumes_its_clock(tmp_path):
    from bot.clock import Clock
    from bot.sandbox import make_demo_app

    start = datetime(2026, 11, 23, 10, 0)
    app = make_demo_app(
        tmp_path / "demo.db", "127.0.0.1", 0, ROUTERS, clock=Clock(TZ, frozen_at=start)
    )
    async with TestClient(TestServer(app)) as client:
        await client.post("/sandbox/advance", json={"minutes": 10 * 24 * 60})
        await client.post("/sandbox/say", json={"user_id": 10020, "text": "/我的稿件"})
        await settled(app)
        left_at = (await (await client.get("/sandbox/state")).json())["now"]
    # started again without --fresh while real time has barely moved
    app = make_demo_app(
        tmp_path / "demo.db", "127.0.0.1", 0, ROUTERS, clock=Clock(TZ, frozen_at=start)
    )
    async with TestClient(TestServer(app)) as client:
        assert (await (await client.get("/sandbox/state")).json())["now"] == left_at


async def test_demo_bulletin_preview_and_a_printed_issue_are_files(tmp_path):
    """The README's first five minutes: /编期 预览 and /期刊 第1期 arrive as files."""
    from bot.sandbox import make_demo_app

    app = make_demo_app(tmp_path / "demo.db", "127.0.0.1", 0, ROUTERS)
    async with TestClient(TestServer(app)) as client:
        await client.post("/sandbox/say", json={"user_id": 10001, "text": "/编期"})
        await client.post("/sandbox/say", json={"user_id": 10001, "text": "/编期 预览"})
        await client.post("/sandbox/say", json={"user_id": 10020, "text": "/期刊 第1期"})
        await settled(app)
        lines = (await (await client.get("/sandbox/state")).json())["lines"]
        assert any("第3期（" in x["text"] and "编辑中）共2篇" in x["text"] for x in lines)
        files = [x["file"] for x in lines if x["file"] and x["sender"] == "bot"]
        assert len(files) == 2, files
