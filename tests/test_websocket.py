"""Reverse WebSocket: the OneBot implementation connects to us; events in, API calls out with echo."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from storage.models import Draft

from .conftest import GROUP, SELF_ID, fixture, start_harness, until


@pytest.fixture
async def ws_bot(tmp_path, fake_onebot):
    # api_url empty: replies go back over the reverse WebSocket
    harness, server = await start_harness(
        tmp_path, fake_onebot, onebot__api_url="", onebot__access_token="tok"
    )
    await harness.say(10001, "/添加单位 城关镇")
    await harness.register(10020, "城关镇", "李明")
    yield harness
    await harness.client.close()
    await server.close()


async def answer_api_calls(
    ws: aiohttp.ClientWebSocketResponse, calls: list[dict], stop: asyncio.Event
) -> None:
    """Play NapCat: answer every API call with status ok and the same echo."""
    async for msg in ws:
        frame = json.loads(msg.data)
        calls.append(frame)
        await ws.send_json(
            {"status": "ok", "retcode": 0, "data": {"message_id": 7}, "echo": frame["echo"]}
        )
        if stop.is_set():
            break


async def test_event_over_reverse_ws_gets_reply_over_the_same_socket(ws_bot):
    url = ws_bot.base.replace("http", "ws") + "/onebot/v11/ws"
    headers = {
        "X-Self-ID": str(SELF_ID),
        "X-Client-Role": "Universal",
        "Authorization": "Bearer tok",
    }
    async with ws_bot.client.ws_connect(url, headers=headers) as ws:
        calls: list[dict] = []
        stop = asyncio.Event()
        responder = asyncio.create_task(answer_api_calls(ws, calls, stop))
        await ws.send_json(fixture("lifecycle_connect.json"))
        await ws.send_json(fixture("group_message_array.json"))
        for _ in range(200):  # wait for the handler and the sender (bounded)
            if len(calls) == 3:
                break
            await ws_bot.bot.sender.drained()
        # the two replies queued while no socket was connected go first, in order
        texts = [c["params"]["message"][-1]["data"]["text"] for c in calls]
        assert "已添加单位" in texts[0] and "已登记 李明" in texts[1]
        assert "已收到 城关镇" in texts[2]
        assert [c["action"] for c in calls] == ["send_group_msg"] * 3
        assert calls[2]["params"]["group_id"] == GROUP
        assert len({c["echo"] for c in calls}) == 3
        await ws_bot.bot.sender.drained()
        outbox = await ws_bot.outbox()
        assert [(o.status, o.message_id) for o in outbox] == [("sent", 7)] * 3
        assert await ws_bot.count(Draft) == 1
        stop.set()
        responder.cancel()


async def test_reverse_ws_rejects_missing_or_wrong_token(ws_bot):
    url = ws_bot.base.replace("http", "ws") + "/onebot/v11/ws"
    for auth, status in ((None, 401), ("Bearer nope", 403)):
        headers = {"X-Self-ID": str(SELF_ID)} | ({"Authorization": auth} if auth else {})
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await ws_bot.client.ws_connect(url, headers=headers)
        assert err.value.status == status
    # go-cqhttp's "Token" scheme and the query string are accepted too
    async with ws_bot.client.ws_connect(
        url + "?access_token=tok", headers={"X-Self-ID": str(SELF_ID)}
    ) as ws:
        assert not ws.closed


async def test_new_connection_replaces_old_and_old_cleanup_keeps_new(ws_bot):
    url = ws_bot.base.replace("http", "ws") + "/onebot/v11/ws"
    headers = {"X-Self-ID": str(SELF_ID), "Authorization": "Token tok"}
    old = await ws_bot.client.ws_connect(url, headers=headers)
    new = await ws_bot.client.ws_connect(url, headers=headers)
    for _ in range(10):  # the server closes the replaced socket (after any call it had sent)
        if (await old.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            break
    assert old.closed
    await asyncio.sleep(0)
    peer = ws_bot.bot.onebot_api.peer_for(SELF_ID)
    assert peer is not None and not peer.ws.closed
    await new.close()


async def test_no_socket_means_outbox_keeps_the_message_for_later(ws_bot):
    event = fixture("group_message_array.json")
    body = json.dumps(event).encode()
    assert (
        await ws_bot.post_raw(body, {"X-Self-ID": str(SELF_ID)}) == 401
    )  # POST needs the token too
    assert await ws_bot.post_event(event) == 204
    rows = await ws_bot.outbox()
    assert len(rows) == 3
    assert all(r.status == "pending" and r.next_attempt_at is not None for r in rows[:1])
    assert all(r.status == "pending" and r.sent_at is None for r in rows)


async def test_a_100k_deep_frame_is_skipped_and_the_socket_stays_open(ws_bot):
    url = ws_bot.base.replace("http", "ws") + "/onebot/v11/ws"
    headers = {"X-Self-ID": str(SELF_ID), "Authorization": "Bearer tok"}
    async with ws_bot.client.ws_connect(url, headers=headers) as ws:
        calls: list[dict] = []
        responder = asyncio.create_task(answer_api_calls(ws, calls, asyncio.Event()))
        await ws.send_str("[" * 100_000 + "]" * 100_000)
        await ws.send_str('{"post_type": "message", "message": ')
        event = fixture("group_message_array.json")
        event["message"][0]["data"]["text"] = "/报送 深帧之后SUR\n正文"
        await ws.send_str(json.dumps(event, ensure_ascii=False).replace("SUR", "\\ud800"))
        await until(
            lambda: any("深帧之后" in json.dumps(c, ensure_ascii=False) for c in calls), ws_bot
        )
        assert not ws.closed
        responder.cancel()
    [draft] = await ws_bot.drafts()
    assert draft.title == "深帧之后\ufffd"


async def test_without_a_token_a_local_implementation_may_connect(tmp_path, fake_onebot):
    harness, server = await start_harness(tmp_path, fake_onebot, onebot__api_url="")
    try:
        url = harness.base.replace("http", "ws") + "/onebot/v11/ws"
        async with harness.client.ws_connect(url, headers={"X-Self-ID": str(SELF_ID)}) as ws:
            assert not ws.closed
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await harness.client.ws_connect(url, headers={"X-Self-ID": "33_000"})
        assert err.value.status == 400
    finally:
        await harness.client.close()
        await server.close()
