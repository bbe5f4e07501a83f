"""The injected clock. All stored and compared times are naive local times
in the configured time zone (China has no daylight saving time), so SQL
period boundaries are plain comparisons.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


class Clock:
    """Wall clock in one time zone that tests and the sandbox can move.

    Without `frozen_at` it follows real time plus an offset (the sandbox's
    fast-forward); with it, time stands still until `advance` or `set`.
    """

    def __init__(self, tz: ZoneInfo, frozen_at: datetime | None = None) -> None:
        self.tz = tz
        self._frozen = frozen_at
        self._offset = timedelta()

    def now(self) -> datetime:
        base = (
            self._frozen if self._frozen is not None else datetime.now(self.tz).replace(tzinfo=None)
        )
        return base + self._offset

    def aware_now(self) -> datetime:
        return self.now().replace(tzinfo=self.tz)

    def advance(self, delta: timedelta) -> datetime:
        self._offset += delta
        return self.now()

    def set(self, when: datetime) -> None:
        """Jump to `when` (naive local time)."""
        if self._frozen is not None:
            self._frozen, self._offset = when, timedelta()
        else:
            self._offset = when - datetime.now(self.tz).replace(tzinfo=None)
