"""`xinxibot doctor` against a fake OneBot HTTP API, and the start-up refusals of `xinxibot run`."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.config import load
from bot.doctor import PLACEHOLDER_COORDINATOR, PLACEHOLDER_GROUP, diagnose, placeholders
from bot.render import TEMPLATE_DIR, Renderer
from storage import migrate
from storage.db import Database

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT, GROUP, COORDINATOR, TOKEN = 3300000001, 700100200, 20001, "tok-123"
TODAY = date(2025, 11, 23)  # the installed chinesecalendar covers 2025 and 2026


class FakeImplementation:
    """A OneBot HTTP API that checks the token like NapCat (403) and knows one account."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.members = {GROUP: [ACCOUNT, COORDINATOR, 20002]}
        self.calls: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"status": "failed", "retcode": 403}, status=403)
        return web.json_response(self.answer(request.match_info["action"], await request.json()))

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        """The same API as a forward WebSocket server (NapCat's, Lagrange's)."""
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            frame = msg.json()
            await ws.send_json(
                {**self.answer(frame["action"], frame["params"]), "echo": frame["echo"]}
            )
        return ws

    def answer(self, action: str, params: dict) -> dict:
        self.calls.append(action)
        data = {
            "get_login_info": {"user_id": ACCOUNT, "nickname": "信息机器人"},
            "get_group_list": [{"group_id": str(g)} for g in self.members],  # ids as strings
            "get_group_member_list": [
                {"user_id": u} for u in self.members.get(int(params.get("group_id", 0)), [])
            ],
        }.get(action)
        if data is None:
            return {"status": "failed", "retcode": 1404, "data": None}
        return {"status": "ok", "retcode": 0, "data": data}


@pytest.fixture
async def implementation():
    fake = FakeImplementation()
    app = web.Application()
    app.router.add_post("/{action}", fake.handle)
    app.router.add_get("/ws", fake.socket)
    server = TestServer(app)
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


def write_config(tmp_path: Path, **onebot: str) -> Path:
    settings = {
        "api_url": "",
        "ws_url": "",
        "access_token": TOKEN,
        "secret": "",
        "listen": "127.0.0.1:8080",
        "groups": f"[{GROUP}]",
        "coordinators": f'["{COORDINATOR}"]',
        **onebot,
    }
    path = tmp_path / "xinxibot.toml"
    path.write_text(
        f'[bot]\ndatabase = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n'
        f'listen = "{settings["listen"]}"\ncoordinators = {settings["coordinators"]}\n'
        f'[onebot]\ngroups = {settings["groups"]}\napi_url = "{settings["api_url"]}"\n'
        f'ws_url = "{settings["ws_url"]}"\n'
        f'access_token = "{settings["access_token"]}"\nsecret = "{settings["secret"]}"\n',
        encoding="utf-8",
    )
    return path


async def report(path: Path, today: date = TODAY) -> tuple[list[str], list]:
    checks = await diagnose(path, today=today)
    return Renderer().text("doctor.txt.j2", checks=checks).splitlines(), checks


def line(lines: list[str], words: str) -> str:
    found = [x for x in lines if words in x]
    assert found, f"no line with {words!r} in:\n" + "\n".join(lines)
    return found[0]


async def test_good_config_passes_every_check(tmp_path, implementation):
    path = write_config(tmp_path, api_url=implementation.url)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    await migrate.upgrade(db.engine)
    await db.close()
    lines, checks = await report(path)
    print("\n".join(lines))
    assert [c.outcome for c in checks] == ["ok"] * len(checks)
    assert line(lines, "OneBot 接口可用").endswith(f"账号 {ACCOUNT}（信息机器人）。")
    assert line(lines, f"群 {GROUP}").startswith("【通过】 机器人账号在群")
    assert line(lines, "数据库").startswith("【通过】")
    assert line(lines, "工作日历").startswith("【通过】 工作日历已包含2025年和2026年")
    assert lines[-1] == "检查完毕：0项失败，0项需注意。可以运行 xinxibot run。"
    # (the connection asks get_login_info itself first, as `run` does)
    assert implementation.calls[-3:] == [
        "get_login_info",
        "get_group_list",
        "get_group_member_list",
    ]


async def test_broken_config_fails_with_one_line_per_problem(tmp_path, implementation):
    path = tmp_path / "xinxibot.toml"
    path.write_text((TEMPLATE_DIR / "config.toml.j2").read_text(encoding="utf-8"), encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    text = text.replace('listen = "127.0.0.1:8080"', 'listen = "0.0.0.0:8080"')
    text = text.replace('api_url = "http://127.0.0.1:3000"', f'api_url = "{implementation.url}"')
    text = text.replace('access_token = ""', 'access_token = "wrong"')
    path.write_text(text.replace('access_token = "wrong"', 'access_token = ""'), encoding="utf-8")
    lines, _ = await report(path)
    print("\n".join(lines))
    assert line(lines, "示例值").startswith(
        "【失败】 仍是 xinxibot init 生成的示例值：群号 123456789（[onebot] groups）、协调员 10001"
    )
    assert line(lines, "监听 0.0.0.0:8080").startswith("【失败】")
    assert "secret 和 access_token 都为空" in line(lines, "监听")
    assert line(lines, "OneBot 接口").startswith("【失败】 OneBot 接口令牌不对")  # no token sent
    assert lines[-1].startswith("检查完毕：3项失败")

    path.write_text(text, encoding="utf-8")  # a wrong token: refused the same way
    lines, _ = await report(path)
    assert line(lines, "OneBot 接口").startswith("【失败】 OneBot 接口令牌不对")
    assert line(lines, "监听 0.0.0.0:8080").startswith("【通过】")  # a token protects it now


async def test_account_outside_the_group_and_missing_coordinator(tmp_path, implementation):
    path = write_config(
        tmp_path,
        api_url=implementation.url,
        groups=f"[{GROUP}, 700100300]",
        coordinators=f'["{COORDINATOR}", "20009"]',
    )
    lines, _ = await report(path)
    assert line(lines, "群 700100300").startswith("【失败】 机器人账号不在群 700100300 中")
    assert line(lines, f"群 {GROUP}").startswith(f"【失败】 群 {GROUP} 中找不到协调员 20009")


async def test_unreachable_api_and_missing_api_url(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    lines, checks = await report(write_config(tmp_path, api_url=f"http://127.0.0.1:{closed}"))
    assert line(lines, "OneBot 接口").startswith("【失败】 无法连接 OneBot 接口")
    assert checks[-1].what == "api"  # no group checks without an account
    lines, checks = await report(write_config(tmp_path, api_url=""))
    assert line(lines, "api_url").startswith("【注意】 未配置 [onebot] api_url 和 ws_url，本次跳过")
    assert not any(c.outcome == "fail" for c in checks)
    lines, checks = await report(write_config(tmp_path, ws_url=f"ws://127.0.0.1:{closed}/"))
    assert line(lines, "WebSocket").startswith(
        "【失败】 无法连接 OneBot 正向 WebSocket（[onebot] ws_url）"
    )


async def test_forward_websocket_only_config_is_checked_over_the_socket(tmp_path, implementation):
    ws_url = implementation.url.replace("http://", "ws://") + "/ws"
    lines, _ = await report(write_config(tmp_path, ws_url=ws_url))
    assert line(lines, "OneBot 接口可用").endswith(f"账号 {ACCOUNT}（信息机器人）。")
    assert line(lines, f"群 {GROUP}").startswith("【通过】 机器人账号在群")
    # (the connection asks get_login_info itself first, as `run` does)
    assert implementation.calls[-3:] == [
        "get_login_info",
        "get_group_list",
        "get_group_member_list",
    ]


async def test_database_and_calendar_states(tmp_path):
    path = write_config(tmp_path)
    lines, _ = await report(path)
    assert line(lines, "数据库").startswith("【注意】 数据库文件")  # not created yet
    assert "首次启动时自动创建" in line(lines, "数据库")
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        await conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('9999_newer')")
    await db.close()
    lines, _ = await report(path)
    assert line(lines, "数据库").startswith("【失败】")
    assert "结构版本 9999_newer 不是本程序认识的版本" in line(lines, "数据库")
    lines, _ = await report(path, today=date(2099, 3, 1))
    assert line(lines, "工作日历").startswith("【失败】 工作日历没有2099年的节假日安排")


async def test_config_error_is_the_first_and_only_check(tmp_path):
    path = tmp_path / "xinxibot.toml"
    path.write_text('[onebot]\nrate_per_minute = "fast"\n', encoding="utf-8")
    lines, checks = await report(path)
    assert [c.outcome for c in checks] == ["fail"]
    assert lines[0] == "【失败】 “onebot.rate_per_minute”的取值 fast 类型不对。应填写：整数"


def test_placeholders_are_the_values_init_writes(tmp_path):
    path = tmp_path / "xinxibot.toml"
    path.write_text((TEMPLATE_DIR / "config.toml.j2").read_text(encoding="utf-8"), encoding="utf-8")
    assert placeholders(load(path, env={})) == {
        "groups": [PLACEHOLDER_GROUP],
        "coordinators": [PLACEHOLDER_COORDINATOR],
    }


def xinxibot(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def test_doctor_exit_code_follows_the_failures(tmp_path):
    assert xinxibot("init", cwd=tmp_path).returncode == 0
    broken = xinxibot("doctor", cwd=tmp_path)
    assert broken.returncode == 1
    assert "【失败】 仍是 xinxibot init 生成的示例值" in broken.stdout
    good = write_config(tmp_path)  # no api_url: a skipped check is no failure
    ok = xinxibot("doctor", "--config", str(good), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().endswith("可以运行 xinxibot run。")


def test_run_refuses_the_untouched_init_config(tmp_path):
    assert xinxibot("init", cwd=tmp_path).returncode == 0
    refused = xinxibot("run", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stdout.startswith(
        "未启动：配置中仍是 xinxibot init 生成的示例值：群号 123456789（[onebot] groups）、"
        "协调员 10001（[bot] coordinators）。"
    )
    assert "已启动" not in refused.stdout and "Traceback" not in refused.stderr
    assert not (tmp_path / "xinxibot.db").exists()  # refused before touching anything


async def test_run_on_a_busy_port_says_so_in_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = write_config(tmp_path, listen=f"127.0.0.1:{port}")
        done = await asyncio.to_thread(xinxibot, "run", "--config", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.strip() == (
        f"未启动：无法监听 127.0.0.1:{port}，端口已被其他程序占用（可能 xinxibot 已在运行）。"
        "请在 [bot] listen 中换一个端口或地址。"
    )
    assert "Traceback" not in done.stderr
