"""The database misbehaving: unreachable at start-up, lost while running, and a
deadlock with another process's transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import threading

import pytest
from sqlalchemy.engine import make_url

from bot.config import ConfigError
from bot.onebot import parse_event

from . import pgtest
from .conftest import COORDINATOR, SELF_ID, database_url, populate, start_harness
from .test_crash import free_port


@pytest.mark.no_database
def test_unreachable_database_stops_start_up_with_a_chinese_message(tmp_path):
    port = free_port()  # nothing listens there
    config = tmp_path / "xinxibot.toml"
    config.write_text(
        f'[bot]\ndatabase = "postgresql+asyncpg://bot:secret@127.0.0.1:{port}/county"\n'
        f'listen = "127.0.0.1:{free_port()}"\n[onebot]\nself_id = {SELF_ID}\ngroups = [1]\n',
        encoding="utf-8",
    )
    for command in (["run"], ["db", "upgrade"]):
        result = subprocess.run(
            [sys.executable, "-m", "bot.cli", *command, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 3, result.stdout + result.stderr
        assert f"无法连接数据库，未启动：postgresql+asyncpg://bot:***@127.0.0.1:{port}/county" in (
            result.stdout
        )
        assert "secret" not in result.stdout and "Traceback" not in result.stderr


class TcpProxy:
    """Between the bot and PostgreSQL: `cut()` drops every connection and refuses
    new ones (the server gone, as the bot sees it); `restore()` accepts again.
    Threads, not this test's event loop: the job store's driver is synchronous
    and blocks the loop while it connects."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        if self.listener is not None:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            self.listener.close()
            self.listener = None
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by cut()
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._copy, args=(a, b), daemon=True).start()

    @staticmethod
    def _copy(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.mark.postgres
async def test_database_lost_while_running_refuses_with_503_then_recovers(tmp_path, fake_onebot):
    direct = database_url(tmp_path)
    url = make_url(direct)
    proxy = TcpProxy(url.port or 5432)
    proxy.restore()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    h, server = await start_harness(tmp_path, fake_onebot, bot__database=proxied)
    try:
        await populate(h)
        assert await h.say(10020, "/报送 断线之前\n正文") == 204
        assert h.bot.cluster.leader

        proxy.cut()
        event = h.message_event(10020, "/报送 断线期间\n正文")
        assert await h.post_event(event) == 503  # not acknowledged: redelivered later
        assert await h.post_event(event) == 503
        await h.bot.cluster.poll()  # the poll finds the lock session gone
        assert not h.bot.cluster.leader and not h.bot.scheduler.running
        titles = [t for (t,) in pgtest.query(direct, "select title from draft")]
        assert titles == ["断线之前"]  # nothing half-written, nothing acknowledged
        assert all("断线期间" not in t for t in fake_onebot.texts())

        proxy.restore()
        assert await h.post_event(event) == 204  # the redelivery is handled, once
        assert await h.post_event(event) == 204
        assert "已收到 城关镇《断线期间》" in h.last_reply()
        assert sum("断线期间" in t for t in fake_onebot.texts()) == 1
        titles = [t for (t,) in pgtest.query(direct, "select title from draft order by id")]
        assert titles == ["断线之前", "断线期间"]
        await h.bot.cluster.poll()
        assert h.bot.cluster.leader and h.bot.scheduler.running  # the scheduler is back
    finally:
        await h.close()
        await server.close()
        proxy.cut()


@pytest.mark.postgres
async def test_deadlock_with_another_process_is_retried_not_shown(group, caplog):
    """Another process's transaction (a session of this test) locks 城关镇's unit row,
    then claims the key of the event the bot is handling. The bot's transaction, which
    waits for the unit row to insert the draft, is chosen as the deadlock victim; it
    runs again and the officer gets an ordinary receipt. The number the aborted
    attempt took is skipped: numbers are unique, not contiguous."""
    await group.say(10020, "/报送 第一篇\n正文")
    [first] = await group.drafts()
    url = group.bot.config.bot.database
    other = await asyncio.to_thread(pgtest.connect, url)
    await asyncio.to_thread(other.execute, "SELECT id FROM unit WHERE name = '城关镇' FOR UPDATE")
    event = group.message_event(10020, "/报送 第二篇\n正文")
    caplog.set_level(logging.INFO, logger="bot.dispatcher")
    posting = asyncio.create_task(group.post_event(event))
    for _ in range(100):  # bounded: until the bot waits for the unit row
        if pgtest.waiting_on_locks(url):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the bot never waited for the locked row")
    key = parse_event(event, str(SELF_ID)).key
    await asyncio.to_thread(  # waits for the bot: a deadlock, which aborts the bot's attempt
        other.execute, "INSERT INTO processed_event (key, created_at) VALUES (%s, now())", (key,)
    )
    await asyncio.to_thread(other.rollback)
    assert await posting == 204
    other.close()
    assert any("met a concurrent transaction" in r.message for r in caplog.records)
    drafts = await group.drafts()
    assert [d.title for d in drafts] == ["第一篇", "第二篇"]
    assert drafts[1].id == first.id + 2  # the aborted attempt's number is not reused
    assert f"编号G{drafts[1].id}，本月第2条" in group.last_reply()
    assert all("内部错误" not in t for t in group.replies())
    assert COORDINATOR not in [t for k, t, _ in group.fake.sent() if k == "private"]


@pytest.mark.postgres
async def test_postgres_needs_the_bots_own_account(tmp_path, fake_onebot):
    """Several processes may share PostgreSQL, so each must say which account it serves."""
    with pytest.raises(ConfigError) as refused:
        await start_harness(tmp_path, fake_onebot, onebot__self_id=0)
    assert refused.value.key == "onebot.self_id" and refused.value.problem == "missing"
