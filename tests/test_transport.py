"""The OneBot v11 HTTP POST endpoint: auth, bad input, filtering, dedupe, escaping."""

from __future__ import annotations

import json

from bot.onebot import sign
from storage.models import Draft, Outbox, Unit

from .conftest import GROUP, SECRET, SELF_ID, fixture, start_harness


def signed(event: dict, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    from bot.onebot import sign

    body = json.dumps(event, ensure_ascii=False).encode()
    return body, {
        "X-Self-ID": str(SELF_ID),
        "X-Signature": sign(secret, body),
        "Content-Type": "application/json",
    }


async def test_unsigned_and_wrongly_signed_posts_are_rejected_and_store_nothing(group):
    keys = await group.processed_keys()
    event = fixture("group_message_array.json")
    body, headers = signed(event)
    assert await group.post_raw(body, {"X-Self-ID": str(SELF_ID)}) == 401
    assert await group.post_raw(body, headers | {"X-Signature": "sha1=" + "0" * 40}) == 403
    _, wrong = signed(event, secret="not-the-secret")
    assert await group.post_raw(body, wrong) == 403
    # a body changed after signing (re-serialised JSON) no longer matches
    assert await group.post_raw(json.dumps(event).encode(), headers) == 403
    await group.settle()
    assert await group.count(Draft) == 0
    assert await group.processed_keys() == keys
    assert group.fake.sent() == []


async def test_missing_self_id_and_malformed_json_are_400(group):
    keys = await group.processed_keys()
    body, headers = signed(fixture("group_message_array.json"))
    del headers["X-Self-ID"]
    assert await group.post_raw(body, headers) == 400
    bad = b'{"post_type": "message", '
    _, headers = signed({})
    from bot.onebot import sign

    assert await group.post_raw(bad, headers | {"X-Signature": sign(SECRET, bad)}) == 400
    for payload in (
        [1, 2],
        {"post_type": "message"},
        {
            "post_type": "message",
            "message_type": "group",
            "user_id": "abc",
            "message_id": 1,
            "group_id": GROUP,
            "message": "x",
        },
        {
            "post_type": "message",
            "message_type": "group",
            "user_id": 1,
            "message_id": 2**70,
            "group_id": GROUP,
            "message": "x",
        },
    ):
        body, headers = signed(payload)
        assert await group.post_raw(body, headers) == 400, payload
    assert await group.processed_keys() == keys


async def test_access_token_accepted_as_bearer_token_or_query(tmp_path, fake_onebot):
    harness, server = await start_harness(
        tmp_path, fake_onebot, onebot__access_token="tok", onebot__secret=""
    )
    try:
        body = json.dumps(fixture("heartbeat.json")).encode()
        base = {"X-Self-ID": str(SELF_ID)}
        assert await harness.post_raw(body, base) == 401
        assert await harness.post_raw(body, base | {"Authorization": "Bearer wrong"}) == 403
        assert await harness.post_raw(body, base | {"Authorization": "Bearer tok"}) == 204
        assert (
            await harness.post_raw(body, base | {"Authorization": "Token tok"}) == 204
        )  # go-cqhttp
        assert await harness.post_raw(body, base, path="/onebot/v11/?access_token=tok") == 204
        assert (
            await harness.post_raw(
                body, base | {"Authorization": "Bearer tok"}, path="/onebot/v11/http"
            )
            == 204
        )
    finally:
        await harness.client.close()
        await server.close()


async def test_outgoing_api_calls_carry_the_access_token(tmp_path, fake_onebot):
    harness, server = await start_harness(
        tmp_path, fake_onebot, onebot__access_token="tok", onebot__secret=""
    )
    try:
        event = harness.message_event(10099, "/帮助")
        body = json.dumps(event).encode()
        assert (
            await harness.post_raw(body, {"X-Self-ID": str(SELF_ID), "Authorization": "Bearer tok"})
            == 204
        )
        await harness.settle()
        assert fake_onebot.auth_headers == ["Bearer tok"]
    finally:
        await harness.client.close()
        await server.close()


async def test_heartbeat_lifecycle_and_join_notices_are_quiet(group):
    keys = await group.processed_keys()
    for name in ("heartbeat.json", "lifecycle_connect.json", "group_increase.json"):
        assert await group.post_event(fixture(name)) == 204
    assert group.fake.sent() == []
    assert await group.processed_keys() == keys


async def test_event_from_unconfigured_group_is_ignored_entirely(group):
    keys, outbox = await group.processed_keys(), await group.count(Outbox)
    assert await group.post_event(fixture("other_group_message.json")) == 204
    event = group.message_event(10020, "/报送 别的群的稿件\n正文", group=800999000)
    assert await group.post_event(event) == 204
    assert group.fake.sent() == []
    assert await group.count(Draft) == 0
    assert await group.processed_keys() == keys
    assert await group.count(Outbox) == outbox


async def test_own_messages_are_ignored(group):
    event = group.message_event(SELF_ID, "/报送 自己发的\n正文")
    await group.post_event(event)
    sent = dict(event, post_type="message_sent", user_id=10020, message_id=99)
    await group.post_event(sent)
    assert group.fake.sent() == []


async def test_ordinary_chat_is_never_answered(group):
    keys = await group.processed_keys()
    for text in ("大家好", "收到", "#话题 讨论一下", "今天/明天开会"):
        await group.say(10020, text)
    assert group.fake.sent() == []
    assert await group.processed_keys() == keys  # chatter is not even written down


async def test_same_event_twice_changes_nothing_the_second_time(group):
    event = fixture("group_message_array.json")
    await group.post_event(event)
    await group.post_event(event)  # reconnect / retry / HTTP and WS both enabled
    assert await group.count(Draft) == 1
    assert len(group.fake.sent()) == 1


async def test_cq_string_with_at_bot_is_a_command(group):
    event = fixture("group_message_cqstring.json")
    event["message"] = f"[CQ:at,qq={SELF_ID}] 帮助"
    group.fake.clear()
    await group.post_event(event)
    assert "可用命令（协调员）" in group.replies()[0]  # a coordinator's list comes in parts


async def test_injection_fixture_never_produces_a_live_cq_code(group):
    await group.post_event(fixture("group_message_injection.json"))
    [draft] = await group.drafts()
    assert draft.title == "测试[CQ:at,qq=all]标题&amp;"
    [(_, _, segments)] = group.fake.sent()
    assert {s["type"] for s in segments} <= {"text", "at"}
    assert [s["data"]["qq"] for s in segments if s["type"] == "at"] == ["10020"]
    assert "[CQ:at,qq=all]" in "".join(s["data"].get("text", "") for s in segments)  # inert text


async def test_cq_string_injection_is_unescaped_to_plain_text(group):
    event = fixture("group_message_injection.json")
    event["message"] = event["raw_message"]  # the CQ-string form of the same text
    event["message_id"] = 4242
    await group.post_event(event)
    [draft] = await group.drafts()
    assert draft.title == "测试[CQ:at,qq=all]标题&amp;"
    assert draft.body == "正文[CQ:image,file=http://127.0.0.1/x.png]"
    assert all(s["type"] in ("text", "at") for _, _, segs in group.fake.sent() for s in segs)


async def test_unknown_segment_types_are_ignored(group):
    message = [
        {"type": "text", "data": {"text": "/报送 带表情的稿件\n正文"}},
        {"type": "mface", "data": {"emoji_id": "1"}},
        {"type": "image", "data": {"file": "x.png"}},
        {"type": "markdown"},
        {"weird": True},
    ]
    await group.say(10020, message)
    [draft] = await group.drafts()
    assert draft.body == "正文"


async def test_unknown_command_suggests_nearest(group):
    await group.say(10020, "/报告 标题")
    assert "未识别的命令“报告”" in group.last_reply()
    assert "/报送" in group.last_reply()
    await group.say(10020, "/hlep")
    assert "/帮助" in group.last_reply()


async def test_long_reply_is_split_at_line_boundaries(group):
    for i in range(60):
        await group.say(10001, f"/添加单位 测试单位{i:02d}号很长的名称用于撑满篇幅 部门")
    group.fake.clear()
    await group.tell(10001, "/单位")
    texts = group.replies()
    assert len(texts) >= 2
    assert texts[0].startswith("（第1/") and texts[1].startswith("（第2/")
    assert all(len(t) <= 1500 for t in texts)
    assert all(
        not line.startswith("号很长") for t in texts for line in t.split("\n")
    )  # lines kept whole


async def test_outbox_keeps_order_per_group_through_failures(group):
    from datetime import timedelta

    group.fake.fail_actions["send_group_msg"] = fixture("send_group_msg_failed.json")
    await group.say(10020, "/报送 第一条\n正文一")
    await group.say(10020, "/报送 第二条\n正文二")
    await group.say(10030, "/报送 第三条\n正文三")
    failed_calls = len(group.fake.calls)
    assert failed_calls >= 1  # tried, answered "failed", waiting in backoff
    rows = await group.outbox()
    assert all(r.status == "pending" for r in rows[-3:])
    del group.fake.fail_actions["send_group_msg"]
    group.clock.advance(timedelta(minutes=10))
    await group.settle()
    texts = group.fake.texts()[failed_calls:]
    joined = "\n".join(texts)
    assert joined.index("第一条") < joined.index("第二条") < joined.index("第三条")
    assert sum(t.count("已收到") for t in texts) == 3  # each receipt delivered once
    assert all(r.status == "sent" for r in await group.outbox())


def with_escapes(event: dict, replacements: dict[str, str]) -> bytes:
    """The event as JSON text, with placeholders replaced by raw JSON escapes."""
    text = json.dumps(event, ensure_ascii=False)
    for placeholder, escape in replacements.items():
        text = text.replace(placeholder, escape)
    return text.encode()


async def test_lone_surrogates_are_cleaned_and_never_answer_500(group):
    event = group.message_event(10020, "/报送 #SUR 标题\n正文")  # an unknown tag, echoed back
    body = with_escapes(event, {"SUR": "\\ud800"})
    headers = {"X-Self-ID": str(SELF_ID), "X-Signature": sign(SECRET, body)}
    assert await group.post_raw(body, headers) == 204
    assert await group.post_raw(body, headers) == 204  # the retry is a redelivery
    await group.settle()
    [refusal] = group.replies()
    assert "#\ufffd" in refusal  # the broken character shown as �, the rest intact
    # a card name with a lone surrogate: that member's messages keep working
    event = group.message_event(10020, "/报送 卡片名损坏\n正文", name="CARD")
    body = with_escapes(event, {"CARD": "李\\udc00明"})
    assert await group.post_raw(body, headers | {"X-Signature": sign(SECRET, body)}) == 204
    await group.settle()
    assert "已收到 城关镇《卡片名损坏》" in group.last_reply()


async def test_nul_characters_are_removed_before_anything_is_stored(group):
    """PostgreSQL text cannot hold NUL: a draft with one is stored without it, on both."""
    event = group.message_event(10020, "/报送 标题NULA含空字符\n正文NULB第一段")
    body = with_escapes(event, {"NULA": "\\u0000", "NULB": "\\u0000\\u0000"})
    headers = {"X-Self-ID": str(SELF_ID), "X-Signature": sign(SECRET, body)}
    assert await group.post_raw(body, headers) == 204
    await group.settle()
    assert "已收到 城关镇《标题含空字符》" in group.last_reply()
    [draft] = await group.drafts()
    assert (draft.title, draft.body) == ("标题含空字符", "正文第一段")


async def test_an_event_that_fails_even_its_refusal_answers_500_once(group, monkeypatch):
    from bot.context import Context

    def broken(self, text):
        raise RuntimeError("the outbox is unwritable")

    monkeypatch.setattr(Context, "reply_text", broken)
    event = group.message_event(10020, "/报送 #未知标签 标题\n正文")
    assert await group.post_event(event) == 500
    assert await group.post_event(event) == 204  # the retry is dropped, not failed again
    assert any(
        k.endswith(f":{event['message_id']}:{event['time']}") for k in await group.processed_keys()
    )


async def test_ids_are_integers_or_digit_strings_only(group):
    units = await group.count(Unit)
    for bad in (10001.9, " 1_0001 ", "1_0001", "１０００１", True, "10001.0"):
        event = group.message_event(10001, "/添加单位 冒名镇")
        event["user_id"] = bad
        event["sender"]["user_id"] = bad
        body, headers = signed(event)
        assert await group.post_raw(body, headers) == 400, bad
    body, headers = signed(group.message_event(10001, "/添加单位 冒名镇"))
    assert await group.post_raw(body, headers | {"X-Self-ID": "3_300_000_001"}) == 400
    assert await group.count(Unit) == units
    # an @-mention whose qq is not a plain number is no mention
    await group.say(
        10001,
        [
            {"type": "text", "data": {"text": "/登记 "}},
            {"type": "at", "data": {"qq": "1_0030"}},
            {"type": "text", "data": {"text": " 城关镇"}},
        ],
    )
    assert "格式" in group.last_reply()
