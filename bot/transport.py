"""Ways to call the IM side: OneBot HTTP API, reverse WebSocket, the sandbox.

Every call answers an ApiResult whose status is one of
  ok      - the implementation said status "ok"
  async   - it accepted the call to run later (OneBot `status: async`): delivered
  failed  - it answered, and not "ok" (NapCat: status failed, retcode 200)
  down    - nothing reached it (connection refused, no socket): safe to retry
  unknown - the request may have gone through (timeout): not blindly re-sent
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)


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
            f"{envelope.get('retcode')} {envelope.get('msg', '')}".strip(),
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
                if resp.status >= 500:
                    return ApiResult("failed", None, f"HTTP {resp.status}")
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


@dataclass
class _Peer:
    ws: web.WebSocketResponse
    pending: dict[str, asyncio.Future] = field(default_factory=dict)


class ReverseWsHub:
    """Reverse WebSocket connections by self_id; API calls matched by echo.

    A new connection for a self_id replaces and closes the old one; the old
    socket's cleanup removes the entry only if it is still the same socket.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.peers: dict[int, _Peer] = {}
        self._echo = itertools.count(1)

    async def attach(self, self_id: int, ws: web.WebSocketResponse) -> _Peer:
        old = self.peers.get(self_id)
        peer = _Peer(ws)
        self.peers[self_id] = peer
        if old is not None:
            await old.ws.close()
        return peer

    def detach(self, self_id: int, peer: _Peer) -> None:
        if self.peers.get(self_id) is peer:
            del self.peers[self_id]
        for fut in peer.pending.values():
            if not fut.done():
                fut.set_result(ApiResult("unknown", None, "connection closed"))

    def resolve(self, peer: _Peer, frame: dict) -> None:
        fut = peer.pending.pop(str(frame.get("echo")), None)
        if fut is not None and not fut.done():
            fut.set_result(result_from_envelope(frame))

    async def call(self, self_id: int | None, action: str, params: dict) -> ApiResult:
        peer = self.peers.get(self_id) if self_id is not None else None
        if peer is None and self.peers:
            peer = next(iter(self.peers.values()))
        if peer is None or peer.ws.closed:
            return ApiResult("down", None, "no reverse WebSocket connected")
        echo = str(next(self._echo))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        peer.pending[echo] = fut
        try:
            await peer.ws.send_json({"action": action, "params": params, "echo": echo})
        except (ConnectionError, RuntimeError) as exc:
            peer.pending.pop(echo, None)
            return ApiResult("down", None, repr(exc))
        try:
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            return ApiResult("unknown", None, "timeout")
        finally:
            peer.pending.pop(echo, None)
