"""Standings: per unit and period, from the rollups (storage/rollup.py).

No query here reads individual drafts into Python: the figures of a period are
sums of per unit and day, month or year rollup rows and the raw rows of partial
days, and the loop in Python is over units only. `last_activity` and
`urgent_pieces` stay on the raw rows: the first reads the newest index entry per
unit (and level), the second only the period's urgent pieces.

Counting rule: a piece (a draft and its revisions) counts once, in the period of
its first submission, through its live version, unless that is withdrawn or still
waiting for its file. A unit is in a period's figures when it existed during it
(added before the period's end, not retired before its start).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, exists, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from . import rollup
from .db import Database
from .models import Adoption, Draft, PointsEntry, Unit, UnitKind
from .rollup import LEVELS, NOT_COUNTED


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
    db: Database,
    start: datetime,
    end: datetime,
    compare_end: datetime | None = None,
    rollups: bool = True,
) -> list[UnitStanding]:
    """The figures in [start, end) of every unit that existed then, ranked by points; with
    `compare_end`, `previous_rank` is the rank over [start, compare_end) (the
    movement of a year-to-date ranking since the start of the week).

    The figures come from the rollups (storage/rollup.py: O(units), not O(drafts));
    `rollups=False` counts the raw rows instead, the reference the tests compare with.
    One statement, the units joined with their figures, on a scan connection (off
    the event-loop thread; WAL readers do not block the writer)."""
    dialect = db.engine.dialect.name
    joins, exprs, params = rollup.figures_sql(dialect, rollup.range_plan(start, end, rollups), "t_")
    # the points at the comparison point: those of [start, cut)
    cut = None if compare_end is None else min(max(compare_end, start), end)
    if cut is not None:
        more, before, extra = rollup.figures_sql(
            dialect, rollup.range_plan(start, cut, rollups), "b_"
        )
        joins, params = f"{joins} {more}", params | extra
        exprs += [before[POINTS], before[POINTS_ROWS]]
    existed = "unit.created_at < :end AND (unit.retired_at IS NULL OR unit.retired_at > :start)"
    q = text(
        f"SELECT unit.id, unit.name, unit.kind, unit.klass, {existed}, {', '.join(exprs)}"
        f" FROM unit {joins} ORDER BY unit.id"
    ).bindparams(*rollup.binds(params | {"start": start, "end": end}))
    async with db.scan_engine.connect() as conn:  # one statement, off the event loop
        result = (await conn.execute(q)).all()
    rows = []
    for u, name, kind, klass, in_period, *f in result:
        # a unit that did not exist in the period is left out, unless it has figures there
        if not in_period and not any(f[i] for i in COUNTS):
            continue
        row = UnitStanding(
            u, name, UnitKind(kind), klass, submitted=int(f[SUBMITTED]),
            adopted={level: int(f[i]) for level, i in ADOPTED},
            instructions=int(f[INSTRUCTIONS]), points=_points(f[POINTS], f[POINTS_ROWS]),
        )  # fmt: skip
        if cut is not None:
            row.points_before = _points(f[-2], f[-1])
        rows.append(row)
    return rank(rows)


_at = rollup.FIGURES.index
SUBMITTED, INSTRUCTIONS, POINTS_ROWS = _at("submitted"), _at("instructions"), _at("points_rows")
ADOPTED = [(level, _at(f"adopted_{level}")) for level in LEVELS]
COUNTS = [i for i, f in enumerate(rollup.FIGURES) if f != "points"]  # any of them: figures
POINTS = rollup.POINTS


def _points(total: float | None, entries: int | None) -> float:
    """Points as shown: 2 decimals; 0 without entries (a rollup's +x-x can leave 1e-17),
    never -0."""
    return round(float(total), 2) + 0.0 if entries else 0.0


def has_data(rows: list[UnitStanding]) -> bool:
    return any(r.submitted or r.adopted_total or r.instructions or r.points for r in rows)


async def last_activity(
    s: AsyncSession, unit_ids: list[int], before: datetime, column: str
) -> dict[int, datetime | None]:
    """The last piece submitted (`column="draft"`) or adoption (`"adoption"`) before
    `before`, per unit: per unit (and level) the newest entry of its date index, read
    backwards from `before` (one index seek per unit, whatever its history)."""
    if not unit_ids:
        return {}
    if column == "draft":
        latest = [
            select(Draft.piece_at)
            .where(Draft.unit_id == Unit.id, Draft.piece_at < before, counted())
            .order_by(Draft.piece_at.desc())
            .limit(1)
            .scalar_subquery()
        ]
    else:
        latest = [
            select(Adoption.at)
            .where(
                Adoption.unit_id == Unit.id,
                Adoption.level == level,
                Adoption.at < before,
                Adoption.revoked_at.is_(None),
            )
            .order_by(Adoption.at.desc())
            .limit(1)
            .scalar_subquery()
            for level in LEVELS
        ]
    q = select(Unit.id, *latest).where(Unit.id.in_(unit_ids))
    found = {
        u: max((w for w in when if w is not None), default=None)
        for u, *when in (await s.execute(q)).all()
    }
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


async def topics_missed(db: Database, start: datetime, end: datetime) -> dict[int, int]:
    """Per unit: targeted 约稿 whose deadline in [start, end) passed unanswered (the
    `topic_missed` points rows, written even when the rule file gives 0 points)."""
    i = rollup.FIGURES.index("topics_missed")
    return {u: int(f[i]) for u, f in (await rollup.totals(db, start, end)).items() if f[i]}


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
