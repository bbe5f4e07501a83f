"""Working days and quiet hours: when the bot may post by itself.

This is the only module that calls `chinese_calendar` (the State Council
holiday arrangement with 调休 make-up days). Config lists override it; for a
year the installed package does not cover, Mon-Fri plus the config lists is
used, with one warning per year.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta

import chinese_calendar

log = logging.getLogger(__name__)

# When a reminder must move before a deadline, it goes out at this time of the
# last working day before (an office-hours time, outside any quiet hours).
FALLBACK_SEND_TIME = time(17, 0)


class WorkCalendar:
    def __init__(
        self, holidays: list[str] | None = None, workdays: list[str] | None = None
    ) -> None:
        self.holidays = {date.fromisoformat(d) for d in holidays or []}
        self.workdays = {date.fromisoformat(d) for d in workdays or []}
        self._warned_years: set[int] = set()

    def is_workday(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            if day.year not in self._warned_years:
                self._warned_years.add(day.year)
                log.warning(
                    "chinese-calendar has no holiday arrangement for %d: using Mon-Fri plus [calendar] "
                    "holidays/workdays; update the package when the State Council publishes it",
                    day.year,
                )
            return day.weekday() < 5

    def covers(self, year: int) -> bool:
        """Whether the installed package knows the official arrangement of `year`."""
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def next_workday(self, day: date) -> date:
        """`day` itself if it is a working day, else the next one."""
        while not self.is_workday(day):
            day += timedelta(days=1)
        return day

    def previous_workday(self, day: date) -> date:
        while not self.is_workday(day):
            day -= timedelta(days=1)
        return day

    def workdays_between(self, start: date, end: date) -> int:
        """Working days in [start, end)."""
        return sum(
            1 for i in range((end - start).days) if self.is_workday(start + timedelta(days=i))
        )


class QuietHours:
    """A daily window (e.g. 21:00-08:00) in which nothing is posted by schedule."""

    def __init__(self, spec: str) -> None:
        if not spec:
            self.start = self.end = None
            return
        a, b = spec.split("-")
        self.start, self.end = time.fromisoformat(a), time.fromisoformat(b)

    def contains(self, moment: datetime) -> bool:
        if self.start is None:
            return False
        t = moment.time()
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def end_after(self, moment: datetime) -> datetime:
        """The end of the quiet window `moment` is in."""
        end = datetime.combine(moment.date(), self.end)
        return end if end > moment else end + timedelta(days=1)


class PostingTimes:
    """Shifts scheduled posts onto working days outside quiet hours."""

    def __init__(self, calendar: WorkCalendar, quiet: QuietHours) -> None:
        self.calendar, self.quiet = calendar, quiet

    def allowed(self, moment: datetime) -> bool:
        return self.calendar.is_workday(moment.date()) and not self.quiet.contains(moment)

    def next_allowed(self, moment: datetime) -> datetime:
        """`moment` if a post may go out then, else the next minute one may."""
        for _ in range(400):
            if self.quiet.contains(moment):
                moment = self.quiet.end_after(moment)
                continue
            if not self.calendar.is_workday(moment.date()):
                day = self.calendar.next_workday(moment.date())
                moment = datetime.combine(day, self.quiet.end or time(0, 0))
                continue
            return moment
        raise RuntimeError("no allowed posting time within 400 steps")  # pragma: no cover

    def last_before(self, moment: datetime) -> datetime:
        """`moment` if a post may go out then, else the last working time before it: 17:00
        of the same working day when it falls in the evening, else of the working day
        before (a Sunday's or an early morning's moment: the last working day's 17:00)."""
        if self.allowed(moment):
            return moment
        day = moment.date()
        if not (self.calendar.is_workday(day) and moment.time() >= FALLBACK_SEND_TIME):
            day = self.calendar.previous_workday(day - timedelta(days=1))
        return datetime.combine(day, FALLBACK_SEND_TIME)

    def before(self, moment: datetime, deadline: datetime, now: datetime) -> datetime | None:
        """The time to send a reminder due at `moment` of a `deadline`: the last working time
        before `moment` (so reminders of one deadline stay apart); when that has passed, the
        next posting time if it still comes before the deadline; else None."""
        back = self.last_before(moment)
        if back > now:
            return back
        forward = self.next_allowed(moment)
        return forward if now < forward < deadline else None
