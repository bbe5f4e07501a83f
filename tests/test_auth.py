"""Who may post events and open a reverse WebSocket (README, "Deploying"):
HTTP POST authentication as the implementations send it, checked on headers
before the body is read."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from bot import server as server_module
from bot.onebot import sign, token_matches
from bot.server import READS_KEY, handle_post, handle_ws, make_web_app
from storage.models import Unit

from .conftest import SECRET, SELF_ID, fixture, start_harness, until


def signed(event: dict, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event, ensure_ascii=False).encode()
    return body, {"X-Self-ID": str(SELF_ID), "X-Signature": sign(secret, body)}


def add_unit(name: str) -> dict:
    event = fixture("group_message_array.json")
    event.update(user_id=10001, message_id=abs(hash(name)) % 10**6)
    event["message"] = [{"type": "text", "data": {"text": f"/添加单位 {name}"}}]
    return event


@pytest.fixture
async def both(tmp_path, fake_onebot):
    """secret and access_token both set."""
    h, server = await start_harness(tmp_path, fake_onebot, onebot__access_token="tok")
    yield h
    await h.close()
    await server.close()


async def test_with_a_secret_a_valid_signature_is_enough_and_a_sent_token_must_match(both):
    body, headers = signed(add_unit("签名即可镇"))  # go-cqhttp: a signature, no token
    assert await both.post_raw(body, headers) == 204
    body, headers = signed(add_unit("令牌错误镇"))
    assert await both.post_raw(body, headers | {"Authorization": "Bearer wrong"}) == 403
    assert await both.post_raw(body, headers | {"Authorization": "Token tok"}) == 204
    body, headers = signed(add_unit("令牌对签名错镇"))
    assert (
        await both.post_raw(body, {"X-Self-ID": str(SELF_ID), "Authorization": "Bearer tok"}) == 401
    )
    bad = headers | {"X-Signature": "sha1=" + "0" * 40, "Authorization": "Bearer tok"}
    assert await both.post_raw(body, bad) == 403
    await both.settle()
    async with both.bot.db.reader() as s:
        names = [u.name for u in (await s.execute(Unit.__table__.select())).all()]
    assert names == ["签名即可镇", "令牌错误镇"]


async def test_with_only_a_token_the_token_is_required(tmp_path, fake_onebot):
    h, server = await start_harness(
        tmp_path, fake_onebot, onebot__access_token="tok", onebot__secret=""
    )
    try:
        body, headers = signed(add_unit("只有令牌镇"))  # a signature means nothing here
        assert await h.post_raw(body, headers) == 401
        assert await h.post_raw(body, headers | {"Authorization": "Bearer tok1"}) == 403
        assert await h.post_raw(body, headers | {"Authorization": "Bearer tok"}) == 204
        # a token in another script than ASCII is simply wrong, not a server error
        assert await h.post_raw(body, headers, path="/onebot/v11/?access_token=令牌") == 403
    finally:
        await h.close()
        await server.close()


async def test_tokens_are_compared_in_constant_time(monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert token_matches("tok", "tok") and not token_matches("tok", "tox")
    assert not token_matches("tok", "令牌")
    assert compared == [(b"tok", b"tok"), (b"tok", b"tox"), (b"tok", "令牌".encode())]


def from_peer(app: web.Application, path: str, address: str, headers: dict) -> web.Request:
    """A request as aiohttp builds it for a peer at `address` (this machine has no
    second interface to connect from in every CI)."""
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (address, 40000) if name == "peername" else default
    )
    return make_mocked_request("POST", path, headers=headers, app=app, transport=transport)


async def test_with_neither_only_this_machine_may_post_or_connect(tmp_path, fake_onebot, caplog):
    h, server = await start_harness(
        tmp_path, fake_onebot, onebot__secret="", bot__listen="0.0.0.0:8080"
    )
    try:
        assert "accepted from this machine only" in caplog.text  # the start-up warning
        body = json.dumps(add_unit("本机上报镇")).encode()
        assert await h.post_raw(body, {"X-Self-ID": str(SELF_ID)}) == 204  # from 127.0.0.1
        app = make_web_app(h.bot, start_bot=False)
        for handler, path in ((handle_post, "/onebot/v11/"), (handle_ws, "/onebot/v11/ws")):
            request = from_peer(app, path, "192.0.2.7", {"X-Self-ID": str(SELF_ID)})
            with pytest.raises(web.HTTPForbidden):
                await handler(request)
        for local in ("127.0.0.2", "::1", "::ffff:127.0.0.1"):
            assert server_module.is_loopback(local)
        assert not server_module.is_loopback("192.0.2.7")
    finally:
        await h.close()
        await server.close()


async def test_no_warning_when_listening_on_loopback(tmp_path, fake_onebot, caplog):
    caplog.set_level(logging.WARNING, logger="bot.server")
    h, server = await start_harness(tmp_path, fake_onebot, onebot__secret="")
    try:
        assert "accepted from this machine only" not in caplog.text
    finally:
        await h.close()
        await server.close()


async def raw_request(h, head: bytes, body: bytes = b"", wait: float = 3.0) -> bytes:
    """Send `head` (and `body`) on a raw socket; what the server answers within `wait`."""
    host, port = h.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + body)
    await writer.drain()
    try:
        async with asyncio.timeout(wait):
            return await reader.read(200)
    except TimeoutError:
        return b""
    finally:
        writer.close()


def post_head(length: int, **headers: str) -> bytes:
    lines = [
        "POST /onebot/v11/ HTTP/1.1",
        "Host: 127.0.0.1",
        f"X-Self-ID: {SELF_ID}",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_headers_are_checked_before_the_body_is_read(group):
    # 4 MiB announced, not one byte sent: the refusal comes at once
    answer = await raw_request(group, post_head(4 * 1024 * 1024))
    assert answer.startswith(b"HTTP/1.1 401")
    # only a signature would vouch for it: 1 MiB at most (4 MiB with a matching token)
    answer = await raw_request(group, post_head(2 * 1024 * 1024, X_Signature="sha1=00"))
    assert answer.startswith(b"HTTP/1.1 413")


async def test_bodies_only_a_signature_vouches_for_are_read_a_few_at_a_time(
    tmp_path, fake_onebot, monkeypatch
):
    monkeypatch.setattr(server_module, "BODY_TIMEOUT", 2.0)
    h, server = await start_harness(tmp_path, fake_onebot, onebot__access_token="tok")
    reads = server.app[READS_KEY]
    host, port = h.base.removeprefix("http://").split(":")
    stalled = []
    try:
        # bogus signatures announcing 1 MiB and sending one byte: each holds a read slot
        for _ in range(server_module.UNAUTHENTICATED_READS):
            assert not reads.locked()
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(post_head(1024 * 1024, X_Signature="sha1=" + "0" * 40) + b"{")
            stalled.append((reader, writer))
        await until(reads.locked)  # the bound: no more unauthenticated bodies are read at once
        # a sender whose token matched is not kept waiting by them
        body, headers = signed(add_unit("令牌优先镇"))
        assert await h.post_raw(body, headers | {"Authorization": "Bearer tok"}) == 204
        # one vouched for by its signature alone waits for a slot, then goes through
        waiting = asyncio.create_task(h.post_raw(*signed(add_unit("签名排队镇"))))
        answers = [await reader.read(100) for reader, _ in stalled]  # the body timeout ends them
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
        assert await waiting == 204
        await h.settle()
        assert [t.split("：")[0] for t in h.replies()] == [" 已添加单位"] * 2
    finally:
        for _, writer in stalled:
            writer.close()
        await h.close()
        await server.close()
