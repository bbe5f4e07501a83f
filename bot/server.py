"""The aiohttp server: OneBot v11 HTTP POST and reverse WebSocket endpoints
on NoneBot's paths, plus the sandbox pages when the sandbox transport is used.

Auth is checked on the raw bytes before anything is parsed: a wrong or
missing token 401/403, a missing signature 401, a wrong one 403, no
X-Self-ID 400, bad JSON or a non-event 400. A POST is answered only after
the event's effects are committed (go-cqhttp's retries are deduplicated).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from aiohttp import WSMsgType, web

from storage.db import DatabaseUnavailable

from .app import BotApp
from .onebot import EventError, parse_event, signature_ok, token_from

log = logging.getLogger(__name__)

BOT_KEY = web.AppKey("bot", BotApp)
MAX_BODY = 4 * 1024 * 1024

POST_PATHS = ("/onebot/v11/", "/onebot/v11", "/onebot/v11/http", "/onebot/v11/http/")
WS_PATHS = ("/onebot/v11/ws", "/onebot/v11/ws/")


def make_web_app(bot: BotApp, *, start_bot: bool = True) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[BOT_KEY] = bot
    for path in POST_PATHS:
        app.router.add_post(path, handle_post)
    for path in WS_PATHS:
        app.router.add_get(path, handle_ws)
    if start_bot:
        app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    bot = app[BOT_KEY]
    await bot.start()
    yield
    await bot.stop()


def _check_token(request: web.Request, token: str) -> None:
    if not token:
        return
    given = token_from(request.headers, request.query)
    if given is None:
        raise web.HTTPUnauthorized(text="access token required")
    if given != token:
        raise web.HTTPForbidden(text="wrong access token")


async def handle_post(request: web.Request) -> web.Response:
    bot = request.app[BOT_KEY]
    cfg = bot.config.onebot
    body = await request.read()
    _check_token(request, cfg.access_token)
    if cfg.secret:
        signature = request.headers.get("X-Signature")
        if not signature:
            log.warning("POST without X-Signature from %s", request.remote)
            raise web.HTTPUnauthorized(text="signature required")
        if not signature_ok(cfg.secret, body, signature):
            log.warning("POST with wrong X-Signature from %s", request.remote)
            raise web.HTTPForbidden(text="wrong signature")
    self_id = request.headers.get("X-Self-ID")
    if not self_id:
        raise web.HTTPBadRequest(text="X-Self-ID required")
    try:
        event = parse_event(json.loads(body), self_id)
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("POST with malformed JSON (%d bytes)", len(body))
        raise web.HTTPBadRequest(text="malformed JSON") from None
    except (EventError, RecursionError) as exc:
        log.warning("POST with invalid event: %s", exc)
        raise web.HTTPBadRequest(text=f"invalid event: {exc}") from None
    try:
        await bot.dispatcher.handle(event)
    except DatabaseUnavailable as exc:  # nothing committed: the implementation sends it again
        log.warning("event %s refused with 503: %s", event.key, exc)
        raise web.HTTPServiceUnavailable(text="database unavailable") from None
    return web.Response(status=204)


async def handle_ws(request: web.Request) -> web.StreamResponse:
    bot = request.app[BOT_KEY]
    _check_token(request, bot.config.onebot.access_token)
    raw_id = request.headers.get("X-Self-ID", "")
    if not raw_id.isdigit():
        raise web.HTTPBadRequest(text="X-Self-ID required")
    self_id = int(raw_id)
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_BODY)
    await ws.prepare(request)
    peer = await bot.ws_hub.attach(self_id, ws)
    log.info("reverse WebSocket connected: self_id=%s", self_id)
    if bot.transport is bot.ws_hub:
        await bot.sender.retry_now()
    tasks: set[asyncio.Task] = set()
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                frame = json.loads(msg.data)
            except json.JSONDecodeError:
                log.warning("reverse WS: malformed JSON frame ignored")
                continue
            if not isinstance(frame, dict):
                continue
            if "post_type" in frame:
                try:
                    event = parse_event(frame, raw_id)
                except (EventError, RecursionError) as exc:
                    log.warning("reverse WS: invalid event ignored: %s", exc)
                    continue
                # Handle concurrently so API answers keep flowing; per-(chat, user)
                # locks in the dispatcher keep one person's events in order.
                task = asyncio.create_task(_handle_logged(bot, event))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif "echo" in frame:
                bot.ws_hub.resolve(peer, frame)
    finally:
        bot.ws_hub.detach(self_id, peer)
        log.info("reverse WebSocket closed: self_id=%s", self_id)
        if tasks:
            await asyncio.wait(tasks, timeout=10)
    return ws


async def _handle_logged(bot: BotApp, event) -> None:
    try:
        await bot.dispatcher.handle(event)
    except Exception:
        log.exception("event %s failed", event.key)
