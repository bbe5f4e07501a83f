"""The one task that delivers the outbox.

Rules (DESIGN §8):
* In order per target: a target's next message waits until the one before it
  is settled.
* At most once: a row is marked `sending` (committed) before its API call. It
  is re-sent only when the IM side certainly did not take it (`down`: nothing
  connected; `failed`: it answered with an error). A timeout, a broken
  connection after the request went out, or a crash during the call (rows
  still `sending` at start-up) make it `unknown`: logged, listed by
  `xinxibot outbox`, never re-sent automatically. OneBot's `status: async`
  counts as delivered (the implementation accepted it).
* Retried with exponential backoff (2 s doubling up to 5 min); a row still
  undelivered after `max_age` is dropped with a log line.
* Rate-limited per target with a token bucket (rate_per_minute, burst 5),
  and per QQ account to about one message per `account_interval` with jitter
  (风控: an account that sends faster is silently restricted); rate_per_minute
  = 0 lifts both. Consecutive short mergeable messages to one group go out as
  one message.
* Low-priority rows (help, unknown-command answers, refusals, anything sent
  to a stranger) go after the normal rows of their target and leave
  LOW_RESERVE tokens of its bucket to them, so a flood of them never delays
  a receipt; they are dropped silently when older than LOW_MAX_AGE or
  beyond LOW_MAX_PENDING waiting for one target.
* Several processes on one database (bot/cluster.py): a sender with an
  `account` delivers only that account's rows (and rows of no account); a row
  is claimed by its `pending` -> `sending` update, so two senders never send
  the same row. A group's rows all belong to the account serving it, so its
  rate limit holds across processes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Row, bindparam, select, true, update

from storage.db import Database
from storage.models import Outbox

from .clock import Clock
from .render import POST_LIMIT
from .transport import ApiResult, Transport

log = logging.getLogger(__name__)

BURST = 5
MAX_BACKOFF = timedelta(minutes=5)
MAX_FAILED_ATTEMPTS = 10
DRAIN_TIMEOUT = 10.0
# Oldest pending rows read per pass: enough for a full merged message per
# target; reading a long backlog whole each pass made delivery quadratic.
PASS_ROWS = 100
LOW = 1  # Outbox.priority of courtesy answers
OutboxRow = Row  # an outbox row as a pass reads it: Outbox's columns, by name
# Rows still pending become `sending`: another process's sender may have claimed some.
CLAIM = (
    update(Outbox)
    .where(Outbox.id.in_(bindparam("ids", expanding=True)), Outbox.status == "pending")
    .values(status="sending")
    .returning(Outbox.id)
)
LOW_MAX_AGE = timedelta(minutes=10)
LOW_MAX_PENDING = 10
# Tokens of a target's bucket that low rows leave untouched: a receipt arriving
# after a burst of courtesy answers still finds the group's budget.
LOW_RESERVE = 2


@dataclass
class _Bucket:
    tokens: float
    updated: datetime


class RateLimiter:
    """Token bucket per target on the injected clock."""

    def __init__(self, clock: Clock, per_minute: int, burst: int = BURST) -> None:
        self.clock, self.per_minute, self.burst = clock, per_minute, burst
        self.buckets: dict[tuple[str, int], _Bucket] = {}

    def _bucket(self, target: tuple[str, int]) -> _Bucket:
        now = self.clock.now()
        b = self.buckets.setdefault(target, _Bucket(float(self.burst), now))
        elapsed = max((now - b.updated).total_seconds(), 0.0)
        b.tokens = min(self.burst, b.tokens + elapsed * self.per_minute / 60)
        b.updated = now
        return b

    def wait(self, target: tuple[str, int], reserve: int = 0) -> float:
        """Seconds until `target` may receive a message while `reserve` tokens stay (0: now)."""
        if self.per_minute <= 0:
            return 0.0
        b = self._bucket(target)
        need = 1 + reserve
        return 0.0 if b.tokens >= need else (need - b.tokens) * 60 / self.per_minute

    def take(self, target: tuple[str, int]) -> None:
        if self.per_minute > 0:
            self._bucket(target).tokens -= 1


class AccountPace:
    """At most one message per `interval` (times 0.75-1.25, at random) per QQ
    account, on the injected clock; an interval of 0 paces nothing."""

    def __init__(self, clock: Clock, interval: timedelta) -> None:
        self.clock, self.interval = clock, interval
        self.next_at: dict[int | None, datetime] = {}
        self._random = random.Random()

    def wait(self, self_id: int | None) -> float:
        """Seconds until the account may send (0: now)."""
        due = self.next_at.get(self_id)
        return max((due - self.clock.now()).total_seconds(), 0.0) if due else 0.0

    def take(self, self_id: int | None) -> None:
        if self.interval:
            self.next_at[self_id] = self.clock.now() + self.interval * self._random.uniform(
                0.75, 1.25
            )


def merge_segments(rows: list[OutboxRow]) -> list[dict]:
    """Several messages as one: their segments joined by line breaks."""
    merged: list[dict] = []
    for i, row in enumerate(rows):
        segs = json.loads(row.segments)
        if i:
            segs = [{"type": "text", "data": {"text": "\n"}}, *segs]
        for seg in segs:
            if merged and seg["type"] == "text" and merged[-1]["type"] == "text":
                merged[-1] = {
                    "type": "text",
                    "data": {"text": merged[-1]["data"]["text"] + seg["data"]["text"]},
                }
            else:
                merged.append(seg)
    return merged


def _text_len(row: OutboxRow) -> int:
    return sum(len(s["data"].get("text", "")) + 12 for s in json.loads(row.segments))


class Sender:
    def __init__(
        self,
        db: Database,
        transport: Transport,
        clock: Clock,
        rate_per_minute: int,
        max_age: timedelta = timedelta(hours=24),
        on_drop=None,
        account_interval: timedelta = timedelta(seconds=1),
        account: int | None = None,
    ) -> None:
        self.db, self.transport, self.clock = db, transport, clock
        self.account = account  # deliver only this account's messages (None: all)
        self.on_drop = on_drop  # async (dropped rows) -> None: tell the coordinators
        self.limiter = RateLimiter(clock, rate_per_minute)
        self.pace = AccountPace(clock, account_interval if rate_per_minute else timedelta(0))
        self.max_age = max_age
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._passes = 0  # delivery passes started
        self._quiet_pass = 0  # the last pass that found nothing to send now
        self._pass_done = asyncio.Condition()
        # Built once; plain rows (no ORM objects): a pass reads up to PASS_ROWS of them.
        self._pending = (
            select(*Outbox.__table__.columns)  # type: ignore[attr-defined]
            .where(Outbox.status == "pending", self._mine())
            .order_by(Outbox.priority, Outbox.id)
            .limit(PASS_ROWS)
        )

    def wake(self) -> None:
        self._wake.set()

    def _mine(self):
        """This sender's rows: its account's and those of no account (all without one)."""
        if self.account is None:
            return true()
        return (Outbox.self_id == self.account) | Outbox.self_id.is_(None)

    async def retry_now(self) -> None:
        """The IM side is back (a socket connected): end the backoff of waiting messages."""
        async with self.db.transaction(urgent=True) as s:
            await s.execute(
                update(Outbox)
                .where(
                    Outbox.status == "pending", Outbox.next_attempt_at.is_not(None), self._mine()
                )
                .values(next_attempt_at=None)
            )
        self.wake()

    async def start(self) -> None:
        """Rows left `sending` by a crash may have gone out: mark them unknown, then run."""
        async with self.db.transaction(urgent=True) as s:
            result = await s.execute(
                update(Outbox)
                .where(Outbox.status == "sending", self._mine())
                .values(status="unknown")
            )
        if result.rowcount:
            log.warning(
                "outbox: %d message(s) were in flight at the last stop; marked unknown",
                result.rowcount,
            )
        self._task = asyncio.create_task(self._run(), name="outbox-sender")

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Deliver what is due (bounded by `flush_timeout`), then stop."""
        self._stopping = True
        self.wake()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, flush_timeout)
            except TimeoutError:
                log.warning(
                    "outbox: not flushed within %s s at shutdown; the rest goes out after the restart",
                    flush_timeout,
                )
            self._task = None

    async def drained(self) -> None:
        """Wait until a pass that started after this call found nothing more to
        send now (used by tests and the sandbox; delivery itself never waits)."""
        start = self._passes
        self.wake()
        async with asyncio.timeout(DRAIN_TIMEOUT), self._pass_done:
            await self._pass_done.wait_for(lambda: self._quiet_pass > start)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._passes += 1
            number = self._passes
            try:
                delay = await self.deliver_due()
            except Exception:  # the sender must outlive a bad row or a DB hiccup
                log.exception("outbox delivery pass failed")
                delay = 1.0
            async with self._pass_done:
                if delay > 0:
                    self._quiet_pass = number
                self._pass_done.notify_all()
            if self._stopping and delay > 0:
                return
            if delay > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), min(delay, 1.0))
                except TimeoutError:
                    pass

    async def deliver_due(self) -> float:
        """One pass: send what may be sent now. Returns seconds until the next
        pass is useful (0: go again at once)."""
        now = self.clock.now()
        async with self.db.reader() as s:
            rows = (await s.execute(self._pending)).all()
        if not rows:
            return 60.0
        stale = [r for r in rows if now - r.created_at > self.max_age and r.priority != LOW]
        if stale:
            await self._drop(stale)
            return 0.0
        by_target: dict[tuple[str, int], list[OutboxRow]] = {}
        for row in rows:  # normal rows first, then low ones: each target's queue in that order
            by_target.setdefault((row.target_type, row.target_id), []).append(row)
        surplus = [r for queue in by_target.values() for r in _low_surplus(queue, now)]
        if surplus:
            await self._drop(surplus, tell=False)
            return 0.0
        batches: list[tuple[tuple[str, int], list[OutboxRow]]] = []
        wait = 60.0
        for target, queue in by_target.items():
            head = queue[0]  # a target's later messages wait for its first one
            if head.next_attempt_at is not None and head.next_attempt_at > now:
                wait = min(wait, (head.next_attempt_at - now).total_seconds())
                continue
            reserve = LOW_RESERVE if head.priority == LOW else 0
            w = max(self.limiter.wait(target, reserve), self.pace.wait(head.self_id))
            if w > 0:
                wait = min(wait, w)
                continue
            self.pace.take(head.self_id)  # the account's other targets wait their turn
            batches.append((target, self._batch(queue)))
        if batches:
            await asyncio.gather(*(self._send(t, b) for t, b in batches))
            return 0.0
        return wait

    @staticmethod
    def _batch(queue: list[OutboxRow]) -> list[OutboxRow]:
        first = queue[0]
        batch = [first]
        if first.target_type != "group" or not first.mergeable:
            return batch
        size = _text_len(first)
        for row in queue[1:]:
            if (
                not row.mergeable
                or row.self_id != first.self_id
                or size + _text_len(row) > POST_LIMIT
            ):
                break
            batch.append(row)
            size += _text_len(row)
        return batch

    async def _send(self, target: tuple[str, int], batch: list[OutboxRow]) -> None:
        # recorded before the call: a crash now means "unknown"; rows that
        # another process's sender claimed first are its own
        async with self.db.transaction(urgent=True) as s:
            claimed = set((await s.execute(CLAIM, {"ids": [r.id for r in batch]})).scalars())
        batch = [r for r in batch if r.id in claimed]
        if not batch:
            return
        kind, target_id = target
        message = merge_segments(batch)
        action, params = (
            ("send_group_msg", {"group_id": target_id, "message": message})
            if kind == "group"
            else ("send_private_msg", {"user_id": target_id, "message": message})
        )
        self.limiter.take(target)
        try:
            result = await self.transport.call(batch[0].self_id, action, params)
        except Exception as exc:  # a transport bug must not lose the row
            log.exception("transport raised on %s", action)
            result = ApiResult("unknown", None, repr(exc))
        await self._settle(batch, result)

    async def _settle(self, batch: list[OutboxRow], result: ApiResult) -> None:
        now = self.clock.now()
        ids = [r.id for r in batch]
        attempts = batch[0].attempts + 1
        if result.ok or result.status == "async":
            mid = result.data.get("message_id") if isinstance(result.data, dict) else None
            values = {
                "status": "sent",
                "sent_at": now,
                "attempts": attempts,
                "message_id": _int_or_none(mid),
            }
        elif result.status == "unknown":
            log.warning(
                "outbox %s: delivery unknown (%s); not re-sent automatically", ids, result.error
            )
            values = {"status": "unknown", "attempts": attempts, "last_error": result.error}
        elif result.status == "failed" and attempts >= MAX_FAILED_ATTEMPTS:
            log.error("outbox %s: failed %d times (%s); giving up", ids, attempts, result.error)
            values = {"status": "failed", "attempts": attempts, "last_error": result.error}
        else:
            backoff = min(timedelta(seconds=2 ** min(attempts, 12)), MAX_BACKOFF)
            log.info("outbox %s: %s (%s); retry in %s", ids, result.status, result.error, backoff)
            values = {
                "status": "pending",  # certainly not delivered: try again after the backoff
                "attempts": attempts,
                "last_error": result.error,
                "next_attempt_at": now + backoff,
            }
        async with self.db.transaction(urgent=True) as s:
            await s.execute(update(Outbox).where(Outbox.id.in_(ids)).values(**values))

    async def _drop(self, rows: list[OutboxRow], tell: bool = True) -> None:
        """Give up on `rows`; `tell`: the coordinators get a note (not for courtesy answers)."""
        ids = [r.id for r in rows]
        if tell:
            log.warning(
                "outbox: dropping %d message(s) older than %s: %s", len(ids), self.max_age, ids
            )
        else:
            log.info("outbox: dropping %d stale or surplus low-priority message(s)", len(ids))
        async with self.db.transaction(urgent=True) as s:
            await s.execute(update(Outbox).where(Outbox.id.in_(ids)).values(status="dropped"))
        if tell and self.on_drop is not None:
            await self.on_drop(rows)


def _low_surplus(queue: list[OutboxRow], now: datetime) -> list[OutboxRow]:
    """A target's low-priority rows to drop: too old, or the oldest beyond LOW_MAX_PENDING."""
    low = [r for r in queue if r.priority == LOW]
    old = [r for r in low if now - r.created_at > LOW_MAX_AGE]
    fresh = [r for r in low if now - r.created_at <= LOW_MAX_AGE]
    return old + fresh[: max(len(fresh) - LOW_MAX_PENDING, 0)]


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
