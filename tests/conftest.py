"""Test harness: the real aiohttp app on a real port, events POSTed with a
real HMAC signature, and a fake OneBot HTTP API (also a real server) that
records every call the bot makes. Time is a frozen injected clock.

The database is a SQLite file per test, or, with
XINXIBOT_TEST_DATABASE=postgresql+asyncpg://USER@HOST:PORT/DB, a PostgreSQL
database per test cloned from a migrated template (`tests/pgtest.py`).
Markers: `postgres` (needs PostgreSQL: skipped, with the reason, on the SQLite
run), `sqlite_only` (SQLite by design, with the reason: not collected on the
PostgreSQL run), `no_database` (touches no database: runs once, on SQLite).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bot.app import BotApp
from bot.clock import Clock
from bot.config import build
from bot.config import database_url as configured_database
from bot.onebot import sign
from bot.server import make_web_app
from handlers import ROUTERS
from storage import rollup
from storage.db import Database
from storage.models import Draft, Outbox, ProcessedEvent

from . import pgtest

FIXTURES = Path(__file__).parent / "fixtures" / "onebot"
SELF_ID = 3300000001
GROUP = 700100200
COORDINATOR = 10001
SECRET = "test-secret"
START = datetime(2026, 11, 23, 10, 0)  # a Monday morning


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class FakeOneBot:
    """An OneBot v11 HTTP API that records calls and answers like NapCat."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.files: dict[str, bytes] = {}
        self.stalled: set[str] = set()  # files whose download sends a first chunk, then nothing
        self.fail_actions: dict[str, dict] = {}  # action -> envelope to answer instead
        self.http_status: int | None = None  # answer every call with this HTTP status
        self.delay = 0.0  # seconds before answering (longer than api_timeout: a timeout)
        self.auth_headers: list[str | None] = []
        self._ids = itertools.count(1901)
        self._changed = asyncio.Condition()
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{action}", self._api)
        app.router.add_get("/files/{name}", self._file)
        return app

    async def _api(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        params = await request.json()
        self.auth_headers.append(request.headers.get("Authorization"))
        if self.http_status is not None:
            return web.Response(status=self.http_status)
        async with self._changed:
            self.calls.append((action, params))
            self._changed.notify_all()
        if self.delay:
            await asyncio.sleep(self.delay)
        if action in self.fail_actions:
            return web.json_response(self.fail_actions[action])
        if action in ("send_group_msg", "send_private_msg"):
            return web.json_response(
                {"status": "ok", "retcode": 0, "data": {"message_id": next(self._ids)}}
            )
        if action == "get_group_file_url":
            name = params["file_id"].strip("/")
            if name not in self.files:
                return web.json_response({"status": "failed", "retcode": 404, "data": None})
            return web.json_response(
                {"status": "ok", "retcode": 0, "data": {"url": f"{self.url}/files/{name}"}}
            )
        if action == "get_file":
            name = params["file_id"].strip("/")
            if name not in self.files:
                return web.json_response({"status": "failed", "retcode": 404, "data": None})
            return web.json_response(
                {"status": "ok", "retcode": 0, "data": {"url": f"{self.url}/files/{name}"}}
            )
        return web.json_response({"status": "failed", "retcode": 1404, "data": None})

    async def _file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name in self.stalled:
            resp = web.StreamResponse(headers={"Content-Length": "100000"})
            await resp.prepare(request)
            await resp.write(b"PK\x03\x04")
            # until the bot gives up and hangs up (aiohttp has no disconnect event)
            while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            return resp
        data = self.files.get(name)
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data)

    # ---------------------------------------------------------- assertions

    def sent(self) -> list[tuple[str, int, list[dict]]]:
        """Messages sent: (group|private, target id, segments)."""
        out = []
        for action, params in self.calls:
            if action == "send_group_msg":
                out.append(("group", int(params["group_id"]), params["message"]))
            elif action == "send_private_msg":
                out.append(("private", int(params["user_id"]), params["message"]))
        return out

    def texts(self, kind: str | None = None, target: int | None = None) -> list[str]:
        return [
            "".join(s["data"].get("text", "") for s in segs)
            for k, t, segs in self.sent()
            if (kind is None or k == kind) and (target is None or t == target)
        ]

    def clear(self) -> None:
        self.calls.clear()


class FakeWsImplementation:
    """An OneBot implementation's forward WebSocket server (NapCat's, Lagrange's): the
    bot connects to it. Records the handshake headers and every frame it is sent;
    `answer` says how API calls are answered: "ok" (with a message id), "silent"
    (never), "close" (the socket closes instead), "wrong_echo" (an echo nobody sent)."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.frames: list[dict] = []
        self.answer = "ok"
        self.sockets: set[web.WebSocketResponse] = set()
        self.port = 0
        self._ids = itertools.count(7001)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        """Listen (again, on the same port after a stop)."""
        app = web.Application()
        app.router.add_get("/", self._socket)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def push(self, event: dict | str) -> None:
        """An event (or any raw text frame) to every connected bot."""
        for ws in list(self.sockets):
            await (ws.send_str(event) if isinstance(event, str) else ws.send_json(event))

    def calls(self, action: str) -> list[dict]:
        return [f for f in self.frames if f.get("action") == action]

    def texts(self) -> list[str]:
        return [
            "".join(s["data"].get("text", "") for s in f["params"]["message"])
            for f in self.calls("send_group_msg") + self.calls("send_private_msg")
        ]

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        self.headers.append(dict(request.headers))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        await ws.send_json(fixture("lifecycle_connect.json"))
        try:
            async for msg in ws:
                frame = json.loads(msg.data)
                self.frames.append(frame)
                if self.answer == "close":
                    await ws.close()
                elif self.answer in ("ok", "wrong_echo"):
                    echo = frame["echo"] if self.answer == "ok" else f"nobody-{frame['echo']}"
                    data = {"message_id": next(self._ids)}
                    await ws.send_json({"status": "ok", "retcode": 0, "data": data, "echo": echo})
        finally:
            self.sockets.discard(ws)
        return ws


async def until(condition, harness: Harness | None = None, seconds: float = 10.0) -> None:
    """Wait (bounded) for something that arrives over a real socket."""
    async with asyncio.timeout(seconds):
        while not condition():
            if harness is not None:
                await harness.settle()
            await asyncio.sleep(0.01)


class Harness:
    """The running bot plus helpers that read like a conversation."""

    def __init__(
        self, bot: BotApp, client: aiohttp.ClientSession, base: str, fake: FakeOneBot
    ) -> None:
        self.bot, self.client, self.base, self.fake = bot, client, base, fake
        self._message_ids = itertools.count(1000)
        self.names: dict[int, str] = {}
        self.token = bot.config.onebot.access_token

    @property
    def clock(self) -> Clock:
        return self.bot.clock

    async def close(self) -> None:
        await self.client.close()

    async def advance(self, **delta: float) -> None:
        """Move the clock and let due scheduled jobs run (no real sleeping)."""
        self.clock.advance(timedelta(**delta))
        await self.bot.scheduler.run_due()
        await self.settle()

    async def advance_to(self, when: datetime) -> None:
        self.clock.set(when)
        await self.bot.scheduler.run_due()
        await self.settle()

    async def post_raw(
        self, body: bytes, headers: dict[str, str] | None = None, path: str = "/onebot/v11/"
    ) -> int:
        async with self.client.post(self.base + path, data=body, headers=headers or {}) as resp:
            return resp.status

    async def post_event(
        self, event: dict, *, secret: str | None = SECRET, settle: bool = True
    ) -> int:
        body = json.dumps(event, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Self-ID": str(event.get("self_id", SELF_ID)),
        }
        if secret:
            headers["X-Signature"] = sign(secret, body)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        status = await self.post_raw(body, headers)
        if settle:
            await self.settle()
        return status

    async def settle(self) -> None:
        """Let background downloads finish and the sender deliver what is due."""
        while self.bot._tasks:
            await asyncio.wait(set(self.bot._tasks), timeout=10)
        await self.bot.sender.drained()

    def message_event(
        self, user_id: int, message: Any, *, group: int | None = GROUP, name: str | None = None
    ) -> dict:
        event = copy.deepcopy(
            fixture("group_message_array.json" if group else "private_message.json")
        )
        event["message_id"] = next(self._message_ids)
        event["user_id"] = user_id
        event["message"] = (
            [{"type": "text", "data": {"text": message}}] if isinstance(message, str) else message
        )
        event["raw_message"] = message if isinstance(message, str) else ""
        if group:
            event["group_id"] = group
        event["sender"] = {
            "user_id": user_id,
            "nickname": name or self.names.get(user_id, f"用户{user_id}"),
            "card": "",
        }
        return event

    async def say(
        self, user_id: int, text: Any, *, group: int | None = GROUP, name: str | None = None
    ) -> int:
        return await self.post_event(self.message_event(user_id, text, group=group, name=name))

    async def tell(self, user_id: int, text: str) -> int:
        """A private message to the bot."""
        return await self.say(user_id, text, group=None)

    def replies(self) -> list[str]:
        return self.fake.texts()

    def last_reply(self) -> str:
        texts = self.fake.texts()
        assert texts, "the bot sent nothing"
        return texts[-1]

    async def processed_keys(self) -> set[str]:
        async with self.bot.db.reader() as s:
            return set((await s.execute(select(ProcessedEvent.key))).scalars())

    async def count(self, model: type, *where) -> int:
        async with self.bot.db.reader() as s:
            return (
                await s.execute(select(func.count()).select_from(model).where(*where))
            ).scalar_one()

    async def drafts(self) -> list[Draft]:
        async with self.bot.db.reader() as s:
            return list((await s.execute(select(Draft).order_by(Draft.id))).scalars())

    async def outbox(self) -> list[Outbox]:
        async with self.bot.db.reader() as s:
            return list((await s.execute(select(Outbox).order_by(Outbox.id))).scalars())

    async def register(self, im_id: int, unit: str, name: str) -> None:
        """A coordinator registers an officer (through the bot, like a user would)."""
        self.names[im_id] = name
        await self.say(
            COORDINATOR,
            [
                {"type": "text", "data": {"text": "/登记 "}},
                {"type": "at", "data": {"qq": str(im_id), "name": name}},
                {"type": "text", "data": {"text": f" {unit}"}},
            ],
            name="王科长",
        )


ON_POSTGRES = pgtest.ON_POSTGRES


def database_url(tmp_path: Path, name: str = "bot", migrated: bool = True) -> str:
    """This test's database `name`: a SQLite file in `tmp_path`, or on the PostgreSQL run
    a database of its own (migrated, or empty with `migrated=False`), dropped after the test.
    The same test and name give the same database (a restarted bot finds its data)."""
    if ON_POSTGRES:
        return pgtest.database(tmp_path, name, migrated)
    return f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}"


def query(url: str, sql: str) -> list[tuple]:
    """Rows of `sql` on the database at `url`, read synchronously (for subprocess tests)."""
    if ON_POSTGRES:
        return pgtest.query(url, sql)
    import sqlite3

    con = sqlite3.connect(url.split(":///", 1)[1])
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def make_config(tmp_path: Path, **overrides: Any):
    data = {
        "bot": {
            "database": database_url(tmp_path),
            "coordinators": [str(COORDINATOR)],
            "files_dir": str(tmp_path / "files"),
            "listen": "127.0.0.1:0",
        },
        "onebot": {"groups": [GROUP], "api_url": "", "secret": SECRET, "rate_per_minute": 0},
    }
    if ON_POSTGRES:  # several processes may share PostgreSQL: each names its account
        data["onebot"]["self_id"] = SELF_ID
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        data.setdefault(section, {})[name] = value
    return build(data, env={}, base_dir=tmp_path)


@pytest.fixture(autouse=True)
def _test_databases() -> Iterator[None]:
    """PostgreSQL run: the databases a test created are dropped after it."""
    yield
    if ON_POSTGRES:
        pgtest.drop_test_databases()


_bot_databases: list[str] = []  # the databases this test's bots ran on (start_harness)


async def rollup_differences(url: str) -> list[rollup.Difference]:
    db = Database(url)
    try:
        return await rollup.verify(db)
    finally:
        await db.close()


@pytest.fixture(autouse=True)
def _rollups_verified(_test_databases: None) -> Iterator[None]:
    """After every test that ran the bot: its rollups equal their rebuild from the raw
    rows (what `xinxibot db verify` checks), else the test fails. Torn down before
    `_test_databases` drops the PostgreSQL databases."""
    _bot_databases.clear()
    yield
    urls = list(dict.fromkeys(_bot_databases))
    _bot_databases.clear()
    for url in urls:
        if ON_POSTGRES:  # the server itself, not a proxy the test put in front of it
            url = pgtest.url_of(make_url(url).database)
        differences = asyncio.run(rollup_differences(url))
        assert not differences, f"rollups differ from the raw rows: {differences[:5]}"


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "postgres(reason): needs PostgreSQL (XINXIBOT_TEST_DATABASE=postgresql+asyncpg://...)",
        "sqlite_only(reason): SQLite by design; not collected on the PostgreSQL run",
        "no_database: touches no database; runs once, on the SQLite run",
    ):
        config.addinivalue_line("markers", line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        if ON_POSTGRES and (
            item.get_closest_marker("sqlite_only") or item.get_closest_marker("no_database")
        ):
            drop.append(item)
            continue
        if not ON_POSTGRES and item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: set XINXIBOT_TEST_DATABASE"))
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_sessionfinish(session: pytest.Session) -> None:
    if ON_POSTGRES:
        pgtest.finish()


@pytest.fixture
async def fake_onebot() -> AsyncIterator[FakeOneBot]:
    fake = FakeOneBot()
    server = TestServer(fake.app())
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


async def start_harness(
    tmp_path: Path, fake: FakeOneBot, start: datetime = START, **overrides: Any
) -> tuple[Harness, TestServer]:
    overrides.setdefault("onebot__api_url", fake.url)
    config = make_config(tmp_path, **overrides)
    _bot_databases.append(configured_database(config))
    bot = BotApp(config, ROUTERS, clock=Clock(config.tz, frozen_at=start))
    for connection in bot.forward:
        connection.first_delay = 0.05  # forward-WS reconnects wait real time: keep it short
    server = TestServer(make_web_app(bot))
    await server.start_server()
    client = aiohttp.ClientSession()
    return Harness(bot, client, str(server.make_url("")).rstrip("/"), fake), server


async def populate(harness: Harness) -> None:
    """The coordinator adds two units and registers their officers, through the bot."""
    harness.names[COORDINATOR] = "王科长"
    await harness.say(COORDINATOR, "/添加单位 城关镇 乡镇 城关", name="王科长")
    await harness.say(COORDINATOR, "/添加单位 经信局 部门", name="王科长")
    await harness.register(10020, "城关镇", "李明")
    await harness.register(10030, "经信局", "周强")
    harness.fake.clear()


@pytest.fixture
async def implementation() -> AsyncIterator[FakeWsImplementation]:
    peer = FakeWsImplementation()
    await peer.start()
    yield peer
    await peer.stop()


@pytest.fixture
async def group(tmp_path: Path, fake_onebot: FakeOneBot) -> AsyncIterator[Harness]:
    """A running bot with the demo's coordinator and two registered officers."""
    harness, server = await start_harness(tmp_path, fake_onebot)
    await populate(harness)
    yield harness
    await harness.close()
    await server.close()
