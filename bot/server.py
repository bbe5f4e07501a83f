"""The aiohttp server: OneBot v11 HTTP POST and reverse WebSocket endpoints
on NoneBot's paths, the web console (/console/, bot/console.py), plus the
sandbox pages when the sandbox transport is used, and `/metrics` (counters in the
Prometheus text format, for this machine only).

Who may post events (README, "Deploying"):
* `secret` set: the body's X-Signature must match (missing 401, wrong 403);
  a valid signature is enough (go-cqhttp sends no token with a POST), and a
  token that is sent must match (403).
* only `access_token` set: the token is required (missing 401, wrong 403).
* neither: only peers on this machine (loopback); others 403.
Reverse WebSocket: the token when one is set, else loopback peers only.

Everything a header can tell is checked before the body is read; a body
whose only credential is its signature is read under a bound (how many at
once, how long, how large). X-Self-ID missing or not digits 400, bad JSON or a
non-event 400. A POST is answered only after the event's effects are
committed (go-cqhttp's retries are deduplicated).

Slow clients: a connection must send its request headers within
HEADER_TIMEOUT (aiohttp's keep-alive timer, armed from the moment the
connection opens, also covers a first request that never completes) and a
POST body within BODY_TIMEOUT; `Listener` caps open connections, and the
same log line repeated (an EMFILE storm, a flood of bad signatures) is
written once a minute with a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from storage.db import DatabaseUnavailable

from .app import BotApp
from .console import Console
from .onebot import (
    Event,
    EventError,
    decode,
    parse_event,
    parse_id,
    signature_ok,
    token_from,
    token_matches,
)
from .transport import MAX_FRAME, WsPeer, read_frames

log = logging.getLogger(__name__)

BOT_KEY = web.AppKey("bot", BotApp)
READS_KEY = web.AppKey("unauthenticated_reads", asyncio.Semaphore)
MAX_BODY = 4 * 1024 * 1024
# A body read before anything vouches for it (only its signature can): an event with a
# message at the 20,000-character limit is about 250 KB even with every character escaped.
MAX_UNVOUCHED_BODY = 1024 * 1024
HEADER_TIMEOUT = 15.0  # seconds to send a request's headers; also how long an idle connection stays
BODY_TIMEOUT = 15.0  # seconds to send a POST body (including the wait for a read slot)
LINGERING_TIME = 2.0  # seconds an unread body is drained after a refusal, then the socket closes
UNAUTHENTICATED_READS = 8  # bodies read at once whose only credential is their signature
MAX_CONNECTIONS = 256  # open connections (fewer when the file-descriptor limit is low)
REPEAT_INTERVAL = 60.0  # seconds during which the same log line is written once

POST_PATHS = ("/onebot/v11/", "/onebot/v11", "/onebot/v11/http", "/onebot/v11/http/")
WS_PATHS = ("/onebot/v11/ws", "/onebot/v11/ws/")
# Loggers whose lines an attacker or a storm can repeat endlessly.
NOISY_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.web", __name__, "bot.transport")


def make_web_app(bot: BotApp, *, start_bot: bool = True) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY,
        handler_args={
            # The keep-alive timer runs from the moment a connection opens until its
            # request headers are complete, and between requests: the header timeout.
            "keepalive_timeout": HEADER_TIMEOUT,
            # After a refusal, the rest of an unread body is drained this long at most.
            "lingering_time": LINGERING_TIME,
        },
    )
    app[BOT_KEY] = bot
    app[READS_KEY] = asyncio.Semaphore(UNAUTHENTICATED_READS)
    for path in POST_PATHS:
        app.router.add_post(path, handle_post)
    for path in WS_PATHS:
        app.router.add_get(path, handle_ws)
    app.router.add_get("/metrics", handle_metrics)
    Console(bot).install(app)
    quiet_repeats()
    if start_bot:
        app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    bot = app[BOT_KEY]
    cfg = bot.config.onebot
    host, _ = bot.config.host_port
    if not cfg.access_token and not is_loopback(host):
        log.warning(
            "onebot.access_token is empty and listen = %s is not a loopback address: "
            "%s accepted from this machine only (see the README's table)",
            bot.config.bot.listen,
            "reverse WebSocket connections are" if cfg.secret else "OneBot events are",
        )
    await bot.start()
    yield
    await bot.stop()


# ---------------------------------------------------------------- auth


def is_loopback(host: str | None) -> bool:
    """True for this machine's own addresses (127.0.0.0/8, ::1, localhost)."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _refuse(exc: type[web.HTTPException], text: str, request: web.Request) -> web.HTTPException:
    log.warning("OneBot request refused (%s) from %s", text, request.remote)
    return exc(text=text)


def _check_token(request: web.Request, token: str) -> bool:
    """The sent token against the configured one. True when it matched, False
    when none is configured or none was sent; a wrong one is refused."""
    given = token_from(request.headers, request.query)
    if not token or given is None:
        return False
    if not token_matches(token, given):
        raise _refuse(web.HTTPForbidden, "wrong access token", request)
    return True


def _authenticate_ws(request: web.Request, token: str) -> None:
    if token:
        if token_from(request.headers, request.query) is None:
            raise _refuse(web.HTTPUnauthorized, "access token required", request)
        _check_token(request, token)
    elif not is_loopback(request.remote):
        raise _refuse(web.HTTPForbidden, "no access_token set: loopback peers only", request)


def _authenticate_post(request: web.Request, secret: str, token: str) -> bool:
    """The header checks of the table above. True: the peer is already known
    (its token matched, or nothing is configured and it is local); False: only
    the body's signature can tell, so the body is read under the bound."""
    token_ok = _check_token(request, token)
    if secret:
        if not request.headers.get("X-Signature"):
            raise _refuse(web.HTTPUnauthorized, "signature required", request)
        return token_ok
    if token:
        if not token_ok:
            raise _refuse(web.HTTPUnauthorized, "access token required", request)
        return True
    if not is_loopback(request.remote):
        raise _refuse(web.HTTPForbidden, "no secret or access_token set: loopback only", request)
    return True


async def _read_body(request: web.Request, known: bool) -> bytes:
    limit = MAX_BODY if known else MAX_UNVOUCHED_BODY
    if request.content_length is not None and request.content_length > limit:
        log.warning("OneBot request refused (body too large) from %s", request.remote)
        raise web.HTTPRequestEntityTooLarge(limit, request.content_length)
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            if known:
                return await _read_chunks(request, limit)
            async with request.app[READS_KEY]:
                return await _read_chunks(request, limit)
    except TimeoutError:
        raise _refuse(web.HTTPRequestTimeout, "body not sent in time", request) from None


async def _read_chunks(request: web.Request, limit: int) -> bytes:
    """The body, 64 KiB at a time. aiohttp's request.read() first widens its
    buffer to the whole allowed size, which made unauthenticated posts cost
    hundreds of megabytes."""
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(limit, size)
    return b"".join(chunks)  # one allocation of the final size, no regrowth


# ---------------------------------------------------------------- endpoints


async def handle_post(request: web.Request) -> web.Response:
    bot = request.app[BOT_KEY]
    cfg = bot.config.onebot
    self_id = request.headers.get("X-Self-ID", "")
    if parse_id(self_id) is None:
        raise web.HTTPBadRequest(text="X-Self-ID required")
    known = _authenticate_post(request, cfg.secret, cfg.access_token)
    event = _event_from(await _read_body(request, known), request, cfg.secret)
    try:
        await bot.dispatcher.handle(event)
    except DatabaseUnavailable as exc:  # nothing committed: the implementation sends it again
        log.warning("event %s refused with 503: %s", event.key, exc)
        raise web.HTTPServiceUnavailable(text="database unavailable") from None
    return web.Response(status=204)


def _event_from(body: bytes, request: web.Request, secret: str) -> Event:
    """The signature checked, the event parsed. A refusal's traceback lives on
    while aiohttp drains the connection: the body is let go before raising."""
    problem = None
    if secret and not signature_ok(secret, body, request.headers.get("X-Signature")):
        problem = _refuse(web.HTTPForbidden, "wrong signature", request)
    else:
        try:
            return parse_event(decode(body), request.headers["X-Self-ID"])
        except EventError as exc:
            log.warning("POST with an invalid event (%d bytes): %s", len(body), exc)
            problem = web.HTTPBadRequest(text=f"invalid event: {exc}")
    del body
    raise problem


async def handle_ws(request: web.Request) -> web.StreamResponse:
    bot = request.app[BOT_KEY]
    _authenticate_ws(request, bot.config.onebot.access_token)
    self_id = parse_id(request.headers.get("X-Self-ID", ""))
    if self_id is None:
        raise web.HTTPBadRequest(text="X-Self-ID required")
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_FRAME)
    await ws.prepare(request)
    peer = WsPeer(ws, "reverse")
    await bot.onebot_api.attach(self_id, peer)
    log.info("reverse WebSocket connected: self_id=%s", self_id)
    await bot.sender.retry_now()
    try:
        await read_frames(peer, str(self_id), bot.receive)
    finally:
        bot.onebot_api.detach(self_id, peer)
        log.info("reverse WebSocket closed: self_id=%s", self_id)
    return ws


async def handle_metrics(request: web.Request) -> web.Response:
    """Counters in the Prometheus text format, for this machine only (a monitoring agent,
    the ingest bench); anyone else 403."""
    if not is_loopback(request.remote):
        raise _refuse(web.HTTPForbidden, "metrics: loopback only", request)
    bot = request.app[BOT_KEY]
    counters = bot.db.counters
    lines = []
    for name, help_text, value in (
        ("xinxibot_events_total", "Events taken from the OneBot implementation.",
         bot.dispatcher.received),
        ("xinxibot_sql_statements_total", "SQL statements executed.", counters.statements),
        ("xinxibot_sql_commits_total", "Database transactions committed.", counters.commits),
    ):  # fmt: skip
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


# ---------------------------------------------------------------- slow clients, log storms


class RepeatFilter(logging.Filter):
    """Writes a log line once per `interval` seconds; its repeats in between are
    counted, and the count goes with the next one written. Lines are the same
    when their logger, format string and exception type are."""

    MAX_KEYS = 1000

    def __init__(self, interval: float = REPEAT_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self.seen: dict[tuple, list] = {}  # key -> [last written (monotonic), repeats since]

    def filter(self, record: logging.LogRecord) -> bool:
        exc_type = record.exc_info[0] if record.exc_info else None
        key = (record.name, str(record.msg), exc_type)
        now = time.monotonic()
        entry = self.seen.get(key)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:
            record.msg = f"{record.msg} [{entry[1]} more like this in the last {self.interval:g} s]"
        if len(self.seen) >= self.MAX_KEYS:
            self.seen.clear()
        self.seen[key] = [now, 0]
        return True


REPEATS = RepeatFilter()  # one for the process, as logging is


def quiet_repeats() -> None:
    """Put the repeat filter on the noisy loggers (once; logging is process-wide)."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if REPEATS not in logger.filters:
            logger.addFilter(REPEATS)


def connection_limit() -> int:
    """MAX_CONNECTIONS, or half the process's file-descriptor limit if that is lower,
    so a flood of connections always leaves descriptors for the bot's own work
    (API calls, downloads, the database)."""
    try:
        import resource
    except ImportError:  # not on Unix
        return MAX_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else min(MAX_CONNECTIONS, soft // 2)


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # the descriptor is freed at once


class Listener:
    """The web app on host:port with a cap on open connections.

    aiohttp's own sites offer no hook between accept and the request handler,
    so this listens itself with aiohttp's public pieces: an AppRunner for the
    app (start-up, graceful shutdown) and its Server as the protocol factory,
    wrapped so that beyond `limit` open connections a new one is closed at once.
    """

    def __init__(self, app: web.Application, sock: socket.socket, limit: int = 0) -> None:
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10)
        self.sock = sock
        self.limit = limit or connection_limit()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    async def start(self) -> None:
        """Start the app (the bot's start-up), then accept on the bound socket."""
        await self.runner.setup()
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol, sock=self.sock
        )

    def _protocol(self) -> Any:
        server = self.runner.server
        if len(server.connections) >= self.limit:
            log.warning("%d connections open: a new one was closed", self.limit)
            return _Refused()
        return server()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()  # no new connections; the runner ends the open ones
        await self.runner.cleanup()
        if self._server is not None:
            await self._server.wait_closed()


def bind(host: str, port: int) -> socket.socket:
    """The server socket, bound before anything says the bot has started (so a busy
    port is one clear error, not a start-up followed by a traceback)."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


def run(app: web.Application, sock: socket.socket, on_ready: Callable[[], None]) -> None:
    """Serve on `sock` until SIGINT or SIGTERM, then shut down gracefully (`xinxibot run`);
    `on_ready` is called once the bot has started and connections are accepted."""

    async def serve() -> None:
        listener = Listener(app, sock)
        await listener.start()
        on_ready()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # Windows has no signal handlers
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await listener.stop()

    asyncio.run(serve())
