"""A OneBot peer nobody here wrote: ncatbot5's NapCatMockServer (pinned in the
test extra), a forward-WebSocket server that injects NapCat-shaped events
(string ids, 13-digit message ids, card names from its member list) and answers
send_group_msg, get_group_file_url, ... from its own state.

Only its `mock_server` package is loaded: importing `ncatbot` itself configures
root logging and writes a `logs/` folder into the working directory.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp import web
from sqlalchemy import select

from storage.models import Draft, DraftStatus, Member

from .conftest import COORDINATOR, GROUP, SELF_ID, start_harness, until
from .test_files import make_docx

OFFICER = 10020


def napcat_mock() -> ModuleType:
    """ncatbot's mock_server package, loaded on its own (it imports nothing else of ncatbot)."""
    name = "napcat_mock_server"
    if name not in sys.modules:
        root = Path(importlib.util.find_spec("ncatbot").submodule_search_locations[0])
        init = root / "utils" / "testing" / "mock_server" / "__init__.py"
        spec = importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[str(init.parent)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def county_group(mock: ModuleType) -> dict:
    """The mock's state: our bot account in the information-work group."""
    member = mock.create_group_member_data
    return {
        "bot": mock.create_bot_data(str(SELF_ID), "信息科机器人"),
        "friends": [],
        "groups": [
            mock.create_group_data(
                str(GROUP),
                "高县政务信息工作群",
                str(COORDINATOR),
                members=[
                    member(str(SELF_ID), "信息科机器人"),
                    member(str(COORDINATOR), "王科长", card="信息科-王", role="owner"),
                    member(str(OFFICER), "李明", card="城关镇-李明"),
                ],
            )
        ],
    }


def sent_texts(server) -> list[str]:
    return [
        "".join(s["data"].get("text", "") for s in params["message"])
        for params in server.get_calls_for_action("send_group_msg")
    ]


@pytest.fixture
async def napcat():
    mock = napcat_mock()
    server = mock.NapCatMockServer(
        host="127.0.0.1", port=free_port(), initial_data=county_group(mock)
    )
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def files_server():
    """A loopback file server the mock's get_group_file_url answer points at."""
    files: dict[str, bytes] = {}

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=files[request.match_info["name"]])

    app = web.Application()
    app.router.add_get("/files/{name}", serve)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield files, f"http://127.0.0.1:{runner.addresses[0][1]}/files"
    await runner.cleanup()


async def test_a_working_day_against_the_napcat_mock(tmp_path, fake_onebot, napcat, files_server):
    files, base = files_server
    h, server = await start_harness(
        tmp_path,
        fake_onebot,
        onebot__api_url="",
        onebot__ws_url=[f"ws://127.0.0.1:{napcat.port}"],
        files__allowed_hosts=[base.split("/")[2]],  # the loopback file server is trusted by name
    )
    try:
        await until(lambda: h.bot.onebot_api.peer_for(SELF_ID) is not None, h)

        async def say(user_id: int, message, expect: str) -> str:
            await napcat.inject_group_message(GROUP, user_id, message)
            await until(lambda: any(expect in t for t in sent_texts(napcat)), h)
            return next(t for t in reversed(sent_texts(napcat)) if expect in t)

        # registration
        await say(COORDINATOR, "/添加单位 城关镇 乡镇", "已添加单位")
        registered = await say(
            COORDINATOR,
            [
                {"type": "text", "data": {"text": "/登记 "}},
                {"type": "at", "data": {"qq": str(OFFICER)}},
                {"type": "text", "data": {"text": " 城关镇"}},
            ],
            "已登记",
        )
        assert (
            registered
            == f" 已登记 {OFFICER} 为城关镇信息员。可发送 /报送 报送稿件，发送 /帮助 查看全部命令。"
        )

        # a submission and its receipt, @-mentioning the officer
        receipt = await say(OFFICER, "/报送 城关镇开展冬季安全生产检查\n正文一段。", "已收到")
        assert receipt == " 已收到 城关镇《城关镇开展冬季安全生产检查》，编号G1，本月第1条。"
        last = napcat.get_calls_for_action("send_group_msg")[-1]
        assert last["group_id"] == GROUP
        assert last["message"][0] == {"type": "at", "data": {"qq": str(OFFICER)}}
        async with h.bot.db.reader() as s:
            member = (await s.execute(select(Member).where(Member.im_id == OFFICER))).scalar_one()
        assert member.name == "城关镇-李明"  # the card NapCat sent with the event (string ids)

        # a .docx uploaded to the group file area
        files["f1.docx"] = make_docx("文江镇秋季森林防火检查", "全镇共出动巡查人员120人次。")
        napcat.set_response(
            "get_group_file_url",
            {"status": "ok", "retcode": 0, "data": {"url": f"{base}/f1.docx"}},
        )
        await napcat.inject_event(
            {
                "post_type": "notice",
                "notice_type": "group_upload",
                "group_id": GROUP,
                "user_id": OFFICER,
                "file": {"id": "/f1-id", "name": "秋季防火.docx", "size": 4096, "busid": 102},
                "time": int(time.time()),
                "self_id": SELF_ID,
            }
        )
        await until(lambda: any("秋季森林防火" in t for t in sent_texts(napcat)), h)
        [asked] = napcat.get_calls_for_action("get_group_file_url")
        assert asked == {"group_id": GROUP, "file_id": "/f1-id", "busid": 102}
        drafts = await h.drafts()
        assert [(d.title, d.status) for d in drafts][-1] == (
            "文江镇秋季森林防火检查",
            DraftStatus.submitted,
        )

        # the peer restarts; the bot reconnects, and what was queued meanwhile goes out once
        await napcat.stop()
        await until(lambda: h.bot.onebot_api.peer_for(SELF_ID) is None, h)
        await h.say(OFFICER, "/报送 断线期间经HTTP上报\n正文")  # the event came by HTTP POST
        await napcat.start()
        await until(lambda: any("断线期间" in t for t in sent_texts(napcat)), h)
        await say(OFFICER, "/报送 重启之后\n正文", "重启之后")
        await h.advance(minutes=10)
        texts = sent_texts(napcat)
        assert sum("断线期间" in t for t in texts) == 1 and sum("重启之后" in t for t in texts) == 1
        assert await h.count(Draft) == 4
        assert all(r.status == "sent" for r in await h.outbox())
    finally:
        await h.close()
        await server.close()
