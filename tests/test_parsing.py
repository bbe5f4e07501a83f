"""OneBot message parsing and the command parser."""

from __future__ import annotations

import pytest

from bot.onebot import (
    EventError,
    Segment,
    cq_escape,
    parse_cq_string,
    parse_event,
    parse_message,
    to_cq_string,
)
from bot.router import Registry
from handlers import ROUTERS

from .conftest import SELF_ID, fixture

pytestmark = pytest.mark.no_database

TABLE = Registry(ROUTERS)


def test_cq_string_unescapes_text_and_params():
    segs = parse_cq_string(
        "A&amp;B &#91;不是码&#93;[CQ:at,qq=10020][CQ:image,file=a&#44;b.png,url=x]尾"
    )
    assert segs == [
        Segment("text", {"text": "A&B [不是码]"}),
        Segment("at", {"qq": "10020"}),
        Segment("image", {"file": "a,b.png", "url": "x"}),
        Segment("text", {"text": "尾"}),
    ]


def test_escape_round_trip():
    text = "[CQ:at,qq=all] & , ]["
    assert parse_cq_string(cq_escape(text)) == [Segment("text", {"text": text})]
    assert to_cq_string([{"type": "text", "data": {"text": text}}]) == cq_escape(text)


def test_both_message_forms_parse_the_same():
    array = fixture("group_message_array.json")
    as_string = dict(array, message=array["raw_message"])
    assert parse_event(array).segments == parse_event(as_string).segments


def test_ids_as_strings_and_negative_message_ids():
    event = fixture("group_message_array.json")
    event.update(user_id="10020", group_id="700100200", self_id=str(SELF_ID))
    parsed = parse_event(event)
    assert (parsed.user_id, parsed.group_id, parsed.message_id) == (10020, 700100200, -2147480001)
    # one delivery: account, chat, sender, id and the event's time
    assert parsed.key == f"msg:{SELF_ID}:group:700100200:10020:-2147480001:1763956800"


@pytest.mark.parametrize(
    "bad", [None, 3, "x", {"post_type": 1}, {"post_type": "message", "message_type": "channel"}]
)
def test_invalid_events_raise(bad):
    with pytest.raises(EventError):
        parse_event(bad, "1")


def test_malformed_segments_are_skipped():
    segs = parse_message(
        [
            {"type": "text", "data": {"text": 5}},
            "x",
            {"type": "face"},
            {"type": "text", "data": {"text": "ok"}},
        ]
    )
    assert segs == [Segment("face", {}), Segment("text", {"text": "ok"})]


def test_group_upload_and_file_segment_share_one_key():
    upload = parse_event(fixture("group_upload.json"))
    msg = fixture("group_message_array.json")
    msg["message"] = [{"type": "file", "data": {"file": "x.docx", "file_id": upload.file.file_id}}]
    assert parse_event(msg).key == upload.key
    assert upload.file.busid == 102


def parse(text, mention_bot=False):
    segs = [Segment("at", {"qq": str(SELF_ID)})] if mention_bot else []
    segs.append(Segment("text", {"text": text}))
    return TABLE.parse(segs, SELF_ID)


def test_fullwidth_command_is_normalised():
    event = parse_event(fixture("group_message_fullwidth.json"))
    text = event.segments[0].data["text"]
    cmd = TABLE.parse(event.segments, SELF_ID)
    assert cmd.word == "约稿"  # the topics command arrives with that issue; the parse works now
    assert cmd.words[0] == "关于冬季安全生产的经验做法"
    assert cmd.body == "请重点反映隐患排查的新举措。"
    assert text.startswith("／约稿")


def test_command_forms():
    assert parse("/报送 #调研 标题\n正文").spec.name == "报送"
    assert parse("／报送　＃调研　标题").tags == ["调研"]
    assert parse("/submit 标题").spec.name == "报送"
    assert parse("/SUBMIT 标题").spec.name == "报送"
    assert parse("#帮助").spec.name == "帮助"
    assert parse("帮助", mention_bot=True).spec.name == "帮助"
    assert parse("/ 帮助").spec.name == "帮助"
    cmd = parse("/报送 城关镇：推进“两个提升”，成效明显\n正文")
    assert cmd.rest == "城关镇：推进“两个提升”，成效明显"  # the title keeps its punctuation


def test_chat_is_not_a_command():
    for text in ("你好", "收到，谢谢", "#话题", "http://a/b", " 稍后/报送"):
        assert parse(text) is None, text
    assert parse("", mention_bot=True) is None
    unknown = parse("/报告 x")
    from storage.models import Role

    assert unknown.spec is None and TABLE.nearest("报告", Role.officer) == "报送"
    assert TABLE.nearest("约搞", Role.coordinator) == "约稿"
    assert TABLE.nearest("hlep") == "帮助"
