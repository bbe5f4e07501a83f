"""Standings at scale: generate a history, time the standings queries and the
weekly post, and print peak memory.

    python bench/scale.py                      # county and province scale
    python bench/scale.py --only province --keep /tmp/province.db   # reuse a generated file
    python bench/scale.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test
                                               # each scale on SQLite and on PostgreSQL

Province scale: 3,000 units, 1,000,000 drafts, 200,000 adoptions (DESIGN §9:
standings under 50 ms on SQLite, the weekly post and the lagging units under 150 ms,
memory flat in the number of drafts; the figures come from the rollups).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text as text_sql

from bot.app import BotApp
from bot.config import build
from handlers import ROUTERS
from handlers.quotas import lagging, progress
from handlers.standings import weekly_report
from storage import migrate, rollup
from storage import standings as st
from storage.db import Database
from storage.queries import Repo

ROOT = Path(__file__).resolve().parents[1]
SCALES = {
    "county": {"units": 50, "drafts": 5_000, "adoptions": 1_000},
    "province": {"units": 3_000, "drafts": 1_000_000, "adoptions": 200_000},
}
YEAR_START = datetime(2026, 1, 1)
NOW = datetime(2026, 11, 23, 9, 0)  # a Monday: the weekly post covers 11-16..11-22
LEVELS = [("county", "县政务信息", 1.0), ("city", "政务信息快报", 3.0), ("province", "省政府办公厅信息刊物", 5.0),
          ("national", "国务院办公厅信息刊物", 20.0)]  # fmt: skip
KINDS = ["township", "department", "direct_point"]


def ts(dt: datetime) -> str:
    """SQLAlchemy's SQLite DateTime storage format (comparisons are textual)."""
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def rss_mb() -> float:
    """Peak RSS of this process image (VmHWM; ru_maxrss can carry the parent's peak over
    fork + exec, which made the generator's memory look like the bot's)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def create_schema(url: str) -> None:
    """The project's migrations (on a kept file of an older schema: the new ones, which
    fill the rollups from its rows)."""
    db = Database(url)
    await migrate.upgrade(db.engine)
    await db.close()


async def fill_rollups(url: str) -> None:
    """After a bulk load: the rollups rewritten from the raw rows, as the migration fills
    them (the triggers kept them during the load already; this makes the loader's result
    independent of that)."""
    db = Database(url)
    await rollup.repair(db)
    await db.close()


def history(units: int, drafts: int, adoptions: int, years: float, seed: int = 7) -> dict:
    """The generated rows per table (the same history for SQLite and PostgreSQL)."""
    rng = random.Random(seed)
    created = ts(YEAR_START - timedelta(days=400))
    first = NOW - timedelta(days=365 * years)  # the history spans `years` up to now
    span = (NOW - first).total_seconds()
    # active units submit more; some units are silent for weeks
    weights = [rng.paretovariate(1.5) for _ in range(units)]
    unit_ids = rng.choices(range(1, units + 1), weights=weights, k=drafts)
    when = [first + timedelta(seconds=rng.random() * span) for _ in range(drafts)]
    adopted = set(rng.sample(range(1, drafts + 1), adoptions))
    adoption_rows, points_rows = [], []
    for n, draft_id in enumerate(sorted(adopted), 1):
        unit_id = unit_ids[draft_id - 1]
        level, outlet, points = rng.choices(LEVELS, weights=[60, 30, 9, 1])[0]
        at = ts(
            min(when[draft_id - 1] + timedelta(days=rng.randint(1, 20)), NOW - timedelta(hours=1))
        )
        adoption_rows.append((n, draft_id, unit_id, outlet, level, "full", at, unit_id))
        points_rows.append((n, unit_id, draft_id, "adoption", n, points, "2026", at))
    return {
        "unit": ((i, f"单位{i:04d}", KINDS[i % 3], created) for i in range(1, units + 1)),
        "member": ((i, 100000 + i, f"信息员{i}", i, created, created) for i in range(1, units + 1)),
        "draft": (
            (
                i,
                unit,
                unit,
                f"信息{i}",
                1200,
                "动态",
                "group",
                "adopted" if i in adopted else "submitted",
                f"h{i}",
                ts(when[i - 1]),
                ts(when[i - 1]),  # every piece is its only version
            )
            for i, unit in enumerate(unit_ids, 1)
        ),
        "adoption": adoption_rows,
        "points": points_rows,
        # What the reminders judge: 4 drafts a month for every unit, 12 points a year for direct points.
        "quota": [
            (1, "all", None, "month", "submitted", 4, created),
            (2, "kind", "direct_point", "year", "points", 12, created),
        ],
    }


COLUMNS = {  # the generated columns; the others keep their defaults
    "unit": "id, name, kind, created_at",
    "member": "id, im_id, name, unit_id, created_at, updated_at",
    "draft": "id, unit_id, submitter_id, title, char_count, category, source, status, content_hash, submitted_at, piece_at",
    "adoption": "id, draft_id, unit_id, outlet, level, form, at, by",
    "points": "id, unit_id, draft_id, kind, ref_id, points, rule_version, at",
    "quota": "id, scope, kind, period, metric, target, valid_from",
}
CONSTANTS = {  # NOT NULL columns without a server default: the same value in every row
    "unit": {"active": True},
    "member": {"role": "officer"},
    "draft": {"body": "", "urgent": False, "live": True},
    "points": {"void": False},
    "quota": {},
    "adoption": {},
}


def _rows(table: str, rows) -> tuple[str, object]:
    extra = CONSTANTS[table]
    columns = COLUMNS[table] + "".join(f", {c}" for c in extra)
    return columns, (tuple(r) + tuple(extra.values()) for r in rows)


def generate(path: Path, units: int, drafts: int, adoptions: int, years: float) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    for table, rows in history(units, drafts, adoptions, years).items():
        columns, values = _rows(table, rows)
        marks = ", ".join("?" * len(columns.split(", ")))
        con.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values)
    con.commit()
    con.close()


def generate_postgres(url: str, units: int, drafts: int, adoptions: int, years: float) -> None:
    """The same history, loaded with COPY; then what autovacuum would do after a bulk load."""
    import psycopg

    with psycopg.connect(libpq(url)) as conn:
        for table, rows in history(units, drafts, adoptions, years).items():
            columns, values = _rows(table, rows)
            with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def measure(url: str, repeat: int) -> dict[str, float]:
    config = build({"bot": {"database": url}, "onebot": {"groups": [1]}}, env={})
    app = BotApp(config, ROUTERS)
    app.clock.set(NOW)
    year = st.period_containing("year", NOW)
    week = st.previous(st.period_containing("week", NOW))
    out: dict[str, list[float]] = {
        "yearly_standings_ms": [],
        "weekly_post_ms": [],
        "lagging_ms": [],
    }
    await app.db.optimize()  # what the bot does at start-up
    async with app.db.reader() as s:
        repo = Repo(s)
        await st.standings(app.db, year.start, NOW)  # warm the page cache once
        for _ in range(repeat):
            t = time.perf_counter()
            await st.standings(
                app.db, year.start, NOW, compare_end=st.period_containing("week", NOW).start
            )
            out["yearly_standings_ms"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            text = await weekly_report(app, repo, week)
            out["weekly_post_ms"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            behind = [p for p in await progress(app, repo, NOW) if lagging(app, p)]
            out["lagging_ms"].append((time.perf_counter() - t) * 1000)
        explain = "EXPLAIN QUERY PLAN" if url.startswith("sqlite") else "EXPLAIN"
        plan = (await s.execute(text_sql(
            f"{explain} SELECT unit_id, count(*) FROM draft WHERE piece_at >= :a AND piece_at < :b "
            "AND live AND status NOT IN ('withdrawn', 'awaiting_file') GROUP BY unit_id"), {"a": year.start, "b": NOW},
        )).all()  # fmt: skip
    await app.db.close()
    result = {k: statistics.median(v) for k, v in out.items() if v}
    result["weekly_post_chars"] = len(text)
    result["lagging_units"] = len({p.unit.id for p in behind})
    result["draft_count_plan"] = " / ".join(str(r[-1]) for r in plan)
    return result


def measure_in_child(url: str, repeat: int) -> dict:
    """Measure in a new process: its peak RSS is the bot's, not the generator's."""
    import json
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--measure", url, "--repeat", str(repeat)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def startup(url: str | None, runs: int = 3) -> tuple[float, float]:
    """Seconds from spawning `xinxibot run` until it answers HTTP (median of `runs`),
    and its RSS after 3 s idle. `url` None: a new, empty SQLite database each run."""
    from ingest import free_port, spawn, wait_ready  # the ingest bench's process helpers

    times, rss = [], 0.0
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            db = url or f"sqlite+aiosqlite:///{work / 'empty.db'}"
            port = free_port()
            config = work / "xinxibot.toml"
            config.write_text(f'[bot]\ndatabase = "{db}"\nlisten = "127.0.0.1:{port}"\n'
                              '[onebot]\nself_id = 3300000001\ngroups = [700100200]\napi_url = ""\n',
                              encoding="utf-8")  # fmt: skip
            start = time.perf_counter()
            server = spawn("xinxibot", [sys.executable, "-m", "bot.cli", "run", "--config", str(config)],
                           port, work, {"PYTHONPATH": str(ROOT)})  # fmt: skip
            try:
                asyncio.run(wait_ready(server))
                times.append(time.perf_counter() - start)
                time.sleep(3)
                rss = server.rss_mb()
            finally:
                server.stop()
    return statistics.median(times), rss


def report(name: str, size: dict, url: str, generated: float, args: argparse.Namespace) -> None:
    r = measure_in_child(url, args.repeat)
    boot, idle_rss = startup(url, args.startup_runs)
    print(f"{name:<12}{size['units']:>7}{size['drafts']:>10}{size['adoptions']:>11}{generated:>12.1f}"
          f"{r['yearly_standings_ms']:>14.1f}{r['weekly_post_ms']:>16.1f}{r['lagging_ms']:>12.1f}"
          f"{r['peak_rss_mb']:>13.0f}{boot:>11.2f}{idle_rss:>13.0f}", flush=True)  # fmt: skip
    print(f"  lagging units found: {r['lagging_units']} of {size['units']}")
    print(f"  draft count plan: {r['draft_count_plan']}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", choices=sorted(SCALES), help="run one scale")
    p.add_argument(
        "--units", type=int, help="override the scale's unit count (with --drafts, --adoptions)"
    )
    p.add_argument("--drafts", type=int)
    p.add_argument("--adoptions", type=int)
    p.add_argument("--keep", type=Path, help="database file to create or reuse")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument(
        "--years",
        type=float,
        default=4.0,
        help="years the history spans (1 = all of it this year: the worst case)",
    )
    p.add_argument("--postgres", metavar="URL", help="each scale on PostgreSQL too "
                   "(postgresql+asyncpg://USER@HOST:PORT/DB; creates and drops a database)")  # fmt: skip
    p.add_argument("--startup-runs", type=int, default=3, help="start-up timings per database")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        import json

        result = asyncio.run(measure(args.measure, args.repeat))
        result["peak_rss_mb"] = rss_mb()
        print(json.dumps(result))
        return 0
    scales = {args.only: SCALES[args.only]} if args.only else SCALES
    if args.units:
        scales = {
            "custom": {
                "units": args.units,
                "drafts": args.drafts or 1000,
                "adoptions": args.adoptions or 100,
            }
        }
    print(
        f"history spans {args.years:g} year(s) up to {NOW:%Y-%m-%d}; median of {args.repeat} runs"
    )
    print(f"{'scale':<12}{'units':>7}{'drafts':>10}{'adoptions':>11}{'generate s':>12}{'standings ms':>14}"
          f"{'weekly post ms':>16}{'lagging ms':>12}{'peak RSS MB':>13}{'startup s':>11}{'idle RSS MB':>13}")  # fmt: skip
    empty_start, empty_rss = startup(None, args.startup_runs)
    print(
        f"{'empty':<12}{0:>7}{0:>10}{0:>11}{'':>12}{'':>14}{'':>16}{'':>12}{'':>13}{empty_start:>11.2f}{empty_rss:>13.0f}"
    )
    dbs = None
    if args.postgres:
        from ingest import PostgresDatabases

        dbs = PostgresDatabases(args.postgres)
    try:
        for name, size in scales.items():
            tmp = None
            path = args.keep
            if path is None:
                tmp = tempfile.TemporaryDirectory()
                path = Path(tmp.name) / f"{name}.db"
            url = f"sqlite+aiosqlite:///{path}"
            t = time.perf_counter()
            fresh = not path.exists()
            asyncio.run(create_schema(url))
            if fresh:
                generate(path, **size, years=args.years)
                asyncio.run(fill_rollups(url))
            report(name, size, url, time.perf_counter() - t, args)
            if dbs is not None:
                url = dbs.create(name)
                t = time.perf_counter()
                asyncio.run(create_schema(url))
                generate_postgres(url, **size, years=args.years)
                asyncio.run(fill_rollups(url))
                report(f"{name}/pg", size, url, time.perf_counter() - t, args)
                dbs.drop_all()
            if tmp:
                tmp.cleanup()
    finally:
        if dbs is not None:
            dbs.drop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
