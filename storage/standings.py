"""Standings: per unit and period, from SQL aggregates over indexed columns.

No query here reads individual drafts into Python: each figure is one
GROUP BY over an index (pieces by first submission, adoptions, instructions
and points by date), and the loop in Python is over units only.

Counting rule: a piece (a draft and its revisions) counts once, in the period of
its first submission, through its live version, unless that is withdrawn or still
waiting for its file. A unit is in a period's figures when it existed during it
(added before the period's end, not retired before its start).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from .db import Database
from .models import Adoption, Draft, DraftStatus, Instruction, PointsEntry, Unit

LEVELS = ("county", "city", "province", "national")
NOT_COUNTED = (DraftStatus.withdrawn, DraftStatus.awaiting_file)


def counted() -> ColumnElement[bool]:
    """A draft that stands for its piece in every count: the live version, not withdrawn
    or waiting for its file."""
    return and_(Draft.live, Draft.status.not_in(NOT_COUNTED))


@dataclass(frozen=True)
class Period:
    kind: str  # week / month / quarter / year
    start: datetime
    end: datetime  # exclusive

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(days=1)).date()


def period_containing(kind: str, moment: datetime) -> Period:
    day = moment.date()
    if kind == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif kind == "month":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    elif kind == "quarter":
        start = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
        end = (start + timedelta(days=95)).replace(day=1)
    elif kind == "year":
        start, end = date(day.year, 1, 1), date(day.year + 1, 1, 1)
    else:
        raise ValueError(kind)
    return Period(
        kind,
        datetime.combine(start, datetime.min.time()),
        datetime.combine(end, datetime.min.time()),
    )


def previous(period: Period) -> Period:
    return period_containing(period.kind, period.start - timedelta(days=1))


def shown_until(period: Period, now: datetime) -> datetime:
    """The end of what a ranking or an export shows of `period`: up to now while it runs,
    the whole of it otherwise."""
    return min(period.end, now + timedelta(seconds=1)) if period.start <= now else period.end


@dataclass
class UnitStanding:
    unit_id: int
    name: str
    kind: str
    klass: str | None = None
    submitted: int = 0
    adopted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEVELS, 0))
    instructions: int = 0
    points: float = 0.0
    points_before: float | None = None  # at the comparison point, when there is one
    rank: int = 0
    previous_rank: int | None = None
    topics_missed: int = 0  # targeted 约稿 left unanswered (set for the yearly 评比)
    earned: float | None = None  # the points before a sanction zeroed them

    @property
    def adopted_total(self) -> int:
        return sum(self.adopted.values())

    @property
    def rank_change(self) -> int | None:
        """Places moved up since the comparison (negative: down)."""
        return None if self.previous_rank is None else self.previous_rank - self.rank


def _ranks(points: dict[int, float]) -> dict[int, int]:
    """Competition ranking by points: ties share a rank (并列), the next rank skips."""
    ordered = sorted(points.items(), key=lambda kv: -kv[1])
    ranks, last, rank = {}, None, 0
    for i, (unit_id, p) in enumerate(ordered, 1):
        if p != last:
            rank, last = i, p
        ranks[unit_id] = rank
    return ranks


def rank(
    rows: list[UnitStanding],
    group: Callable[[UnitStanding], str] | None = None,
    order: Sequence[str] = (),
) -> list[UnitStanding]:
    """Rank `rows` by points (and, where known, by the points at the comparison point),
    each `group` (a class) separately; sorted by group (in `order`), rank and name."""
    key = group or (lambda r: "")
    groups: dict[str, list[UnitStanding]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    for members in groups.values():
        now = _ranks({r.unit_id: r.points for r in members})
        before = (
            _ranks({r.unit_id: r.points_before for r in members})
            if all(r.points_before is not None for r in members)
            else None
        )
        for r in members:
            r.rank = now[r.unit_id]
            if before is not None:
                r.previous_rank = before[r.unit_id]
    position = {g: i for i, g in enumerate(order)}
    return sorted(rows, key=lambda r: (position.get(key(r), len(position)), key(r), r.rank, r.name))


async def standings(
    db: Database, start: datetime, end: datetime, compare_end: datetime | None = None
) -> list[UnitStanding]:
    """The figures in [start, end) of every unit that existed then, ranked by points; with
    `compare_end`, `previous_rank` is the rank over [start, compare_end) (the
    movement of a year-to-date ranking since the start of the week).

    The aggregates are independent reads of committed data: they run at once,
    each on its own pooled connection (WAL readers do not block each other)."""
    submitted = (
        select(Draft.unit_id, func.count())
        .where(Draft.piece_at >= start, Draft.piece_at < end, counted())
        .group_by(Draft.unit_id)
    )
    adopted = (
        select(Adoption.unit_id, Adoption.level, func.count())
        .where(Adoption.at >= start, Adoption.at < end, Adoption.revoked_at.is_(None))
        .group_by(Adoption.unit_id, Adoption.level)
    )
    instructions = (
        select(Instruction.unit_id, func.count())
        .where(Instruction.at >= start, Instruction.at < end)
        .group_by(Instruction.unit_id)
    )
    before = (
        case((PointsEntry.at < compare_end, PointsEntry.points), else_=0.0)
        if compare_end
        else literal(0.0)
    )
    points = (
        select(PointsEntry.unit_id, func.sum(PointsEntry.points), func.sum(before))
        .where(PointsEntry.at >= start, PointsEntry.at < end, PointsEntry.void.is_(False))
        .group_by(PointsEntry.unit_id)
    )
    existed = and_(Unit.created_at < end, or_(Unit.retired_at.is_(None), Unit.retired_at > start))
    units_q = select(Unit.id, Unit.name, Unit.kind, Unit.klass, existed).order_by(Unit.id)

    async def fetch(q):
        async with db.scan_reader() as s:
            return (await s.execute(q)).all()

    units, submitted, adopted, instructions, points = await asyncio.gather(
        fetch(units_q), fetch(submitted), fetch(adopted), fetch(instructions), fetch(points)
    )
    # a unit that did not exist in the period is left out, unless it has figures there
    with_figures = {row[0] for part in (submitted, adopted, instructions, points) for row in part}
    rows = {
        u: UnitStanding(u, name, kind, klass)
        for u, name, kind, klass, in_period in units
        if in_period or u in with_figures
    }
    for unit_id, n in submitted:
        if unit_id in rows:
            rows[unit_id].submitted = n
    for unit_id, level, n in adopted:
        if unit_id in rows:
            rows[unit_id].adopted[level] = n
    for unit_id, n in instructions:
        if unit_id in rows:
            rows[unit_id].instructions = n
    if compare_end is not None:
        for r in rows.values():
            r.points_before = 0.0
    for unit_id, p, b in points:
        if unit_id in rows:
            rows[unit_id].points = round(float(p), 2)
            if compare_end is not None:
                rows[unit_id].points_before = round(float(b), 2)
    return rank(list(rows.values()))


def has_data(rows: list[UnitStanding]) -> bool:
    return any(r.submitted or r.adopted_total or r.instructions or r.points for r in rows)


async def last_activity(
    s: AsyncSession, unit_ids: list[int], before: datetime, column: str
) -> dict[int, datetime | None]:
    """The last piece submitted (`column="draft"`) or adoption (`"adoption"`) before
    `before`, per unit."""
    if not unit_ids:
        return {}
    if column == "draft":
        q = select(Draft.unit_id, func.max(Draft.piece_at)).where(
            Draft.unit_id.in_(unit_ids), Draft.piece_at < before, counted()
        )
        group = Draft.unit_id
    else:
        q = select(Adoption.unit_id, func.max(Adoption.at)).where(
            Adoption.unit_id.in_(unit_ids), Adoption.at < before, Adoption.revoked_at.is_(None)
        )
        group = Adoption.unit_id
    found = dict((await s.execute(q.group_by(group))).all())
    return {u: found.get(u) for u in unit_ids}


async def units_created(s: AsyncSession, unit_ids: list[int]) -> dict[int, datetime]:
    return dict(
        (await s.execute(select(Unit.id, Unit.created_at).where(Unit.id.in_(unit_ids)))).all()
    )


async def weeks_without_submission(
    s: AsyncSession, unit_ids: list[int], week: Period
) -> dict[int, int]:
    """For units with no submission in `week`: how many weeks running, ending with it."""
    last = await last_activity(s, unit_ids, week.end, "draft")
    created = await units_created(s, unit_ids)
    out = {}
    for unit_id, when in last.items():
        since = (
            period_containing("week", when).end
            if when
            else period_containing("week", created[unit_id]).start
        )
        out[unit_id] = max((week.end - since).days // 7, 1)
    return out


async def months_without_adoption(
    s: AsyncSession, unit_ids: list[int], month: Period
) -> dict[int, int]:
    """Months running, ending with `month`, in which the unit had no adoption."""
    last = await last_activity(s, unit_ids, month.end, "adoption")
    created = await units_created(s, unit_ids)
    out = {}
    for unit_id, when in last.items():
        since = (
            period_containing("month", when).end
            if when
            else period_containing("month", created[unit_id]).start
        )
        months = (month.end.year - since.year) * 12 + month.end.month - since.month
        out[unit_id] = max(months, 0)
    return out


async def topics_missed(s: AsyncSession, start: datetime, end: datetime) -> dict[int, int]:
    """Per unit: targeted 约稿 whose deadline in [start, end) passed unanswered (the
    `topic_missed` points rows, written even when the rule file gives 0 points)."""
    q = (
        select(PointsEntry.unit_id, func.count())
        .where(
            PointsEntry.kind == "topic_missed",
            PointsEntry.at >= start,
            PointsEntry.at < end,
            PointsEntry.void.is_(False),
        )
        .group_by(PointsEntry.unit_id)
    )
    return dict((await s.execute(q)).all())


async def urgent_pieces(
    s: AsyncSession, start: datetime, end: datetime
) -> dict[int, tuple[int, int]]:
    """Per unit: urgent (#紧急) pieces first submitted in [start, end), and how many of
    them were recorded late (/迟报 on any of their versions)."""
    version = aliased(Draft)
    late = exists().where(
        PointsEntry.draft_id == version.id,
        PointsEntry.kind == "urgent_late",
        PointsEntry.void.is_(False),
        func.coalesce(version.piece_id, version.id) == func.coalesce(Draft.piece_id, Draft.id),
    )
    q = (
        select(Draft.unit_id, func.count(), func.sum(case((late, 1), else_=0)))
        .where(Draft.urgent, Draft.piece_at >= start, Draft.piece_at < end, counted())
        .group_by(Draft.unit_id)
    )
    return {unit_id: (n, int(k or 0)) for unit_id, n, k in (await s.execute(q)).all()}
