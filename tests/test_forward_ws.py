"""Forward WebSocket (`onebot.ws_url`): the bot connects to the implementation's
WebSocket server (NapCat's, Lagrange's), receives events and calls the API on
the same socket; it reconnects, and the outbox holds what it cannot send."""

from __future__ import annotations

import json
import logging
import socket

from storage.models import Draft

from .conftest import GROUP, SELF_ID, FakeWsImplementation, fixture, start_harness, until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def submission(user_id: int, title: str, message_id: int) -> dict:
    event = fixture("group_message_array.json")
    event.update(user_id=user_id, message_id=message_id, group_id=GROUP)
    event["message"] = [{"type": "text", "data": {"text": f"/报送 {title}\n正文"}}]
    return event


async def connected(h) -> None:
    await until(lambda: h.bot.onebot_api.peer_for(SELF_ID) is not None, h)


async def registered(h, peer: FakeWsImplementation) -> None:
    """The coordinator adds 城关镇 and registers 李明 (10020), over the socket."""
    await connected(h)
    for n, text in enumerate(("/添加单位 城关镇", "/登记 10020 城关镇")):
        event = fixture("group_message_array.json")
        event.update(user_id=10001, message_id=900 + n)
        event["message"] = [{"type": "text", "data": {"text": text}}]
        await peer.push(event)
    await until(lambda: len(peer.calls("send_group_msg")) == 2, h)


async def test_events_in_and_replies_out_over_the_same_socket_with_bearer_token(
    tmp_path, fake_onebot, implementation
):
    h, server = await start_harness(
        tmp_path,
        fake_onebot,
        onebot__api_url="",
        onebot__ws_url=implementation.url,  # a single URL, not a list
        onebot__access_token="tok",
    )
    try:
        await registered(h, implementation)
        await implementation.push(submission(10020, "经正向连接报送", -5))
        await until(lambda: any("经正向连接报送" in t for t in implementation.texts()), h)
        assert implementation.headers[0]["Authorization"] == "Bearer tok"
        [receipt] = [f for f in implementation.calls("send_group_msg") if "经正向" in str(f)]
        assert receipt["params"]["group_id"] == GROUP
        assert receipt["params"]["message"][0] == {"type": "at", "data": {"qq": "10020"}}
        rows = await h.outbox()
        assert [r.status for r in rows] == ["sent"] * 3
        assert rows[-1].message_id >= 7001  # the id the implementation answered, matched by echo
        assert fake_onebot.calls == []  # no HTTP API involved
        assert await h.count(Draft) == 1
    finally:
        await h.close()
        await server.close()


async def test_refused_connection_then_the_peer_appears_nothing_lost_nothing_doubled(
    tmp_path, fake_onebot
):
    peer = FakeWsImplementation()
    peer.port = free_port()  # nothing listens there yet: connection refused
    h, server = await start_harness(
        tmp_path, fake_onebot, onebot__api_url="", onebot__ws_url=[peer.url]
    )
    try:
        await h.say(10001, "/添加单位 城关镇")  # over HTTP POST while the socket is down
        [row] = await h.outbox()
        assert row.status == "pending" and row.next_attempt_at is not None  # "down": backoff
        await peer.start()
        await until(lambda: len(peer.calls("send_group_msg")) == 1, h)
        await h.advance(minutes=10)
        assert len(peer.calls("send_group_msg")) == 1
        assert "已添加单位" in peer.texts()[0]
        assert [r.status for r in await h.outbox()] == ["sent"]
    finally:
        await h.close()
        await server.close()
        await peer.stop()


async def test_peer_closing_mid_call_leaves_the_message_unknown_and_never_resent(
    tmp_path, fake_onebot, implementation
):
    h, server = await start_harness(
        tmp_path, fake_onebot, onebot__api_url="", onebot__ws_url=[implementation.url]
    )
    try:
        await registered(h, implementation)
        implementation.answer = "close"  # takes the call, then the socket goes away
        await implementation.push(submission(10020, "半途断开", 1))
        await until(lambda: any("半途断开" in t for t in implementation.texts()), h)
        implementation.answer = "ok"  # the next connection answers (its get_login_info too)
        await until(lambda: len(implementation.headers) == 2, h)  # it reconnected
        await connected(h)
        await h.advance(hours=1)
        assert sum("半途断开" in t for t in implementation.texts()) == 1
        row = (await h.outbox())[-1]
        assert row.status == "unknown" and "closed" in row.last_error
        await implementation.push(submission(10020, "重连之后", 2))
        await until(lambda: any("重连之后" in t for t in implementation.texts()), h)
    finally:
        await h.close()
        await server.close()


async def test_unknown_echo_is_ignored_and_a_call_never_answered_is_unknown_not_resent(
    tmp_path, fake_onebot, implementation, caplog
):
    h, server = await start_harness(
        tmp_path,
        fake_onebot,
        onebot__api_url="",
        onebot__ws_url=[implementation.url],
        onebot__api_timeout_seconds=1,
    )
    caplog.set_level(logging.INFO, logger="bot.transport")
    try:
        await registered(h, implementation)
        implementation.answer = "wrong_echo"
        await implementation.push(submission(10020, "回声不对", 1))
        await until(lambda: any("回声不对" in t for t in implementation.texts()), h)
        await until(lambda: h.bot.onebot_api.peer_for(SELF_ID).pending == {}, h)
        assert "unknown echo" in caplog.text
        implementation.answer = "silent"
        await implementation.push(submission(10020, "石沉大海", 2))
        await until(lambda: any("石沉大海" in t for t in implementation.texts()), h)
        await until(lambda: h.bot.onebot_api.peer_for(SELF_ID).pending == {}, h)
        await h.settle()
        implementation.answer = "ok"
        await h.advance(hours=1)
        texts = implementation.texts()
        assert sum("回声不对" in t for t in texts) == 1 and sum("石沉大海" in t for t in texts) == 1
        statuses = [(r.status, r.last_error) for r in (await h.outbox())[-2:]]
        assert statuses == [("unknown", "timeout")] * 2
        assert h.bot.onebot_api.peer_for(SELF_ID) is not None  # the socket stayed open
    finally:
        await h.close()
        await server.close()


async def test_replies_prefer_the_open_socket_and_fall_back_to_http(
    tmp_path, fake_onebot, implementation
):
    h, server = await start_harness(tmp_path, fake_onebot, onebot__ws_url=[implementation.url])
    try:
        await registered(h, implementation)
        assert fake_onebot.calls == []
        await implementation.stop()  # the implementation's WS server goes away
        await until(lambda: h.bot.onebot_api.peer_for(SELF_ID) is None, h)
        await h.say(10020, "/报送 走HTTP接口\n正文")
        assert any("走HTTP接口" in t for t in fake_onebot.texts())
        assert not any("走HTTP接口" in t for t in implementation.texts())
    finally:
        await h.close()
        await server.close()


async def test_too_deep_or_broken_frames_are_skipped_and_the_socket_stays(
    tmp_path, fake_onebot, implementation
):
    h, server = await start_harness(
        tmp_path, fake_onebot, onebot__api_url="", onebot__ws_url=[implementation.url]
    )
    try:
        await registered(h, implementation)
        for bad in ("[" * 100_000 + "]" * 100_000, '{"post_type": ', json.dumps({"post_type": 5})):
            await implementation.push(bad)
        await implementation.push(submission(10020, "坏帧之后", 3))
        await until(lambda: any("坏帧之后" in t for t in implementation.texts()), h)
        assert len(implementation.headers) == 1  # never reconnected: the socket survived
    finally:
        await h.close()
        await server.close()


async def test_backoff_doubles_to_a_cap_with_jitter(tmp_path, fake_onebot):
    h, server = await start_harness(tmp_path, fake_onebot, onebot__ws_url=["ws://127.0.0.1:9/"])
    try:
        [connection] = h.bot.forward
        connection.first_delay, connection.max_delay = 0.5, 30.0
        delays = [[connection.delay(n) for _ in range(50)] for n in range(10)]
        assert all(0.25 <= d <= 0.5 for d in delays[0])
        assert all(1 <= d <= 2 for d in delays[2]) and all(2 <= d <= 4 for d in delays[3])
        assert all(15 <= d <= 30 for d in delays[9])  # capped
        assert len({round(d, 6) for d in delays[3]}) > 10  # jittered
    finally:
        await h.close()
        await server.close()


async def test_a_list_of_urls_opens_one_connection_each_and_an_event_on_both_counts_once(
    tmp_path, fake_onebot
):
    a, b = FakeWsImplementation(), FakeWsImplementation()
    await a.start()
    await b.start()
    h, server = await start_harness(
        tmp_path, fake_onebot, onebot__api_url="", onebot__ws_url=[a.url, b.url]
    )
    try:
        await until(lambda: len(a.headers) == 1 and len(b.headers) == 1, h)
        await registered(h, b)
        event = submission(10020, "两条连接同一事件", 4)
        await a.push(event)
        await b.push(event)
        await until(lambda: any("两条连接" in t for t in a.texts() + b.texts()), h)
        await h.advance(seconds=5)
        assert sum("两条连接" in t for t in a.texts() + b.texts()) == 1
        assert await h.count(Draft) == 1
    finally:
        await h.close()
        await server.close()
        await a.stop()
        await b.stop()
