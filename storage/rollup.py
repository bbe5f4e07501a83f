"""Rollups: per unit and day, month and year, the figures the standings sum.

A rollup row holds, for one unit and one bucket (a day, a month or a year), what
the standings count of the rows dated in it: pieces submitted (by `piece_at`, the
counting rule of `storage.standings`), adoptions per level (not revoked, by
`at`), instructions, the non-void points (their sum, how many rows, how many
`topic_missed`). Any range [start, end) is then exact (`plan`): signed sums of
whole years, months and days, and of the raw rows of its partial days (indexed by
date). The year to date reads about one row per unit, a week seven days' rows,
whatever the number of drafts.

Kept by database triggers on draft, adoption, instruction and points (SQLite and
PostgreSQL alike), chosen over marking keys in SQLAlchemy session events because:
* every write reaches them: the ORM, bulk `update()`, raw SQL of migrations,
  imports and the benchmarks' loaders, a hand-made fix in a SQL shell;
* they run inside the statement that changes the row, so a rollback, of the
  transaction or of one event's SAVEPOINT, takes the rollup change with it; no
  counter lives in Python;
* they add deltas (`n = n + 1`) under the row lock, so two PostgreSQL
  transactions touching one bucket at once both count (recomputing a bucket from
  the raw rows would lose the other's uncommitted row under READ COMMITTED).

`expected_rows_sql` is the same rules computed from the raw rows: the migration
fills the table with it, `xinxibot db verify` compares with it, `--repair` and
the benchmark's loader rewrite the table from it. Changing what a rollup holds
means a new migration that drops and recreates the triggers and refills.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import Date, DateTime, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import Database
from .models import DraftStatus

LEVELS = ("county", "city", "province", "national")
# a draft that stands for its piece: the live version, not withdrawn or waiting for its file
NOT_COUNTED = (DraftStatus.withdrawn, DraftStatus.awaiting_file)
FIGURES = (
    "submitted",
    *(f"adopted_{level}" for level in LEVELS),
    "instructions",
    "points",
    "points_rows",
    "topics_missed",
)
POINTS = FIGURES.index("points")
DAY, MONTH, YEAR = "day", "month", "year"
SPANS = (DAY, MONTH, YEAR)
TOLERANCE = 1e-6  # points are floats summed in another order: equal up to this


@dataclass(frozen=True)
class Source:
    """A table the rollups summarise: the column that dates a row, when the row counts,
    and what it adds to each figure. `{r}` stands for the row (NEW, OLD or the table)."""

    table: str
    at: str
    counts: str
    adds: dict[str, str]
    watched: tuple[str, ...]  # the columns besides unit_id and `at` the figures depend on


_not_counted = ", ".join(f"'{s.value}'" for s in NOT_COUNTED)
SOURCES = (
    Source("draft", "piece_at", f"{{r}}.live AND {{r}}.status NOT IN ({_not_counted})",
           {"submitted": "1"}, ("live", "status")),
    Source("adoption", "at", "{r}.revoked_at IS NULL",
           {f"adopted_{lv}": f"CASE WHEN {{r}}.level = '{lv}' THEN 1 ELSE 0 END" for lv in LEVELS},
           ("level", "revoked_at")),
    Source("instruction", "at", "TRUE", {"instructions": "1"}, ()),
    Source("points", "at", "NOT {r}.void",
           {"points": "{r}.points", "points_rows": "1",
            "topics_missed": "CASE WHEN {r}.kind = 'topic_missed' THEN 1 ELSE 0 END"},
           ("void", "points", "kind")),
)  # fmt: skip


def _bucket(dialect: str, span: str, expr: str) -> str:
    """The first day of the `span` holding the moment `expr`, as the dialect stores dates."""
    if dialect == "sqlite":
        return f"date({expr})" if span == DAY else f"date({expr}, 'start of {span}')"
    return f"CAST(date_trunc('{span}', {expr}) AS DATE)"


def _values(source: Source, r: str, sign: str = "") -> list[str]:
    return [f"{sign}({source.adds[f].format(r=r)})" if f in source.adds else "0" for f in FIGURES]


def _contributions(dialect: str, between: tuple[str, str] | None = None, sign: int = 1) -> str:
    """Every counted row of the four tables as (unit, its buckets, figures...) times
    `sign`; `between` (two bind parameter names): only rows dated in that range."""
    parts = []
    for s in SOURCES:
        t = s.table
        where = s.counts.format(r=t)
        buckets = ""
        if between is not None:
            where += f" AND {t}.{s.at} >= :{between[0]} AND {t}.{s.at} < :{between[1]}"
        else:
            buckets = "".join(
                f"{_bucket(dialect, span, f'{t}.{s.at}')} AS in_{span}, " for span in SPANS
            )
        values = _values(s, t, "" if sign > 0 else "-")
        parts.append(
            f"SELECT {t}.unit_id AS unit_id, {buckets}"
            + ", ".join(f"{v} AS {f}" for v, f in zip(values, FIGURES, strict=True))
            + f" FROM {t} WHERE {where}"
        )
    return " UNION ALL ".join(parts)


def _sums() -> str:
    return ", ".join(f"sum({f}) AS {f}" for f in FIGURES)


def expected_rows_sql(dialect: str) -> str:
    """The rollup rows as the raw rows give them: (span, bucket, unit_id, figures...)."""
    c = _contributions(dialect)
    return " UNION ALL ".join(
        f"SELECT '{span}' AS span, in_{span} AS bucket, unit_id, {_sums()} FROM ({c}) AS c"
        f" GROUP BY unit_id, in_{span}"
        for span in SPANS
    )


def rebuild_statements(dialect: str) -> list[str]:
    """Rewrite the rollup table from the raw rows (the migration's fill, `--repair`)."""
    return [
        "DELETE FROM rollup",
        f"INSERT INTO rollup (span, bucket, unit_id, {', '.join(FIGURES)}) "
        + expected_rows_sql(dialect),
    ]


# ------------------------------------------------------------------ triggers


def _upsert(dialect: str, s: Source, r: str, sign: str) -> str:
    """Add (`sign` "") or take away ("-") row `r`'s figures in its day, month and year rows."""
    when = f"{r}.{s.at}"
    buckets = " ".join(f"WHEN '{span}' THEN {_bucket(dialect, span, when)}" for span in SPANS)
    spans = " UNION ALL ".join(f"SELECT '{span}'" + (" AS span" if i == 0 else "")
                               for i, span in enumerate(SPANS))  # fmt: skip
    return (
        f"INSERT INTO rollup (span, bucket, unit_id, {', '.join(FIGURES)}) "
        f"SELECT spans.span, CASE spans.span {buckets} END, {r}.unit_id, "
        f"{', '.join(_values(s, r, sign))} FROM ({spans}) AS spans "
        f"WHERE {s.counts.format(r=r)} "
        "ON CONFLICT (span, bucket, unit_id) DO UPDATE SET "
        + ", ".join(f"{f} = rollup.{f} + excluded.{f}" for f in s.adds)
    )


def _changed(dialect: str, s: Source) -> str:
    differ = "IS NOT" if dialect == "sqlite" else "IS DISTINCT FROM"
    return " OR ".join(f"OLD.{c} {differ} NEW.{c}" for c in ("unit_id", s.at, *s.watched))


def trigger_statements(dialect: str) -> list[str]:
    out = []
    for s in SOURCES:
        t, columns = s.table, ", ".join(("unit_id", s.at, *s.watched))
        if dialect == "sqlite":
            out += [
                f"CREATE TRIGGER rollup_{t}_insert AFTER INSERT ON {t} BEGIN "
                f"{_upsert(dialect, s, 'NEW', '')}; END",
                f"CREATE TRIGGER rollup_{t}_delete AFTER DELETE ON {t} BEGIN "
                f"{_upsert(dialect, s, 'OLD', '-')}; END",
                f"CREATE TRIGGER rollup_{t}_update AFTER UPDATE OF {columns} ON {t} "
                f"WHEN {_changed(dialect, s)} BEGIN "
                f"{_upsert(dialect, s, 'OLD', '-')}; {_upsert(dialect, s, 'NEW', '')}; END",
            ]
        else:
            out += [
                f"CREATE FUNCTION rollup_{t}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF TG_OP IN ('UPDATE', 'DELETE') THEN {_upsert(dialect, s, 'OLD', '-')}; END IF; "
                f"IF TG_OP IN ('UPDATE', 'INSERT') THEN {_upsert(dialect, s, 'NEW', '')}; END IF; "
                "RETURN NULL; END $$",
                f"CREATE TRIGGER rollup_{t}_change AFTER INSERT OR DELETE ON {t} "
                f"FOR EACH ROW EXECUTE FUNCTION rollup_{t}()",
                f"CREATE TRIGGER rollup_{t}_update AFTER UPDATE OF {columns} ON {t} "
                f"FOR EACH ROW WHEN ({_changed(dialect, s)}) EXECUTE FUNCTION rollup_{t}()",
            ]
    return out


def drop_trigger_statements(dialect: str) -> list[str]:
    out = []
    for s in SOURCES:
        t = s.table
        if dialect == "sqlite":
            out += [
                f"DROP TRIGGER IF EXISTS rollup_{t}_{op}" for op in ("insert", "delete", "update")
            ]
        else:
            out += [f"DROP FUNCTION IF EXISTS rollup_{t}() CASCADE"]
    return out


# ------------------------------------------------------------------ reading


Totals = dict[int, list[float]]  # unit id -> figures, in FIGURES order


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.date(), time.min)


def _start(span: str, day: date) -> date:
    """The first day of the `span` (month, year) holding `day`."""
    return day.replace(day=1) if span == MONTH else date(day.year, 1, 1)


def _next(span: str, first: date) -> date:
    if span == DAY:
        return first + timedelta(days=1)
    if span == MONTH:
        return (first + timedelta(days=32)).replace(day=1)
    return date(first.year + 1, 1, 1)


def _units(span: str, a: date, b: date) -> int:
    """How many `span` buckets [a, b) holds (a and b aligned to the span)."""
    if span == DAY:
        return (b - a).days
    if span == MONTH:
        return (b.year - a.year) * 12 + b.month - a.month
    return b.year - a.year


PARENT = {DAY: MONTH, MONTH: YEAR}


@dataclass(frozen=True)
class Plan:
    """How [start, end) is read: signed sums of rollup rows (`terms`: sign, span, first
    bucket, end bucket) and of raw rows (`edges`: sign, start, end)."""

    terms: tuple[tuple[int, str, date, date], ...]
    edges: tuple[tuple[int, datetime, datetime], ...]


def plan(start: datetime, end: datetime) -> Plan:
    """Whole years, months and days from the rollup rows, each run of days (months) at
    the ends of a range read directly or as its month (year) minus the other days
    (months), whichever has fewer buckets; a partial first day from the raw rows; a
    partial last day as that day's row minus the raw rows after `end` (ends are "now + 1 s",
    whose rest of the day is empty: the year to date costs one row per unit)."""
    if end <= start:
        return Plan((), ())
    first, last = _midnight(start), _midnight(end)
    if first == last and start != first:  # within one day
        return Plan((), ((1, start, end),))
    edges: list[tuple[int, datetime, datetime]] = []
    d0 = first.date()
    if start != first:
        d0 += timedelta(days=1)
        edges.append((1, start, datetime.combine(d0, time.min)))
    d1 = last.date()
    if end != last:
        d1 += timedelta(days=1)
        edges.append((-1, end, datetime.combine(d1, time.min)))
    terms: list[tuple[int, str, date, date]] = []
    _cover(DAY, d0, d1, 1, terms)
    return Plan(tuple(terms), tuple(edges))


def _cover(span: str, a: date, b: date, sign: int, terms: list) -> None:
    """Append the terms summing the `span` buckets [a, b) (aligned to `span`): a run of
    them at either end read directly, or as its parent bucket less the parent's other
    buckets (counted, each parent row as one more), whichever reads fewer."""
    if a >= b:
        return
    parent = PARENT.get(span)
    if parent is None:
        terms.append((sign, span, a, b))
        return
    first = _start(parent, a)
    lo = first if first == a else _next(parent, first)
    hi = _start(parent, b)
    if lo > hi:  # inside one parent bucket
        after = _next(parent, first)
        if _units(span, a, b) <= _units(span, first, a) + _units(span, b, after) + 1:
            terms.append((sign, span, a, b))
        else:
            terms += [(-sign, span, u, v) for u, v in ((first, a), (b, after)) if u < v]
            _cover(parent, first, after, sign, terms)
        return
    if a < lo:
        if _units(span, a, lo) <= _units(span, first, a) + 1:
            terms.append((sign, span, a, lo))
        else:
            terms.append((-sign, span, first, a))
            lo = first
    if hi < b:
        after = _next(parent, hi)
        if _units(span, hi, b) <= _units(span, b, after) + 1:
            terms.append((sign, span, hi, b))
        else:
            terms.append((-sign, span, b, after))
            hi = after
    _cover(parent, lo, hi, sign, terms)


def totals_query(dialect: str, p: Plan, prefix: str = "") -> tuple[str, dict]:
    """One statement: per unit, the signed sum of `p`'s rollup rows and raw rows (its
    bind parameters named with `prefix`, so that two can share a statement)."""
    parts, params = [], {}
    for i, (sign, span, a, b) in enumerate(p.terms):
        figures = ", ".join(f"{'-' if sign < 0 else ''}{f} AS {f}" for f in FIGURES)
        parts.append(
            f"SELECT unit_id, {figures} FROM rollup WHERE span = '{span}'"
            f" AND bucket >= :{prefix}a{i} AND bucket < :{prefix}b{i}"
        )
        params |= {f"{prefix}a{i}": a, f"{prefix}b{i}": b}
    for i, (sign, a, b) in enumerate(p.edges):
        parts.append(_contributions(dialect, (f"{prefix}s{i}", f"{prefix}e{i}"), sign))
        params |= {f"{prefix}s{i}": a, f"{prefix}e{i}": b}
    if not parts:  # an empty range: no rows
        parts.append(f"SELECT unit_id, {', '.join(FIGURES)} FROM rollup WHERE 1 = 0")
    return (
        f"SELECT unit_id, {_sums()} FROM ({' UNION ALL '.join(parts)}) AS t GROUP BY unit_id",
        params,
    )


def figures_sql(dialect: str, p: Plan, prefix: str) -> tuple[str, list[str], dict]:
    """What to join to the `unit` table for `p`'s figures: (the joins, one expression per
    figure, the bind parameters, named with `prefix`). A term of one bucket (the year's,
    a month's) is a primary-key lookup per unit; the others and the raw rows of partial
    days (few rows, normally none) one grouped subquery."""
    joins, params = [], {}
    terms: list[tuple[int, str]] = []  # (sign, alias)
    rest = []
    for i, (sign, span, a, b) in enumerate(p.terms):
        if _next(span, a) != b:
            rest.append((sign, span, a, b))
            continue
        alias = f"{prefix}r{i}"
        joins.append(
            f"LEFT JOIN rollup AS {alias} ON {alias}.span = '{span}'"
            f" AND {alias}.bucket = :{alias} AND {alias}.unit_id = unit.id"
        )
        params[alias] = a
        terms.append((sign, alias))
    if rest or p.edges:
        sql, more = totals_query(dialect, Plan(tuple(rest), p.edges), prefix)
        alias = f"{prefix}g"
        joins.append(f"LEFT JOIN ({sql}) AS {alias} ON {alias}.unit_id = unit.id")
        params |= more
        terms.append((1, alias))
    exprs = [
        " ".join(f"{'-' if sign < 0 else '+'} coalesce({alias}.{f}, 0)" for sign, alias in terms)
        or "0"
        for f in FIGURES
    ]
    return " ".join(joins), exprs, params


def binds(params: dict) -> list:
    """Typed bind parameters: dates as the Date type stores them, moments as DateTime."""
    return [
        bindparam(k, v, type_=Date() if type(v) is date else DateTime()) for k, v in params.items()
    ]


def range_plan(start: datetime, end: datetime, rollups: bool = True) -> Plan:
    """`plan`, or with `rollups=False` all from the raw rows: the reference the tests and
    `db verify` compare with."""
    if rollups:
        return plan(start, end)
    return Plan((), ((1, start, end),) if start < end else ())


async def totals(db: Database, start: datetime, end: datetime, rollups: bool = True) -> Totals:
    """Per unit, the figures of the rows dated in [start, end), from the rollups and
    the raw rows of partial days (`rollups=False`: all from the raw rows)."""
    joins, exprs, params = figures_sql(
        db.engine.dialect.name, range_plan(start, end, rollups), "t_"
    )
    sql = f"SELECT unit.id, {', '.join(exprs)} FROM unit {joins}"
    async with db.scan_engine.connect() as conn:
        rows = (await conn.execute(text(sql).bindparams(*binds(params)))).all()
    return {unit_id: list(figures) for unit_id, *figures in rows if any(figures)}


# ------------------------------------------------------------------ verify


@dataclass(frozen=True)
class Difference:
    unit_id: int
    unit: str
    span: str
    bucket: date
    figure: str
    stored: float
    expected: float


def _keyed(rows: Iterable) -> dict[tuple[str, date, int], tuple]:
    out = {}
    for span, bucket, unit_id, *figures in rows:
        if any(figures):
            day = bucket if isinstance(bucket, date) else date.fromisoformat(str(bucket))
            out[(span, day, unit_id)] = tuple(figures)
    return out


async def _compare(conn: AsyncConnection) -> list[Difference]:
    dialect = conn.dialect.name
    stored = _keyed(
        await conn.execute(text(f"SELECT span, bucket, unit_id, {', '.join(FIGURES)} FROM rollup"))
    )
    expected = _keyed(await conn.execute(text(expected_rows_sql(dialect))))
    names = dict((await conn.execute(text("SELECT id, name FROM unit"))).all())
    zero = (0,) * len(FIGURES)
    out = []
    for key in sorted(stored.keys() | expected.keys(), key=lambda k: (k[2], k[0], k[1])):
        span, bucket, unit_id = key
        have, want = stored.get(key, zero), expected.get(key, zero)
        for i, figure in enumerate(FIGURES):
            a, b = float(have[i] or 0), float(want[i] or 0)
            if abs(a - b) > (TOLERANCE if i == POINTS else 0):
                out.append(
                    Difference(
                        unit_id, names.get(unit_id, str(unit_id)), span, bucket, figure, a, b
                    )
                )
    return out


async def verify(db: Database) -> list[Difference]:
    """Rebuild the rollups from the raw rows (in one snapshot) and compare with the stored
    ones; empty when they agree."""
    async with db.engine.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":  # both reads in one snapshot
            await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        return await _compare(conn)


async def repair(db: Database) -> None:
    """Rewrite the rollups from the raw rows, in one write transaction."""
    async with db.transaction() as s:
        for statement in rebuild_statements(db.engine.dialect.name):
            await s.execute(text(statement))
