"""Per-person flood guard for people without a role.

A stranger (no member row, or a retired officer) gets at most `limit`
answered events in any `window`; past that the person's events are dropped
before any database work until the window is over, and the burst is logged
once. Members are never throttled here: their courtesy answers are low
priority in the outbox instead (bot.sender), so they cannot delay receipts.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import datetime, timedelta

log = logging.getLogger(__name__)

STRANGER_LIMIT = 5  # answered events per window
STRANGER_WINDOW = timedelta(minutes=1)
MAX_TRACKED = 10_000  # people remembered at once; the idle ones are forgotten first


class StrangerThrottle:
    def __init__(self, limit: int = STRANGER_LIMIT, window: timedelta = STRANGER_WINDOW) -> None:
        self.limit, self.window = limit, window
        self.recent: dict[int, deque[datetime]] = {}
        self.muted_until: dict[int, datetime] = {}

    def allows(self, user_id: int, now: datetime) -> bool:
        """False while the person is muted: drop the event unread."""
        until = self.muted_until.get(user_id)
        if until is None:
            return True
        if now < until:
            return False
        del self.muted_until[user_id]
        return True

    def count(self, user_id: int, now: datetime) -> None:
        """An event of a person without a role is being answered."""
        times = self.recent.setdefault(user_id, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        times.append(now)
        if len(times) >= self.limit:
            self.muted_until[user_id] = times[0] + self.window
            times.clear()
            log.warning(
                "%s sent %d commands within %s without being registered: ignored until %s",
                user_id,
                self.limit,
                self.window,
                self.muted_until[user_id],
            )
        if len(self.recent) > MAX_TRACKED:
            self._forget_idle(now)

    def _forget_idle(self, now: datetime) -> None:
        for user_id in [u for u, t in self.recent.items() if not t or now - t[-1] >= self.window]:
            del self.recent[user_id]
        for user_id in [u for u, until in self.muted_until.items() if until <= now]:
            del self.muted_until[user_id]
