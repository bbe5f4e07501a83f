"""Hypothesis-generated input into the event parser, the HTTP endpoint, the command
parser and the deadline parser: no crash, no 500, nothing stored for invalid events."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.onebot import EventError, Segment, parse_event, sign
from bot.router import Registry
from bot.timeparse import DeadlineError, parse_deadline
from handlers import ROUTERS

from .conftest import GROUP, SECRET, SELF_ID

TABLE = Registry(ROUTERS)
NOW = datetime(2026, 11, 23, 10, 0)

weird_text = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "[CQ:at,qq=all]",
            "&#91;CQ:image,file=x&#93;",
            "{{ 7*7 }}",
            "{% raw %}",
            "\u202e\u200b",
            "／报送　＃调研",
            "截止",
            "/报送",
            "@全体成员",
            "\x00",
            "😀" * 3,
            "１２月３１日下午１１点",
        ]
    ),
)
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | weird_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
segment = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "at", "image", "face", "file", "reply", "mface", "json", "unknown", ""]),
     "data": st.dictionaries(st.sampled_from(["text", "qq", "file", "file_id", "url", "name", "id"]), json_value, max_size=3)}
)  # fmt: skip
event = st.fixed_dictionaries(
    {
        "post_type": st.sampled_from(["message", "notice", "meta_event", "request", "message_sent"])
        | weird_text
    },
    optional={
        "self_id": st.integers() | st.text(max_size=12) | st.none(),
        "message_type": st.sampled_from(["group", "private", "channel"]) | json_value,
        "user_id": st.integers() | st.text(max_size=12) | json_value,
        "group_id": st.sampled_from([GROUP, 800999000]) | st.integers() | json_value,
        "message_id": st.integers() | st.text(max_size=12),
        "message": st.lists(segment | json_value, max_size=5) | weird_text | json_value,
        "notice_type": st.sampled_from(["group_upload", "offline_file", "group_increase"])
        | json_value,
        "file": st.dictionaries(
            st.sampled_from(["id", "name", "size", "busid", "url"]), json_value, max_size=5
        ),
        "sender": st.dictionaries(
            st.sampled_from(["card", "nickname", "user_id"]), json_value, max_size=3
        ),
    },
)


@pytest.mark.no_database
@settings(max_examples=400, deadline=None)
@given(event)
def test_event_parser_either_parses_or_says_why(payload):
    try:
        parsed = parse_event(payload, str(SELF_ID))
    except EventError:
        return
    assert isinstance(parsed.self_id, int)
    assert all(isinstance(s, Segment) for s in parsed.segments)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=event)
async def test_http_endpoint_never_500(group, payload):
    drafts_before = len(await group.drafts())
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = {
        "X-Self-ID": str(SELF_ID),
        "X-Signature": sign(SECRET, body),
        "Content-Type": "application/json",
    }
    status = await group.post_raw(body, headers)
    assert status in (204, 400), status
    if status == 400:
        assert len(await group.drafts()) == drafts_before  # nothing stored for an invalid event


@pytest.mark.no_database
@settings(max_examples=400, deadline=None)
@given(st.lists(st.builds(Segment, st.sampled_from(["text", "at", "image"]), st.fixed_dictionaries(
    {"text": weird_text, "qq": st.sampled_from([str(SELF_ID), "10020", "all", "x"])})), max_size=4))  # fmt: skip
def test_command_parser_never_crashes(segments):
    command = TABLE.parse(segments, SELF_ID)
    if command is not None:
        assert isinstance(command.words, list) and isinstance(command.body, str)


@pytest.mark.no_database
@settings(max_examples=500, deadline=None)
@given(weird_text)
def test_deadline_parser_future_or_a_reason(text):
    try:
        when = parse_deadline(text, NOW)
    except DeadlineError as exc:
        assert exc.code in ("unparseable", "invalid_date", "past")
    else:
        assert when > NOW
