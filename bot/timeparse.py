"""Chinese deadline expressions: "11月30日下午5点", "周五", "明天", "2026-11-30 17:00"...

A date without a time means 18:00 that day. `parse_deadline` returns a naive
local datetime in the future or raises DeadlineError with a code the
template explains (unparseable, invalid_date, past).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

DEFAULT_TIME = time(18, 0)

_FULLWIDTH = str.maketrans(
    {chr(0xFF10 + i): str(i) for i in range(10)} | {"：": ":", "－": "-", "／": "/", "　": " "}
)
_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_WEEKDAYS = {
    "一": 0,
    "二": 1,
    "三": 2,
    "四": 3,
    "五": 4,
    "六": 5,
    "日": 6,
    "天": 6,
    "1": 0,
    "2": 1,
    "3": 2,
    "4": 3,
    "5": 4,
    "6": 5,
    "7": 6,
}
_RELATIVE_DAYS = {"今天": 0, "今日": 0, "明天": 1, "明日": 1, "后天": 2, "大后天": 3}

_ISO = re.compile(r"^(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?:日)?")
_CN_YMD = re.compile(r"^(?P<y>\d{4})年(?P<m>\d{1,2})月(?P<d>\d{1,2})[日号]?")
_MD = re.compile(r"^(?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?![\d:])")
_CN_MD = re.compile(r"^(?P<m>\d{1,2})月(?P<d>\d{1,2})[日号]?")
_CN_D = re.compile(r"^(?P<d>\d{1,2})[日号]")
_WEEK = re.compile(
    r"^(?P<which>下下|下|本|这)?(?:个)?(?:周|星期|礼拜)(?P<wd>[一二三四五六日天1-7])"
)
_MONTH_END = re.compile(r"^(?P<next>下)?(?:个)?月底")

_PERIOD = r"(?P<period>上午|早上|早晨|中午|下午|晚上|傍晚|凌晨)?"
_CLOCK = re.compile(r"^" + _PERIOD + r"(?P<h>\d{1,2}):(?P<min>\d{2})$")
_CN_CLOCK = re.compile(
    r"^"
    + _PERIOD
    + r"(?P<h>\d{1,2})(?:点|时)(?:(?P<half>半)|(?P<min>\d{1,2})分?)?(?:前|之前|以前)?$"
)
_PERIOD_ONLY = re.compile(r"^(?P<period>上午|中午|下午|晚上|下班前)$")


class DeadlineError(ValueError):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code  # unparseable / invalid_date / past


def _cn_number(text: str) -> str:
    """Chinese numerals up to 31 in dates and hours ("十二月五日下午五点") as digits."""

    def convert(m: re.Match) -> str:
        s = m.group(0)
        if "十" not in s:
            return "".join(str(_CN_DIGITS[c]) for c in s)
        tens, _, ones = s.partition("十")
        return str((_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0))

    # only numerals followed by a date/time unit, so 周五 / 星期日 stay words
    return re.sub(r"[零〇一二两三四五六七八九十]+(?=[月日号点时分])", convert, text)


def normalize(text: str) -> str:
    text = text.translate(_FULLWIDTH).strip()
    text = _cn_number(text)
    return re.sub(r"\s+", " ", text)


def _apply_period(hour: int, period: str | None) -> int:
    if period in ("下午", "晚上", "傍晚") and hour < 12:
        return hour + 12
    if period == "中午" and hour < 6:
        return hour + 12
    return hour


def _parse_time(text: str) -> time | None:
    """The time-of-day part; None if there is none; DeadlineError if it is nonsense."""
    text = re.sub(r"(?:之前|以前|前)$", "", text.strip()).strip()
    if not text:
        return None
    m = _CLOCK.match(text) or _CN_CLOCK.match(text)
    if m:
        hour = _apply_period(int(m.group("h")), m.group("period"))
        minute = 30 if m.groupdict().get("half") else int(m.group("min") or 0)
        if hour > 23 or minute > 59:
            raise DeadlineError("invalid_date")
        return time(hour, minute)
    m = _PERIOD_ONLY.match(text)
    if m:
        return {
            "上午": time(12, 0),
            "中午": time(12, 0),
            "下午": time(18, 0),
            "晚上": time(21, 0),
            "下班前": time(18, 0),
        }[m.group("period")]
    raise DeadlineError("unparseable")


def _date(y: int, m: int, d: int) -> date:
    try:
        return date(y, m, d)
    except ValueError:
        raise DeadlineError("invalid_date") from None


def _parse_day(text: str, today: date) -> tuple[date, str]:
    """The date part and the rest of the text."""
    for word, offset in sorted(_RELATIVE_DAYS.items(), key=lambda kv: -len(kv[0])):
        if text.startswith(word):
            return today + timedelta(days=offset), text[len(word) :]
    m = _ISO.match(text) or _CN_YMD.match(text)
    if m:
        return _date(int(m["y"]), int(m["m"]), int(m["d"])), text[m.end() :]
    m = _CN_MD.match(text) or _MD.match(text)
    if m:
        day = (
            _date(today.year, int(m["m"]), int(m["d"]))
            if _valid_md(int(m["m"]), int(m["d"]), today.year)
            else None
        )
        if day is None:
            raise DeadlineError("invalid_date")
        if day < today - timedelta(days=60):  # "1月5日" written in December means next January
            day = _date(today.year + 1, day.month, day.day)
        return day, text[m.end() :]
    m = _CN_D.match(text)
    if m:
        day_no = int(m["d"])
        if not 1 <= day_no <= 31:
            raise DeadlineError("invalid_date")
        month, year = today.month, today.year
        if day_no < today.day:
            month, year = (1, year + 1) if month == 12 else (month + 1, year)
        return _date(year, month, day_no), text[m.end() :]
    m = _WEEK.match(text)
    if m:
        target = _WEEKDAYS[m["wd"]]
        which = m["which"]
        if which in ("本", "这"):
            day = today + timedelta(days=target - today.weekday())
        elif which in ("下", "下下"):
            monday = (
                today - timedelta(days=today.weekday()) + timedelta(days=7 if which == "下" else 14)
            )
            day = monday + timedelta(days=target)
        else:  # the next one after today
            ahead = (target - today.weekday()) % 7 or 7
            day = today + timedelta(days=ahead)
        return day, text[m.end() :]
    m = _MONTH_END.match(text)
    if m:
        first = (today.replace(day=1) + timedelta(days=32 if m["next"] else 0)).replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        return last, text[m.end() :]
    raise DeadlineError("unparseable")


def _valid_md(month: int, day: int, year: int) -> bool:
    for y in (year, year + 1):
        try:
            date(y, month, day)
            return True
        except ValueError:
            continue
    return False


def is_deadline_text(text: str) -> bool:
    """Whether `text` is wholly a date (and time) expression, possibly an impossible or past
    one: what may stand for a deadline without the word 截止."""
    text = normalize(text)
    try:
        _, rest = _parse_day(text, date(2000, 1, 1))
        _parse_time(rest)
    except DeadlineError as exc:
        return exc.args[0] != "unparseable"
    return True


def parse_deadline(text: str, now: datetime) -> datetime:
    """A deadline in the future from a Chinese or ISO expression."""
    text = normalize(text)
    if not text:
        raise DeadlineError("unparseable")
    day, rest = _parse_day(text, now.date())
    at = _parse_time(rest) or DEFAULT_TIME
    when = datetime.combine(day, at)
    if when <= now:
        raise DeadlineError("past")
    return when
