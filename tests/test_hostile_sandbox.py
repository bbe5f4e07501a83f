"""The demo sandbox speaks as a coordinator: it must not be driven from another
site (a form, a fetch, DNS rebinding), must answer malformed input with 4xx, and
must not be served to a network by accident. Loopback only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot import cli
from bot.sandbox import make_demo_app
from handlers import ROUTERS

from .test_files import make_docx


@pytest.fixture
async def sandbox(tmp_path) -> AsyncIterator[TestClient]:
    app = make_demo_app(tmp_path / "demo.db", "127.0.0.1", 0, ROUTERS)
    async with TestClient(TestServer(app)) as client:
        yield client


async def line_count(client: TestClient) -> int:
    return len((await (await client.get("/sandbox/state")).json())["lines"])


def say(text: str = "/帮助", **fields) -> dict:
    return {"user_id": 10001, "text": text, "chat": "group"} | fields


async def test_cross_site_requests_are_refused(sandbox):
    host = sandbox.server.host
    port = sandbox.server.port
    own = f"http://{host}:{port}"
    before = await line_count(sandbox)
    cases = [
        # a form on another site: text/plain needs no CORS preflight
        ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403),
        ({"Content-Type": "text/plain"}, 415),  # no Origin (an old browser, a script)
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
        ({"Content-Type": "application/json", "Origin": "null"}, 403),
        # DNS rebinding: evil.example now resolves to 127.0.0.1, the page is "same-origin"
        ({"Content-Type": "application/json", "Host": f"evil.example:{port}",
          "Origin": f"http://evil.example:{port}"}, 403),
    ]  # fmt: skip
    for headers, status in cases:
        resp = await sandbox.post("/sandbox/say", data=json.dumps(say()), headers=headers)
        assert resp.status == status, headers
    for path in ("/", "/sandbox/state"):
        resp = await sandbox.get(path, headers={"Host": f"evil.example:{port}"})
        assert resp.status == 403
        assert "拒绝主机名" in await resp.text()
    form = aiohttp.FormData()
    form.add_field("user_id", "10020")
    form.add_field("file", make_docx("标题", "正文"), filename="x.docx")
    resp = await sandbox.post("/sandbox/upload", data=form, headers={"Origin": own})
    assert resp.status == 403  # multipart (a form can send it) needs the page's own header
    assert await line_count(sandbox) == before
    # the page itself, by its address or as localhost
    for name in (host, "localhost"):
        headers = {"Host": f"{name}:{port}", "Origin": f"http://{name}:{port}"}
        assert (await sandbox.post("/sandbox/say", json=say(), headers=headers)).status == 200
    assert await line_count(sandbox) > before


MALFORMED = [
    ("/sandbox/say", b"{not json", 400),
    ("/sandbox/say", b"[1, 2]", 400),
    ("/sandbox/say", {"text": "/帮助"}, 400),  # no speaker
    ("/sandbox/say", say(user_id="abc"), 400),
    ("/sandbox/say", say(user_id=10**30), 400),
    ("/sandbox/say", say(user_id=10001.5), 400),
    ("/sandbox/say", say(user_id=True), 400),
    ("/sandbox/say", say(user_id=424242), 400),  # nobody on the page
    ("/sandbox/say", say(chat="channel"), 400),
    ("/sandbox/say", say(text=123), 400),
    ("/sandbox/say", say(text="   "), 400),
    ("/sandbox/advance", {"minutes": "abc"}, 400),
    ("/sandbox/advance", {"minutes": 1e30}, 400),
    ("/sandbox/advance", {"minutes": -5}, 400),
    ("/sandbox/advance", {"to_next": "yes"}, 400),
    ("/sandbox/advance", {}, 400),
]


async def test_malformed_input_gets_4xx_and_changes_nothing(sandbox):
    before = await line_count(sandbox)
    for path, body, status in MALFORMED:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp = await sandbox.post(path, data=data, headers={"Content-Type": "application/json"})
        assert resp.status == status, (path, body, await resp.text())
    for query in ("after=-1", "after=abc", "after=99999999999999999999"):
        assert (await sandbox.get(f"/sandbox/state?{query}")).status == 400
    headers = {"X-Sandbox-Upload": "1"}
    for fields in ({"user_id": "10020"}, {"user_id": "x", "file": True}, {"file": True}):
        form = aiohttp.FormData()
        for key, value in fields.items():
            if key == "file":
                form.add_field("file", make_docx("标题", "正文"), filename="x.docx")
            else:
                form.add_field(key, value)
        resp = await sandbox.post("/sandbox/upload", data=form, headers=headers)
        assert 400 <= resp.status < 500
    assert await line_count(sandbox) == before


async def test_host_check_with_public_listens_to_the_address_used(tmp_path):
    """`--host 0.0.0.0 --public`: the page answers at the address a browser used
    (served here on 127.0.0.2, still loopback), and still refuses foreign names."""
    app = make_demo_app(tmp_path / "demo.db", "0.0.0.0", 0, ROUTERS)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.2:{port}/sandbox/state"
            assert (await client.get(url)).status == 200
            for name in ("10.9.8.7", "evil.example"):
                assert (await client.get(url, headers={"Host": f"{name}:{port}"})).status == 403
    finally:
        await runner.cleanup()


def test_demo_refuses_a_network_address_without_public(tmp_path, monkeypatch, capsys):
    served = []
    monkeypatch.setattr(cli.web, "run_app", lambda app, **kw: served.append(kw))
    db = str(tmp_path / "demo.db")
    assert cli.main(["demo", "--host", "0.0.0.0", "--db", db]) == 2
    assert "--public" in capsys.readouterr().out and served == []
    assert cli.main(["demo", "--host", "192.168.1.5", "--public", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "任何能访问这个端口的人都可以协调员身份操作" in out and "192.168.1.5" in out
    assert cli.main(["demo", "--host", "127.0.0.1", "--db", db]) == 0
    assert "警告" not in capsys.readouterr().out
    assert [kw["host"] for kw in served] == ["192.168.1.5", "127.0.0.1"]


async def test_the_console_shortcut_is_guarded_like_the_other_sandbox_routes(sandbox):
    """The demo's 打开网页控制台 logs in as a coordinator: only for the page itself."""
    port = sandbox.server.port
    own = f"http://{sandbox.server.host}:{port}"
    cases = [
        ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403),  # a form elsewhere
        ({"Content-Type": "application/x-www-form-urlencoded", "Origin": own}, 415),
        ({"Content-Type": "application/json", "Host": f"evil.example:{port}",
          "Origin": f"http://evil.example:{port}"}, 403),  # DNS rebinding
    ]  # fmt: skip
    for headers, status in cases:
        resp = await sandbox.post("/sandbox/console", data="{}", headers=headers)
        assert resp.status == status, headers
        assert "xinxibot_console" not in resp.cookies
    resp = await sandbox.post("/sandbox/console", json={}, headers={"Origin": own})
    assert resp.status == 200 and "xinxibot_console" in resp.cookies
    page = await sandbox.get("/console/drafts")
    assert page.status == 200 and "王科长（协调员）" in await page.text()
