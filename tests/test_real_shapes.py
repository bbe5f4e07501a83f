"""Payload shapes real implementations send (tests/fixtures/onebot, README there),
replayed through the real endpoints."""

from __future__ import annotations

from storage.models import DraftStatus

from .conftest import COORDINATOR, GROUP, SELF_ID, fixture
from .test_files import make_docx


def only_live_mentions_of(group, allowed: set[str]) -> None:
    for _, _, segments in group.fake.sent():
        for seg in segments:
            assert seg["type"] in ("text", "at"), seg
            if seg["type"] == "at":
                assert seg["data"]["qq"] in allowed, seg  # never "all"


async def test_every_id_as_a_string_and_a_13_digit_message_id(group):
    event = fixture("string_ids_group_message.json")
    assert await group.post_event(event) == 204
    assert "城关镇" in group.last_reply()  # /我的稿件 answered for 李明 (10020)
    [(kind, target, segments)] = group.fake.sent()
    assert (kind, target) == ("group", GROUP)
    assert segments[0] == {"type": "at", "data": {"qq": "10020"}}
    key = f"msg:{SELF_ID}:group:{GROUP}:10020:1795455893336:1795000400"
    assert key in await group.processed_keys()


async def test_napcat_reply_and_at_all_in_front_of_a_command(group):
    await group.post_event(fixture("napcat_group_reply_atall.json"))
    assert "约稿" in group.last_reply()  # /约稿列表 was found behind the reply and @全体成员
    only_live_mentions_of(group, {str(COORDINATOR)})


async def test_cq_at_all_typed_inside_text_stays_text(group):
    await group.say(10020, "/报送 通知[CQ:at,qq=all]请大家注意\n正文[CQ:at,qq=all]")
    [draft] = await group.drafts()
    assert draft.title == "通知[CQ:at,qq=all]请大家注意"
    assert "[CQ:at,qq=all]" in group.last_reply()
    only_live_mentions_of(group, {"10020"})


async def test_napcat_private_file_segment_becomes_a_draft(group):
    event = fixture("napcat_private_file.json")
    group.fake.files["napcat-file"] = make_docx("城关镇冬季安全生产经验", "一是排查隐患。")
    event["message"][0]["data"]["url"] = f"{group.fake.url}/files/napcat-file"
    await group.post_event(event)
    [draft] = await group.drafts()
    assert (draft.title, draft.body, draft.source) == (
        "城关镇冬季安全生产经验",
        "一是排查隐患。",
        "file",
    )
    assert draft.attachment_name == "城关镇冬季安全生产经验.docx"
    [(kind, target, _)] = group.fake.sent()
    assert (kind, target) == ("private", 10020)
    assert [a for a, _ in group.fake.calls] == ["send_private_msg"]  # the url was enough


async def test_go_cqhttp_group_upload_with_busid_and_url(group):
    event = fixture("gocq_group_upload_busid.json")
    group.fake.files["gocq"] = make_docx("文江镇秋季森林防火检查", "全镇出动120人次。")
    event["file"]["url"] = f"{group.fake.url}/files/gocq"
    await group.post_event(event)
    [draft] = await group.drafts()
    assert draft.title == "文江镇秋季森林防火检查" and draft.status == DraftStatus.submitted
    assert f"编号G{draft.id}" in group.last_reply()


async def test_message_ids_answered_negative_or_beyond_int32_are_stored(group):
    for message_id in (-2147480001, "1795455893336"):
        group.fake.fail_actions["send_group_msg"] = {
            "status": "ok",
            "retcode": 0,
            "data": {"message_id": message_id},
        }
        await group.say(10020, f"/报送 编号{message_id}的回执\n正文")
    rows = (await group.outbox())[-2:]
    assert [r.message_id for r in rows] == [-2147480001, 1795455893336]


async def test_napcat_failed_1200_is_retried_with_backoff_and_never_counted_sent(group):
    failed = fixture("napcat_send_failed_1200.json")
    group.fake.fail_actions["send_group_msg"] = failed
    await group.say(10020, "/报送 对方返回失败\n正文")
    row = (await group.outbox())[-1]
    assert (row.status, row.attempts, row.sent_at) == ("pending", 1, None)
    assert row.last_error.startswith("1200") and row.next_attempt_at > group.clock.now()
    await group.advance(seconds=2)
    row = (await group.outbox())[-1]
    assert row.status == "pending" and row.attempts == 2  # tried again after the backoff
    del group.fake.fail_actions["send_group_msg"]
    await group.advance(minutes=1)
    row = (await group.outbox())[-1]
    assert row.status == "sent" and row.attempts == 3 and row.message_id is not None
    texts = group.fake.texts("group", GROUP)
    assert sum("对方返回失败" in t for t in texts) == 3  # two refused, one delivered


async def test_message_format_array_and_string_both_parse_to_the_same_command(group):
    array = fixture("group_message_cqstring.json")
    array["message"] = [
        {"type": "at", "data": {"qq": str(SELF_ID)}},
        {"type": "text", "data": {"text": " 排行 周"}},
    ]
    array["message_format"] = "array"
    await group.post_event(fixture("group_message_cqstring.json"))
    await group.post_event(dict(array, message_id=1900))
    first, second = group.replies()
    assert first == second and "积分" in first
