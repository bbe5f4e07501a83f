"""Rollups: per unit and day, and per unit and month, the figures the standings sum.

A rollup row holds, for one unit and one bucket (a day, or a month), what the
standings count of the rows dated in it: pieces submitted (by `piece_at`, the
counting rule of `storage.standings`), adoptions per level (not revoked, by
`at`), instructions, the non-void points (their sum, how many rows, how many
`topic_missed`). Any range [start, end) is then exact: whole months from the
month rows, whole days from the day rows, the partial days at its edges from the
raw rows (indexed by date, at most two days' rows). So a ranking reads about
units x (months + days of the current month) rows, whatever the number of drafts.

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

import asyncio
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
DAY, MONTH = "day", "month"
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


def _day(dialect: str, expr: str) -> str:
    return f"date({expr})" if dialect == "sqlite" else f"CAST({expr} AS DATE)"


def _month(dialect: str, expr: str) -> str:
    if dialect == "sqlite":
        return f"date({expr}, 'start of month')"
    return f"CAST(date_trunc('month', {expr}) AS DATE)"


def _values(source: Source, r: str, sign: str = "") -> list[str]:
    return [f"{sign}({source.adds[f].format(r=r)})" if f in source.adds else "0" for f in FIGURES]


def _contributions(dialect: str, ranged: bool) -> str:
    """Every counted row of the four tables as (unit, day, month, figures...); `ranged`:
    only rows dated in [:start, :end)."""
    parts = []
    for s in SOURCES:
        t = s.table
        where = s.counts.format(r=t)
        if ranged:
            where += f" AND {t}.{s.at} >= :start AND {t}.{s.at} < :end"
        parts.append(
            f"SELECT {t}.unit_id AS unit_id, {_day(dialect, f'{t}.{s.at}')} AS in_day, "
            f"{_month(dialect, f'{t}.{s.at}')} AS in_month, "
            + ", ".join(f"{v} AS {f}" for v, f in zip(_values(s, t), FIGURES, strict=True))
            + f" FROM {t} WHERE {where}"
        )
    return " UNION ALL ".join(parts)


def _sums() -> str:
    return ", ".join(f"sum({f}) AS {f}" for f in FIGURES)


def expected_rows_sql(dialect: str) -> str:
    """The rollup rows as the raw rows give them: (span, bucket, unit_id, figures...)."""
    c = _contributions(dialect, ranged=False)
    return (
        f"SELECT '{DAY}' AS span, in_day AS bucket, unit_id, {_sums()} FROM ({c}) AS c"
        " GROUP BY unit_id, in_day"
        f" UNION ALL SELECT '{MONTH}' AS span, in_month AS bucket, unit_id, {_sums()}"
        f" FROM ({c}) AS c GROUP BY unit_id, in_month"
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
    """Add (`sign` "") or take away ("-") row `r`'s figures in its day and month rows."""
    when = f"{r}.{s.at}"
    return (
        f"INSERT INTO rollup (span, bucket, unit_id, {', '.join(FIGURES)}) "
        f"SELECT spans.span, CASE spans.span WHEN '{DAY}' THEN {_day(dialect, when)} "
        f"ELSE {_month(dialect, when)} END, {r}.unit_id, {', '.join(_values(s, r, sign))} "
        f"FROM (SELECT '{DAY}' AS span UNION ALL SELECT '{MONTH}') AS spans "
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


def _ceil_day(moment: datetime) -> datetime:
    day = _midnight(moment)
    return day if day == moment else day + timedelta(days=1)


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _ceil_month(day: date) -> date:
    first = _month_start(day)
    return first if first == day else (first + timedelta(days=32)).replace(day=1)


@dataclass(frozen=True)
class Plan:
    """How [start, end) is read: raw rows over `edges`, rollup rows over `spans`."""

    edges: tuple[tuple[datetime, datetime], ...]
    spans: tuple[tuple[str, date, date], ...]  # (span, first bucket, end bucket)


def plan(start: datetime, end: datetime) -> Plan:
    if end <= start:
        return Plan((), ())
    d0, d1 = _ceil_day(start), _midnight(end)
    if d0 >= d1:
        return Plan(((start, end),), ())
    edges = tuple((a, b) for a, b in ((start, d0), (d1, end)) if a < b)
    first, last = d0.date(), d1.date()
    m0, m1 = _ceil_month(first), _month_start(last)
    if m0 >= m1:
        return Plan(edges, ((DAY, first, last),))
    spans = ((DAY, first, m0), (MONTH, m0, m1), (DAY, m1, last))
    return Plan(edges, tuple(s for s in spans if s[1] < s[2]))


async def _fetch(db: Database, statement, params: dict) -> list:
    async with db.scan_reader() as s:
        return list((await s.execute(statement, params)).all())


def _add(into: Totals, rows: Iterable) -> None:
    for unit_id, *figures in rows:
        mine = into.setdefault(unit_id, [0] * len(FIGURES))
        for i, v in enumerate(figures):
            mine[i] += v or 0


async def totals(db: Database, start: datetime, end: datetime, rollups: bool = True) -> Totals:
    """Per unit, the figures of the rows dated in [start, end): from the rollups and the
    raw rows of the partial days at the edges (`rollups=False`: all from the raw rows,
    the reference the tests and `db verify` compare with)."""
    dialect = db.engine.dialect.name
    p = plan(start, end) if rollups else Plan(((start, end),) if start < end else (), ())
    raw = text(
        f"SELECT unit_id, {_sums()} FROM ({_contributions(dialect, ranged=True)}) AS c"
        " GROUP BY unit_id"
    ).bindparams(bindparam("start", type_=DateTime()), bindparam("end", type_=DateTime()))
    reads = [_fetch(db, raw, {"start": a, "end": b}) for a, b in p.edges]
    if p.spans:
        ranges = " UNION ALL ".join(
            f"SELECT * FROM rollup WHERE span = '{span}' AND bucket >= :a{i} AND bucket < :b{i}"
            for i, (span, _, _) in enumerate(p.spans)
        )
        rolled = text(f"SELECT unit_id, {_sums()} FROM ({ranges}) AS r GROUP BY unit_id")
        params = {}
        for i, (_, a, b) in enumerate(p.spans):
            rolled = rolled.bindparams(
                bindparam(f"a{i}", type_=Date()), bindparam(f"b{i}", type_=Date())
            )
            params |= {f"a{i}": a, f"b{i}": b}
        reads.append(_fetch(db, rolled, params))
    out: Totals = {}
    for rows in await asyncio.gather(*reads):
        _add(out, rows)
    return out


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
