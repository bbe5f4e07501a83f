"""The sandbox: a local web page that plays the QQ group.

It is a transport like OneBot: what a person types on the page becomes an
Event for the same dispatcher, and what the bot sends arrives through
`call()` exactly as an OneBot implementation would receive it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from sqlalchemy import select

from storage.models import Member, Role, Unit

from .app import BotApp
from .clock import Clock
from .config import Config, build
from .onebot import Event, FileRef, Segment
from .router import Router
from .server import BOT_KEY, make_web_app
from .transport import ApiResult

SANDBOX_KEY = web.AppKey("sandbox", "Sandbox")
MAX_UPLOAD = 30 * 1024 * 1024


@dataclass
class ChatLine:
    id: int
    chat: str  # group / private
    sender: str  # a person's name, or "bot"
    peer: int  # the group id, or the private chat's person
    text: str
    at: str

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Sandbox:
    def __init__(self, bot_id: int, group_id: int) -> None:
        self.bot_id, self.group_id = bot_id, group_id
        self.bot: BotApp | None = None
        self.lines: list[ChatLine] = []
        self.files: dict[str, tuple[str, bytes]] = {}
        self.base_url = ""
        self.names: dict[int, str] = {}
        self._ids = itertools.count(1)
        # Message ids unique across demo restarts (processed-event keys persist).
        self._message_ids = itertools.count(int(time.time() * 1000) % 10**12)
        self._changed = asyncio.Condition()
        self._closing = False

    # ------------------------------------------------------------ transport

    async def call(self, self_id: int | None, action: str, params: dict) -> ApiResult:
        if action in ("send_group_msg", "send_private_msg"):
            text = self._render(params.get("message", []))
            if action == "send_group_msg":
                await self._append("group", "bot", int(params["group_id"]), text)
            else:
                await self._append("private", "bot", int(params["user_id"]), text)
            return ApiResult("ok", {"message_id": next(self._message_ids)})
        if action in ("upload_group_file", "upload_private_file"):
            chat, peer = (
                ("group", int(params["group_id"]))
                if action == "upload_group_file"
                else ("private", int(params["user_id"]))
            )
            await self._append(
                chat,
                "bot",
                peer,
                self.bot.renderer.text("sandbox_file.txt.j2", name=params["name"]),
            )
            return ApiResult("ok", {"file_id": params["name"]})
        if action in ("get_group_file_url", "get_file"):
            file_id = params.get("file_id", "")
            if file_id not in self.files:
                return ApiResult("failed", None, "no such file")
            return ApiResult("ok", {"url": f"{self.base_url}/sandbox/files/{file_id}"})
        return ApiResult("failed", None, f"{action} not supported by the sandbox")

    def _render(self, segments: list[dict]) -> str:
        out = []
        for seg in segments:
            if seg["type"] == "text":
                out.append(seg["data"]["text"])
            elif seg["type"] == "at":
                qq = int(seg["data"]["qq"])
                out.append("@" + self.names.get(qq, str(qq)))
        return "".join(out)

    async def _append(self, chat: str, sender: str, peer: int, text: str) -> None:
        now = self.bot.clock.now() if self.bot else None
        line = ChatLine(
            next(self._ids), chat, sender, peer, text, now.strftime("%m-%d %H:%M") if now else ""
        )
        async with self._changed:
            self.lines.append(line)
            self._changed.notify_all()

    # ------------------------------------------------------------ pages

    def install(self, app: web.Application) -> None:
        app[SANDBOX_KEY] = self
        app.router.add_get("/", self.page)
        app.router.add_get("/sandbox/state", self.state)
        app.router.add_post("/sandbox/say", self.say)
        app.router.add_post("/sandbox/upload", self.upload)
        app.router.add_post("/sandbox/advance", self.advance)
        app.router.add_get("/sandbox/files/{file_id}", self.file)
        app.on_shutdown.append(self._release_waiters)

    async def _release_waiters(self, _app: web.Application) -> None:
        """Answer pending long-polls at once so shutdown does not wait for them."""
        async with self._changed:
            self._closing = True
            self._changed.notify_all()

    async def _members(self) -> list[dict[str, Any]]:
        bot = self.bot
        async with bot.db.reader() as s:
            rows = (
                await s.execute(
                    select(Member, Unit.name)
                    .outerjoin(Unit, Unit.id == Member.unit_id)
                    .order_by(Member.role, Member.im_id)
                )
            ).all()
        people = [
            {"id": m.im_id, "name": m.name, "role": m.role.value, "unit": unit or ""}
            for m, unit in rows
            if m.role in (Role.coordinator, Role.officer, Role.leader)
        ]
        people.append({"id": 10099, "name": "访客", "role": "stranger", "unit": ""})
        self.names = {p["id"]: p["name"] for p in people}
        return people

    async def page(self, request: web.Request) -> web.Response:
        bot = request.app[BOT_KEY]
        html = bot.renderer.page("sandbox.html.j2", group_id=self.group_id)
        return web.Response(text=html, content_type="text/html")

    async def state(self, request: web.Request) -> web.Response:
        after = int(request.query.get("after", "0") or 0)
        wait = request.query.get("wait") == "1"
        if wait and not any(line.id > after for line in self.lines):
            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(
                            lambda: self._closing or any(x.id > after for x in self.lines)
                        ),
                        20,
                    )
                except TimeoutError:
                    pass
        bot = request.app[BOT_KEY]
        upcoming = sorted(when for _, when in bot.scheduler.upcoming())
        return web.json_response(
            {
                "now": bot.clock.now().strftime("%Y-%m-%d %H:%M"),
                "next_job": upcoming[0].strftime("%Y-%m-%d %H:%M") if upcoming else None,
                "members": await self._members(),
                "lines": [line.as_dict() for line in self.lines if line.id > after],
            }
        )

    async def say(self, request: web.Request) -> web.Response:
        data = await request.json()
        user_id, text, chat = (
            int(data["user_id"]),
            str(data.get("text", "")),
            data.get("chat", "group"),
        )
        if not text.strip():
            raise web.HTTPBadRequest(text="empty message")
        await self._speak(request, chat, user_id, text, [Segment("text", {"text": text})])
        return web.json_response({"ok": True})

    async def _speak(
        self, request: web.Request, chat: str, user_id: int, shown: str, segments: list, **fields
    ) -> None:
        """Show what a person said on the page and hand it to the bot as an event."""
        await self._members()
        name = self.names.get(user_id, str(user_id))
        peer = self.group_id if chat == "group" else user_id
        await self._append(chat, name, peer, shown)
        message_id = next(self._message_ids)
        event = Event(
            post_type=fields.pop("post_type", "message"),
            self_id=self.bot_id,
            chat_type=chat,
            group_id=self.group_id if chat == "group" else None,
            user_id=user_id,
            message_id=message_id,
            segments=segments,
            sender_name=name,
            key=fields.pop("key", f"msg:{self.bot_id}:{message_id}"),
            **fields,
        )
        await request.app[BOT_KEY].dispatcher.handle(event)

    async def upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        user_id, upload = int(form["user_id"]), form["file"]
        data = upload.file.read(MAX_UPLOAD + 1)
        file_id = f"sandbox-{next(self._message_ids)}"
        name = unquote(upload.filename)  # aiohttp's client percent-encodes non-ASCII names
        self.files[file_id] = (name, data)
        chat = str(form.get("chat", "group"))
        shown = self.bot.renderer.text("sandbox_file.txt.j2", name=name)
        await self._speak(
            request, chat, user_id, shown, [],
            post_type="notice",
            notice_type="group_upload" if chat == "group" else "offline_file",
            file=FileRef(file_id=file_id, name=name, size=len(data)),
            key=f"file:{self.bot_id}:{self.group_id if chat == 'group' else user_id}:{file_id}",
        )  # fmt: skip
        return web.json_response({"ok": True})

    async def advance(self, request: web.Request) -> web.Response:
        """Fast-forward the sandbox clock (by minutes, or to the next scheduled job)
        and run what became due, as if that time had passed."""
        bot = request.app[BOT_KEY]
        data = await request.json()
        if data.get("to_next"):
            upcoming = sorted(when for _, when in bot.scheduler.upcoming())
            if not upcoming:
                raise web.HTTPConflict(text="no scheduled job")
            delta = max(upcoming[0] - bot.clock.now(), timedelta())
        else:
            minutes = int(data.get("minutes", 0))
            if not 0 < minutes <= 60 * 24 * 31:
                raise web.HTTPBadRequest(text="minutes must be 1..44640")
            delta = timedelta(minutes=minutes)
        bot.clock.advance(delta)
        await bot.scheduler.run_due()
        await bot.tick()
        await self._append_clock_note(bot)
        return web.json_response({"now": bot.clock.now().strftime("%Y-%m-%d %H:%M")})

    async def _append_clock_note(self, bot: BotApp) -> None:
        await self._append(
            "system",
            "clock",
            self.group_id,
            bot.renderer.text("sandbox_clock.txt.j2", now=bot.clock.now()),
        )

    async def file(self, request: web.Request) -> web.Response:
        entry = self.files.get(request.match_info["file_id"])
        if entry is None:
            raise web.HTTPNotFound()
        return web.Response(body=entry[1], content_type="application/octet-stream")


def demo_config(db_path: Path, host: str, port: int) -> Config:
    from storage import demo

    return build(
        {
            "bot": {
                "database": f"sqlite+aiosqlite:///{db_path.resolve()}",
                "listen": f"{host}:{port}",
                "coordinators": [str(i) for i in demo.COORDINATORS],
                "files_dir": str(db_path.resolve().parent / "xinxibot-demo-files"),
            },
            "onebot": {"groups": [demo.GROUP_ID], "api_url": ""},
        },
        env={},
    )


def make_demo_app(
    db_path: Path,
    host: str,
    port: int,
    routers: Iterable[Router],
    clock: Clock | None = None,
    on_start: Callable[[BotApp, bool], None] | None = None,
) -> web.Application:
    """The demo: the demo county seeded into SQLite, the sandbox as the transport."""
    from storage import demo

    config = demo_config(db_path, host, port)
    sandbox = Sandbox(demo.BOT_ID, demo.GROUP_ID)
    bot = BotApp(config, routers, clock=clock, transport=sandbox)
    bot.self_id = demo.BOT_ID
    sandbox.bot = bot
    sandbox.base_url = f"http://{host}:{port}"
    app = make_web_app(bot, start_bot=False)
    sandbox.install(app)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        seeded = []

        async def seed() -> None:  # after the migrations, before the routers' start-up hooks
            seeded.append(await demo.seed(bot.db, bot.clock.now()))

        await bot.start(prepare=seed)
        if on_start:
            on_start(bot, seeded[0])
        yield
        await bot.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
