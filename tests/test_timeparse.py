"""Deadline expressions, table-driven. "Now" is Monday 2026-11-23 10:00."""

from __future__ import annotations

from datetime import datetime

import pytest

from bot.timeparse import DeadlineError, parse_deadline

pytestmark = pytest.mark.no_database

NOW = datetime(2026, 11, 23, 10, 0)

CASES = [
    ("2026-11-30", datetime(2026, 11, 30, 18, 0)),
    ("2026-11-30 17:00", datetime(2026, 11, 30, 17, 0)),
    ("2026/11/30 9:05", datetime(2026, 11, 30, 9, 5)),
    ("2026.12.01", datetime(2026, 12, 1, 18, 0)),
    ("2026年12月5日", datetime(2026, 12, 5, 18, 0)),
    ("2026年12月5日17时", datetime(2026, 12, 5, 17, 0)),
    ("11-30", datetime(2026, 11, 30, 18, 0)),
    ("11/30", datetime(2026, 11, 30, 18, 0)),
    ("11-30 17:30", datetime(2026, 11, 30, 17, 30)),
    ("11月30日", datetime(2026, 11, 30, 18, 0)),
    ("11月30号", datetime(2026, 11, 30, 18, 0)),
    ("11月30日17时", datetime(2026, 11, 30, 17, 0)),
    ("11月30日17点", datetime(2026, 11, 30, 17, 0)),
    ("11月30日下午5点", datetime(2026, 11, 30, 17, 0)),
    ("11月30日下午5点半", datetime(2026, 11, 30, 17, 30)),
    ("11月30日下午5点30分", datetime(2026, 11, 30, 17, 30)),
    ("11月30日上午9点", datetime(2026, 11, 30, 9, 0)),
    ("11月30日晚上8点", datetime(2026, 11, 30, 20, 0)),
    ("11月30日中午12点", datetime(2026, 11, 30, 12, 0)),
    ("11月30日17:00前", datetime(2026, 11, 30, 17, 0)),
    ("11月30日下午", datetime(2026, 11, 30, 18, 0)),
    ("11月30日上午", datetime(2026, 11, 30, 12, 0)),
    ("１２月５日下午５点", datetime(2026, 12, 5, 17, 0)),  # full-width digits
    ("１１－３０　１７：００", datetime(2026, 11, 30, 17, 0)),
    ("十二月五日", datetime(2026, 12, 5, 18, 0)),
    ("十二月五日下午五点", datetime(2026, 12, 5, 17, 0)),
    ("周五", datetime(2026, 11, 27, 18, 0)),
    ("星期五", datetime(2026, 11, 27, 18, 0)),
    ("礼拜五", datetime(2026, 11, 27, 18, 0)),
    ("周五下午4点", datetime(2026, 11, 27, 16, 0)),
    ("周一", datetime(2026, 11, 30, 18, 0)),  # today is Monday: the next one
    ("周日", datetime(2026, 11, 29, 18, 0)),
    ("星期天", datetime(2026, 11, 29, 18, 0)),
    ("下周三", datetime(2026, 12, 2, 18, 0)),
    ("本周五", datetime(2026, 11, 27, 18, 0)),
    ("这周三上午10点", datetime(2026, 11, 25, 10, 0)),
    ("今天下午4点", datetime(2026, 11, 23, 16, 0)),
    ("今天", datetime(2026, 11, 23, 18, 0)),
    ("明天", datetime(2026, 11, 24, 18, 0)),
    ("明天上午10点", datetime(2026, 11, 24, 10, 0)),
    ("明天17:00", datetime(2026, 11, 24, 17, 0)),
    ("后天", datetime(2026, 11, 25, 18, 0)),
    ("大后天", datetime(2026, 11, 26, 18, 0)),
    ("30日", datetime(2026, 11, 30, 18, 0)),
    ("5号", datetime(2026, 12, 5, 18, 0)),  # the 5th has passed this month: next month
    ("月底", datetime(2026, 11, 30, 18, 0)),
    ("下月底", datetime(2026, 12, 31, 18, 0)),
    ("1月5日", datetime(2027, 1, 5, 18, 0)),  # written in November: next January
    ("2027-01-05 09:00", datetime(2027, 1, 5, 9, 0)),
]

ERRORS = [
    ("", "unparseable"),
    ("尽快", "unparseable"),
    ("下个月吧", "unparseable"),
    ("11月30日很晚", "unparseable"),
    ("1900-01-01", "past"),
    ("2026-11-20", "past"),
    ("今天上午9点", "past"),
    ("11月20日", "past"),
    ("2026-02-30", "invalid_date"),
    ("13月1日", "invalid_date"),
    ("11月31日", "invalid_date"),
    ("11月30日25点", "invalid_date"),
    ("32号", "invalid_date"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_deadline_expressions(text, expected):
    assert parse_deadline(text, NOW) == expected


@pytest.mark.parametrize(("text", "code"), ERRORS)
def test_bad_deadlines(text, code):
    with pytest.raises(DeadlineError) as err:
        parse_deadline(text, NOW)
    assert err.value.code == code


def test_table_is_big_enough():
    assert len(CASES) + len(ERRORS) >= 40
