"""Ways to call the IM side: OneBot over WebSockets (reverse or forward) and the
HTTP API, behind one object that picks the channel; the sandbox is another.

Every call answers an ApiResult whose status is one of
  ok      - the implementation said status "ok"
  async   - it accepted the call to run later (OneBot `status: async`): delivered
  failed  - it answered, and not "ok" (NapCat: status failed, retcode 200 or 1200)
  down    - nothing reached it (connection refused, no socket): safe to retry
  unknown - the request may have gone through (timeout): not blindly re-sent
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from aiohttp import WSMsgType

from .onebot import Event, EventError, decode, parse_event, parse_id

log = logging.getLogger(__name__)

MAX_FRAME = 4 * 1024 * 1024  # the largest WebSocket frame read from an implementation
HEARTBEAT = 30.0  # seconds between pings, so a dead peer is noticed
CONNECT_TIMEOUT = 10.0


@dataclass
class ApiResult:
    status: str
    data: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def result_from_envelope(envelope: Any) -> ApiResult:
    if isinstance(envelope, dict) and envelope.get("status") in ("ok", "async"):
        return ApiResult(envelope["status"], envelope.get("data"))
    if isinstance(envelope, dict):
        return ApiResult(
            "failed",
            envelope.get("data"),
            f"{envelope.get('retcode')} {envelope.get('msg') or envelope.get('message') or ''}".strip(),
        )
    return ApiResult("failed", None, "malformed response")


class Transport(Protocol):
    async def call(self, self_id: int | None, action: str, params: dict) -> ApiResult: ...


class HttpApi:
    """OneBot HTTP API at `api_url` (POST /<action> with JSON params)."""

    def __init__(self, api_url: str, access_token: str, timeout: float) -> None:
        self.api_url = api_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)
        return self._session

    async def call(self, self_id: int | None, action: str, params: dict) -> ApiResult:
        try:
            async with self._client().post(f"{self.api_url}/{action}", json=params) as resp:
                if resp.status != 200:
                    return ApiResult("failed", None, f"HTTP {resp.status}")
                return result_from_envelope(await resp.json(content_type=None))
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
            return ApiResult("down", None, str(exc))
        except TimeoutError:
            return ApiResult("unknown", None, "timeout")
        except (aiohttp.ClientError, json.JSONDecodeError, ValueError) as exc:
            # The connection broke after the request was written: it may have gone through.
            return ApiResult("unknown", None, repr(exc))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


# ---------------------------------------------------------------- WebSockets


@dataclass(eq=False)
class WsPeer:
    """One open WebSocket to an implementation, whichever side connected.

    `ws` is aiohttp's server or client WebSocket; `via` says which way
    ("reverse", or the forward URL). API calls are matched by `echo`.
    """

    ws: Any
    via: str
    pending: dict[str, asyncio.Future] = field(default_factory=dict)

    async def call(self, echo: str, action: str, params: dict) -> ApiResult:
        """Send the call and wait for its answer (the caller bounds the wait: a
        timeout means "unknown", the frame may have gone out)."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending[echo] = fut
        try:
            try:
                await self.ws.send_json({"action": action, "params": params, "echo": echo})
            except (ConnectionError, RuntimeError) as exc:  # closed before the frame was written
                return ApiResult("down", None, repr(exc))
            return await fut
        finally:
            self.pending.pop(echo, None)

    def resolve(self, frame: dict) -> bool:
        """Settle the call `frame` answers; False for an echo nobody waits for."""
        fut = self.pending.pop(str(frame.get("echo")), None)
        if fut is None or fut.done():
            return False
        fut.set_result(result_from_envelope(frame))
        return True

    def closed(self) -> None:
        """The socket is gone: calls still waiting may have been carried out."""
        for fut in self.pending.values():
            if not fut.done():
                fut.set_result(ApiResult("unknown", None, "connection closed"))


async def read_frames(
    peer: WsPeer, self_id: str | None, on_event: Callable[[Event], Awaitable[None]]
) -> None:
    """Read a WebSocket until it closes: events go to `on_event`, API answers to
    their callers. A bad frame (malformed or too deeply nested JSON, an invalid
    event) is logged and skipped; the socket stays open."""
    async for msg in peer.ws:
        if msg.type != WSMsgType.TEXT:
            continue
        try:
            frame = decode(msg.data)
            if isinstance(frame, dict) and "post_type" in frame:
                await on_event(parse_event(frame, self_id))
                continue
        except EventError as exc:
            log.warning("WebSocket %s: frame ignored: %s", peer.via, exc)
            continue
        if isinstance(frame, dict) and "echo" in frame and not peer.resolve(frame):
            log.info("WebSocket %s: answer to an unknown echo ignored", peer.via)


class OneBotApi:
    """The one object that carries API calls: the account's open WebSocket
    (reverse or forward, the newest) when there is one, else the HTTP API.

    Open WebSockets are kept by account (self_id) and way. A new connection
    of an account over the same way replaces and closes the old one; a
    socket's cleanup removes its entry only if it is still the same socket.
    """

    def __init__(self, timeout: float, http: HttpApi | None = None) -> None:
        self.timeout = timeout
        self.http = http
        self.peers: dict[tuple[int, str], WsPeer] = {}  # in the order they connected
        self._echo = itertools.count(1)

    async def attach(self, self_id: int, peer: WsPeer) -> None:
        old = self.peers.pop((self_id, peer.via), None)
        self.peers[(self_id, peer.via)] = peer
        if old is not None:
            await old.ws.close()

    def detach(self, self_id: int, peer: WsPeer) -> None:
        if self.peers.get((self_id, peer.via)) is peer:
            del self.peers[(self_id, peer.via)]
        peer.closed()

    def peer_for(self, self_id: int | None) -> WsPeer | None:
        """The newest open WebSocket of the account (of any account when the
        message was queued before the bot knew its own)."""
        for (account, _), peer in reversed(self.peers.items()):
            if (self_id is None or account == self_id) and not peer.ws.closed:
                return peer
        return None

    async def call(self, self_id: int | None, action: str, params: dict) -> ApiResult:
        peer = self.peer_for(self_id)
        if peer is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    return await peer.call(str(next(self._echo)), action, params)
            except TimeoutError:
                return ApiResult("unknown", None, "timeout")
        if self.http is not None:
            return await self.http.call(self_id, action, params)
        return ApiResult("down", None, "no WebSocket of this account is open and no api_url")

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()


class ForwardWs:
    """Forward WebSocket (`onebot.ws_url`): the bot connects to the
    implementation's WebSocket server, receives events and calls the API on
    the same socket. A lost or refused connection is retried with capped
    exponential backoff and jitter; `on_connect` runs each time the account is
    known on a new socket (the outbox then ends its backoff)."""

    def __init__(
        self,
        url: str,
        access_token: str,
        api: OneBotApi,
        on_event: Callable[[Event], Awaitable[None]],
        on_connect: Callable[[], Awaitable[None]],
        first_delay: float = 0.5,
        max_delay: float = 30.0,
    ) -> None:
        self.url, self.api = url, api
        self.on_event, self.on_connect = on_event, on_connect
        self.headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        self.first_delay, self.max_delay = first_delay, max_delay
        self._task: asyncio.Task | None = None
        self._random = random.Random()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"forward-ws {self.url}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def delay(self, failures: int) -> float:
        """Seconds before the next attempt: doubling per failure up to the cap,
        each drawn from its upper half so many bots do not retry in step."""
        ceiling = min(self.max_delay, self.first_delay * 2 ** min(failures, 30))
        return self._random.uniform(ceiling / 2, ceiling)

    async def _run(self) -> None:
        failures = 0
        # connect and the handshake answer are bounded; an open socket may then idle (heartbeat)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=CONNECT_TIMEOUT, sock_read=CONNECT_TIMEOUT
        )
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                failures = 0 if await self._connect_once(session, failures) else failures + 1
                await asyncio.sleep(self.delay(failures))

    async def _connect_once(self, session: aiohttp.ClientSession, failures: int) -> bool:
        """One connection, read until it closes; False when it could not be opened."""
        try:
            ws = await session.ws_connect(
                self.url, headers=self.headers, heartbeat=HEARTBEAT, max_msg_size=MAX_FRAME
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # Said once per outage, not on every retry.
            (log.debug if failures else log.warning)(
                "forward WebSocket %s: cannot connect (%s); retrying with backoff", self.url, exc
            )
            return False
        log.info("forward WebSocket connected: %s", self.url)
        peer = WsPeer(ws, self.url)
        accounts: list[int] = []

        async def known(self_id: int) -> None:
            if not accounts:
                accounts.append(self_id)
                await self.api.attach(self_id, peer)
                await self.on_connect()

        async def on_event(event: Event) -> None:
            await known(event.self_id)
            await self.on_event(event)

        async def ask_account() -> None:
            # Events carry self_id; asking covers an implementation that sends none at first.
            try:
                async with asyncio.timeout(self.api.timeout):
                    result = await peer.call("login", "get_login_info", {})
            except TimeoutError:
                return
            data = result.data if result.ok and isinstance(result.data, dict) else {}
            self_id = parse_id(data.get("user_id"))
            if self_id is not None:
                await known(self_id)

        asker = asyncio.create_task(ask_account())
        try:
            await read_frames(peer, None, on_event)
        finally:
            asker.cancel()
            if accounts:
                self.api.detach(accounts[0], peer)
            else:
                peer.closed()
            await ws.close()
            log.info("forward WebSocket closed: %s", self.url)
        return True
