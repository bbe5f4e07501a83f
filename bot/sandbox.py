"""The sandbox: a local web page that plays the QQ group.

It is a transport like OneBot: what a person types on the page becomes an
Event for the same dispatcher, and what the bot sends arrives through
`call()` exactly as an OneBot implementation would receive it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web
from sqlalchemy import func, select
from yarl import URL

from storage.models import Member, Outbox, Role, Unit
from storage.queries import Repo

from .app import BotApp
from .clock import Clock
from .config import Config, build
from .console import CONSOLE_KEY
from .onebot import Event, FileRef, Segment
from .router import Router
from .server import BOT_KEY, make_web_app
from .transport import ApiResult

log = logging.getLogger(__name__)

SANDBOX_KEY = web.AppKey("sandbox", "Sandbox")
VISITOR = 10099  # the stranger on the page, until registered
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
# A cross-site page cannot set this header without a CORS preflight the sandbox never grants.
UPLOAD_HEADER = "X-Sandbox-Upload"
UPLOAD_WAIT = 30.0  # seconds a file the bot sends waits for the messages queued before it
_ID = re.compile(r"^[0-9]{1,18}$")


@dataclass
class ChatLine:
    id: int
    chat: str  # group / private
    sender: str  # a person's name, or "bot"
    peer: int  # the group id, or the private chat's person
    text: str
    at: str
    file: dict[str, str] | None = None  # {"id", "name"}: shown as a download link

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Sandbox:
    def __init__(self, bot_id: int, group_id: int, host: str) -> None:
        self.bot_id, self.group_id, self.host = bot_id, group_id, host
        self.bot: BotApp | None = None
        self.lines: list[ChatLine] = []
        self.files: dict[str, tuple[str, bytes]] = {}
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
            name = params["name"]
            await self._after_queued(chat, peer)
            file_id = self._keep(name, await asyncio.to_thread(Path(params["file"]).read_bytes))
            await self._append(
                chat,
                "bot",
                peer,
                self.bot.renderer.text("sandbox_file.txt.j2", name=name),
                file={"id": file_id, "name": name},
            )
            return ApiResult("ok", {"file_id": file_id})
        if action == "get_file":  # the upload's bytes, as NapCat's base64 answer
            entry = self.files.get(params.get("file_id", ""))
            if entry is None:
                return ApiResult("failed", None, "no such file")
            return ApiResult(
                "ok", {"file_name": entry[0], "base64": base64.b64encode(entry[1]).decode()}
            )
        return ApiResult("failed", None, f"{action} not supported by the sandbox")

    async def _after_queued(self, chat: str, peer: int) -> None:
        """Show an upload after the messages queued before it for the same chat (the
        export's "已生成，正在发送。"), which may be waiting for the rate limit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UPLOAD_WAIT
        while await self._queued(chat, peer) and loop.time() < deadline:
            # woken by every line shown, and re-checked at least 4 times a second
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.25)

    async def _queued(self, chat: str, peer: int) -> bool:
        async with self.bot.db.reader() as s:
            q = (
                select(func.count())
                .select_from(Outbox)
                .where(
                    Outbox.status.in_(("pending", "sending")),
                    Outbox.target_type == chat,
                    Outbox.target_id == peer,
                )
            )
            return (await s.execute(q)).scalar_one() > 0

    def _keep(self, name: str, data: bytes) -> str:
        file_id = f"sandbox-{next(self._message_ids)}"
        self.files[file_id] = (name, data)
        return file_id

    def _render(self, segments: list[dict]) -> str:
        """Segments as QQ shows them: each @-mention followed by a space."""
        out = ""
        for seg in segments:
            if seg["type"] == "text":
                text = seg["data"]["text"]
                out += text[1:] if out.endswith(" ") and text.startswith(" ") else text
            elif seg["type"] == "at":
                qq = int(seg["data"]["qq"])
                out += "@" + self.names.get(qq, str(qq)) + " "
        return out

    async def _append(
        self, chat: str, sender: str, peer: int, text: str, file: dict[str, str] | None = None
    ) -> None:
        now = self.bot.clock.now() if self.bot else None
        line = ChatLine(
            next(self._ids), chat, sender, peer, text, now.strftime("%m-%d %H:%M") if now else "",
            file,
        )  # fmt: skip
        async with self._changed:
            self.lines.append(line)
            self._changed.notify_all()

    # ------------------------------------------------------------ pages

    def install(self, app: web.Application) -> None:
        app[SANDBOX_KEY] = self
        app.middlewares.append(self._guard)
        app.router.add_get("/", self.page)
        app.router.add_get("/sandbox/state", self.state)
        app.router.add_post("/sandbox/say", self.say)
        app.router.add_post("/sandbox/upload", self.upload)
        app.router.add_post("/sandbox/advance", self.advance)
        app.router.add_get("/sandbox/files/{file_id}", self.file)
        app.router.add_post("/sandbox/console", self.console_login)
        app.on_shutdown.append(self._release_waiters)

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """The sandbox speaks as a coordinator: only to pages served from itself.
        A foreign Host header (DNS rebinding) or a foreign Origin (a cross-site
        form or fetch) is refused."""
        if request.path == "/" or request.path.startswith("/sandbox/"):
            try:
                host = URL(f"http://{request.host}").host or ""
            except ValueError:
                host = ""
            if not host or host not in LOOPBACK_NAMES | {self.host, _local_address(request)}:
                log.warning("sandbox: request for host %r refused", request.host)
                raise self._error(web.HTTPForbidden, "bad_host", host=request.host)
            origin = request.headers.get("Origin")
            if origin is not None and origin.lower() != f"http://{request.host}".lower():
                log.warning("sandbox: request from origin %r refused", origin)
                raise self._error(web.HTTPForbidden, "bad_origin")
        return await handler(request)

    def _error(
        self, kind: type[web.HTTPException], problem: str, **context: Any
    ) -> web.HTTPException:
        text = self.bot.renderer.text("sandbox_error.txt.j2", problem=problem, **context)
        return kind(text=text, content_type="text/plain")

    async def _json(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise self._error(web.HTTPUnsupportedMediaType, "not_json")
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise self._error(web.HTTPBadRequest, "not_json") from None
        if not isinstance(data, dict):
            raise self._error(web.HTTPBadRequest, "not_json")
        return data

    async def _speaker(self, value: Any) -> int:
        """A person listed on the page, as a number or a string of digits."""
        await self._members()
        text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
        if not _ID.match(text) or int(text) not in self.names:
            raise self._error(web.HTTPBadRequest, "bad_speaker")
        return int(text)

    def _chat(self, value: Any) -> str:
        if value not in ("group", "private"):
            raise self._error(web.HTTPBadRequest, "bad_chat")
        return value

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
        if all(p["id"] != VISITOR for p in people):  # after /绑定 the visitor is listed once
            people.append({"id": VISITOR, "name": "访客", "role": "stranger", "unit": ""})
        self.names = {p["id"]: p["name"] for p in people}
        return people

    async def page(self, request: web.Request) -> web.Response:
        bot = request.app[BOT_KEY]
        from storage import demo

        coordinator = demo.COORDINATORS[min(demo.COORDINATORS)]
        html = bot.renderer.page("sandbox.html.j2", group_id=self.group_id, coordinator=coordinator)
        return web.Response(text=html, content_type="text/html")

    async def state(self, request: web.Request) -> web.Response:
        after = request.query.get("after", "0")
        if not _ID.match(after):
            raise self._error(web.HTTPBadRequest, "bad_number")
        after = int(after)
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
        data = await self._json(request)
        user_id = await self._speaker(data.get("user_id"))
        chat = self._chat(data.get("chat", "group"))
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise self._error(web.HTTPBadRequest, "empty")
        await self._speak(request, chat, user_id, text, [Segment("text", {"text": text})])
        return web.json_response({"ok": True})

    async def _speak(
        self, request: web.Request, chat: str, user_id: int, shown: str, segments: list, **fields
    ) -> None:
        """Show what a person said on the page and hand it to the bot as an event."""
        await self._members()
        name = self.names.get(user_id, str(user_id))
        peer = self.group_id if chat == "group" else user_id
        await self._append(chat, name, peer, shown, fields.pop("shown_file", None))
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
        if (
            request.headers.get(UPLOAD_HEADER) != "1"
            or request.content_type != "multipart/form-data"
        ):
            raise self._error(web.HTTPForbidden, "bad_upload")
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField) or not upload.filename:
            raise self._error(web.HTTPBadRequest, "bad_upload")
        user_id = await self._speaker(form.get("user_id"))
        chat = self._chat(form.get("chat", "group"))
        name = unquote(upload.filename)  # aiohttp's client percent-encodes non-ASCII names
        file_id = self._keep(name, upload.file.read())
        shown = self.bot.renderer.text("sandbox_file.txt.j2", name=name)
        size = len(self.files[file_id][1])
        await self._speak(
            request, chat, user_id, shown, [],
            post_type="notice",
            notice_type="group_upload" if chat == "group" else "offline_file",
            file=FileRef(file_id=file_id, name=name, size=size),
            key=f"file:{self.bot_id}:{self.group_id if chat == 'group' else user_id}:{file_id}",
            shown_file={"id": file_id, "name": name},
        )  # fmt: skip
        return web.json_response({"ok": True})

    async def advance(self, request: web.Request) -> web.Response:
        """Fast-forward the sandbox clock (by minutes, or to the next scheduled job)
        and run what became due, as if that time had passed."""
        bot = request.app[BOT_KEY]
        data = await self._json(request)
        if data.get("to_next") is True:
            upcoming = sorted(when for _, when in bot.scheduler.upcoming())
            if not upcoming:
                raise self._error(web.HTTPConflict, "no_job")
            delta = max(upcoming[0] - bot.clock.now(), timedelta())
        else:
            minutes = data.get("minutes")
            if (
                not isinstance(minutes, int)
                or isinstance(minutes, bool)
                or not 0 < minutes <= 60 * 24 * 31
            ):
                raise self._error(web.HTTPBadRequest, "bad_minutes")
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

    async def console_login(self, request: web.Request) -> web.Response:
        """The demo's way into the web console, without the chat: a session of the demo
        coordinator (the page then opens /console/). JSON only, like every sandbox post."""
        from storage import demo

        await self._json(request)
        async with self.bot.db.reader() as s:
            member = await Repo(s).members.by_im(min(demo.COORDINATORS))
        console = request.app[CONSOLE_KEY]
        response = web.json_response({"ok": True, "url": "/console/"})
        console.set_cookie(response, await console.open_session(member))
        return response

    async def file(self, request: web.Request) -> web.Response:
        entry = self.files.get(request.match_info["file_id"])
        if entry is None:
            raise web.HTTPNotFound()
        name, data = entry
        return web.Response(
            body=data,
            content_type="application/octet-stream",
            headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
        )


def _local_address(request: web.Request) -> str:
    """The address the client connected to: with --public, the one a browser typed."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return sockname[0] if isinstance(sockname, tuple) else ""


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
    sandbox = Sandbox(demo.BOT_ID, demo.GROUP_ID, host)
    bot = BotApp(config, routers, clock=clock, transport=sandbox)
    bot.self_id = demo.BOT_ID
    sandbox.bot = bot
    app = make_web_app(bot, start_bot=False)
    sandbox.install(app)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        seeded = []

        async def prepare() -> None:  # after the migrations, before the routers' start-up hooks
            # A restarted demo resumes its clock where the stored rows are: the
            # fast-forwarded time of the last run, not the real (earlier) time.
            latest = await demo.latest_time(bot.db)
            if latest is not None and latest > bot.clock.now():
                bot.clock.set(latest)
            seeded.append(await demo.seed(bot.db, bot.clock.now()))

        await bot.start(prepare=prepare)
        if on_start:
            on_start(bot, seeded[0])
        yield
        await bot.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
