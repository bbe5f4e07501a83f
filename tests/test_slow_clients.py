"""Slow and stalled clients: header and body read timeouts, a cap on open
connections that keeps replies flowing, and the same log line written once."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket

import aiohttp
import pytest

from bot import server as server_module
from bot.app import BotApp
from bot.clock import Clock
from bot.server import Listener, RepeatFilter, bind, make_web_app
from handlers import ROUTERS

from .conftest import START, Harness, make_config, populate, start_harness, until
from .test_auth import post_head, signed


async def open_socket(base: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def closed_by_server(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sent before closing, or None if it kept the socket open."""
    try:
        async with asyncio.timeout(seconds):
            return await reader.read()
    except TimeoutError:
        return None
    except ConnectionResetError:
        return b""


async def test_a_client_that_never_finishes_its_headers_is_disconnected(
    tmp_path, fake_onebot, monkeypatch
):
    monkeypatch.setattr(server_module, "HEADER_TIMEOUT", 0.5)
    h, server = await start_harness(tmp_path, fake_onebot)
    try:
        idle_reader, _ = await open_socket(h.base)  # connects, sends nothing
        slow_reader, slow = await open_socket(h.base)
        slow.write(b"POST /onebot/v11/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Self")
        assert await closed_by_server(idle_reader, 5) == b""
        assert await closed_by_server(slow_reader, 5) == b""
    finally:
        await h.close()
        await server.close()


async def test_a_body_that_never_comes_gets_408(tmp_path, fake_onebot, monkeypatch):
    monkeypatch.setattr(server_module, "BODY_TIMEOUT", 0.5)
    h, server = await start_harness(
        tmp_path, fake_onebot, onebot__access_token="tok", onebot__secret=""
    )
    try:
        reader, writer = await open_socket(h.base)
        writer.write(post_head(1000, Authorization="Bearer tok") + b'{"post_type"')
        async with asyncio.timeout(5):
            assert (await reader.read(200)).startswith(b"HTTP/1.1 408")
        assert await closed_by_server(reader, 5) == b""  # and the socket is let go
    finally:
        await h.close()
        await server.close()


async def test_past_the_connection_cap_new_connections_are_closed_and_replies_flow(
    tmp_path, fake_onebot, monkeypatch
):
    monkeypatch.setattr(server_module, "HEADER_TIMEOUT", 1.0)
    config = make_config(tmp_path, onebot__api_url=fake_onebot.url)
    bot = BotApp(config, ROUTERS, clock=Clock(config.tz, frozen_at=START))
    listener = Listener(make_web_app(bot), bind("127.0.0.1", 0), limit=4)
    await listener.start()
    h = Harness(bot, aiohttp.ClientSession(), f"http://127.0.0.1:{listener.port}", fake_onebot)
    stalled = []
    try:
        await populate(h)
        fake_onebot.http_status = 500  # the next receipt waits in the outbox
        await h.say(10020, "/报送 满员时的回执\n正文")
        await h.client.close()  # its keep-alive connection would count towards the cap
        for _ in range(4):
            stalled.append(await open_socket(h.base))
        await until(lambda: len(listener.runner.server.connections) == 4)
        reader, _ = await open_socket(h.base)
        assert await closed_by_server(reader, 2) == b""  # closed at once, not queued
        fake_onebot.http_status = None
        await h.advance(minutes=1)  # the bot's own connections are not capped
        assert any("满员时的回执" in t for t in fake_onebot.texts())
        for reader, _ in stalled:  # the header timeout frees the places
            assert await closed_by_server(reader, 5) == b""
        h.client = aiohttp.ClientSession()
        body, headers = signed(h.message_event(10020, "/我的稿件"))
        assert await h.post_raw(body, headers) == 204
    finally:
        for _, writer in stalled:
            writer.close()
        await h.close()
        await listener.stop()


def test_the_cap_leaves_half_the_file_descriptors_to_the_bot(monkeypatch):
    resource = pytest.importorskip("resource")
    monkeypatch.setattr(resource, "getrlimit", lambda _: (200, 4096))
    assert server_module.connection_limit() == 100
    monkeypatch.setattr(resource, "getrlimit", lambda _: (65536, 65536))
    assert server_module.connection_limit() == server_module.MAX_CONNECTIONS


async def test_the_same_error_is_logged_once_with_a_count(group, caplog):
    caplog.set_level(logging.INFO)
    server_module.REPEATS.seen.clear()  # earlier tests in this process logged the same lines
    body, headers = signed(group.message_event(10020, "/我的稿件"))
    for _ in range(50):
        assert await group.post_raw(body, headers | {"X-Signature": "sha1=" + "0" * 40}) == 403
    refusals = [r for r in caplog.records if "refused (wrong signature)" in r.getMessage()]
    assert len(refusals) == 1
    # EMFILE from accept() as asyncio reports it, a thousand times
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        for _ in range(1000):
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(errno.EMFILE, "Too many open files"),
                    "socket": sock,
                }
            )
    assert sum("out of system resource" in r.getMessage() for r in caplog.records) == 1


async def test_a_repeated_line_carries_the_count_of_those_not_written(caplog):
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("xinxibot.test.repeats")
    repeat = RepeatFilter(interval=0.05)
    logger.addFilter(repeat)
    try:
        for _ in range(30):
            logger.warning("accept failed: %s", "Too many open files")
        await asyncio.sleep(0.06)
        logger.warning("accept failed: %s", "Too many open files")
    finally:
        logger.removeFilter(repeat)
    lines = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert lines == [
        "accept failed: Too many open files",
        "accept failed: Too many open files [29 more like this in the last 0.05 s]",
    ]
