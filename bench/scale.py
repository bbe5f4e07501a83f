"""Standings at scale: generate a history, time the standings queries and the
weekly post, and print peak memory.

    python bench/scale.py                      # county and province scale
    python bench/scale.py --only province --keep /tmp/province.db   # reuse a generated file

Province scale: 3,000 units, 1,000,000 drafts, 200,000 adoptions (DESIGN §9:
standings under 300 ms on SQLite, memory flat in the number of drafts).
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
from storage import migrate
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


async def create_schema(path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{path}")
    await migrate.upgrade(db.engine)
    await db.close()


def generate(
    path: Path, units: int, drafts: int, adoptions: int, years: float, seed: int = 7
) -> None:
    rng = random.Random(seed)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    created = ts(YEAR_START - timedelta(days=400))
    con.executemany(
        "INSERT INTO unit (id, name, kind, klass, active, created_at) VALUES (?, ?, ?, NULL, 1, ?)",
        ((i, f"单位{i:04d}", KINDS[i % 3], created) for i in range(1, units + 1)),
    )
    con.executemany(
        "INSERT INTO member (id, im_id, name, role, unit_id, created_at, updated_at) VALUES (?, ?, ?, 'officer', ?, ?, ?)",
        ((i, 100000 + i, f"信息员{i}", i, created, created) for i in range(1, units + 1)),
    )
    first = NOW - timedelta(days=365 * years)  # the history spans `years` up to now
    span = (NOW - first).total_seconds()
    # active units submit more; some units are silent for weeks
    weights = [rng.paretovariate(1.5) for _ in range(units)]
    unit_ids = rng.choices(range(1, units + 1), weights=weights, k=drafts)
    batch = []
    for i, unit in enumerate(unit_ids, 1):
        when = first + timedelta(seconds=rng.random() * span)
        batch.append(
            (i, unit, unit, f"信息{i}", 1200, "动态", 0, "group", "submitted", f"h{i}", ts(when))
        )
        if len(batch) == 50_000:
            _insert_drafts(con, batch)
            batch = []
    _insert_drafts(con, batch)
    adopted = rng.sample(range(1, drafts + 1), adoptions)
    rows = con.execute(
        f"SELECT id, unit_id, submitted_at FROM draft WHERE id IN ({','.join(map(str, adopted))})"
    ).fetchall()
    adoption_rows, points_rows = [], []
    for n, (draft_id, unit_id, submitted) in enumerate(rows, 1):
        level, outlet, points = rng.choices(LEVELS, weights=[60, 30, 9, 1])[0]
        at = min(
            datetime.fromisoformat(submitted) + timedelta(days=rng.randint(1, 20)),
            NOW - timedelta(hours=1),
        )
        adoption_rows.append((n, draft_id, unit_id, outlet, level, "full", ts(at), unit_id))
        points_rows.append((unit_id, draft_id, "adoption", n, points, "2026", ts(at)))
    con.executemany(
        "INSERT INTO adoption (id, draft_id, unit_id, outlet, level, form, issue, at, by) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        adoption_rows,
    )
    con.executemany(
        "INSERT INTO points (unit_id, draft_id, kind, ref_id, points, rule_version, at, void) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
        points_rows,
    )
    con.execute("UPDATE draft SET status = 'adopted' WHERE id IN (SELECT draft_id FROM adoption)")
    # What the reminders judge: 4 drafts a month for every unit, 12 points a year for direct points.
    con.executemany(
        "INSERT INTO quota (scope, unit_id, kind, period, metric, target, valid_from) VALUES (?, NULL, ?, ?, ?, ?, ?)",
        [
            ("all", None, "month", "submitted", 4, created),
            ("kind", "direct_point", "year", "points", 12, created),
        ],
    )
    con.commit()
    con.close()


def _insert_drafts(con: sqlite3.Connection, rows: list[tuple]) -> None:
    con.executemany(
        "INSERT INTO draft (id, unit_id, submitter_id, title, body, char_count, category, urgent, source, status, "
        "content_hash, submitted_at, piece_at, live) VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        [(*row, row[-1]) for row in rows],
    )


async def measure(path: Path, repeat: int) -> dict[str, float]:
    config = build(
        {"bot": {"database": f"sqlite+aiosqlite:///{path}"}, "onebot": {"groups": [1]}}, env={}
    )
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
        plan = (await s.execute(text_sql(
            "EXPLAIN QUERY PLAN SELECT unit_id, count(*) FROM draft WHERE piece_at >= :a AND piece_at < :b "
            "AND live = 1 AND status NOT IN ('withdrawn', 'awaiting_file') GROUP BY unit_id"), {"a": ts(year.start), "b": ts(NOW)},
        )).all()  # fmt: skip
    await app.db.close()
    result = {k: statistics.median(v) for k, v in out.items() if v}
    result["weekly_post_chars"] = len(text)
    result["lagging_units"] = len({p.unit.id for p in behind})
    result["draft_count_plan"] = " / ".join(str(r[-1]) for r in plan)
    return result


def measure_in_child(path: Path, repeat: int) -> dict:
    """Measure in a new process: its peak RSS is the bot's, not the generator's."""
    import json
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--measure", str(path), "--repeat", str(repeat)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def startup(path: Path | None, runs: int = 3) -> tuple[float, float]:
    """Seconds from spawning `xinxibot run` until it answers HTTP (median of `runs`),
    and its RSS after 3 s idle. `path` None: a new, empty database each run."""
    from ingest import free_port, spawn, wait_ready  # the ingest bench's process helpers

    times, rss = [], 0.0
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            db = path or work / "empty.db"
            port = free_port()
            config = work / "xinxibot.toml"
            config.write_text(f'[bot]\ndatabase = "sqlite+aiosqlite:///{db}"\nlisten = "127.0.0.1:{port}"\n'
                              '[onebot]\ngroups = [700100200]\napi_url = ""\n', encoding="utf-8")  # fmt: skip
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
    p.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
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
    print(f"{'scale':<10}{'units':>7}{'drafts':>10}{'adoptions':>11}{'generate s':>12}{'standings ms':>14}"
          f"{'weekly post ms':>16}{'lagging ms':>12}{'peak RSS MB':>13}{'startup s':>11}{'idle RSS MB':>13}")  # fmt: skip
    empty_start, empty_rss = startup(None)
    print(
        f"{'empty':<10}{0:>7}{0:>10}{0:>11}{'':>12}{'':>14}{'':>16}{'':>12}{'':>13}{empty_start:>11.2f}{empty_rss:>13.0f}"
    )
    for name, size in scales.items():
        tmp = None
        path = args.keep
        if path is None:
            tmp = tempfile.TemporaryDirectory()
            path = Path(tmp.name) / f"{name}.db"
        t = time.perf_counter()
        if not path.exists():
            asyncio.run(create_schema(path))
            generate(path, **size, years=args.years)
        generated = time.perf_counter() - t
        r = measure_in_child(path, args.repeat)
        boot, idle_rss = startup(path)
        print(f"{name:<10}{size['units']:>7}{size['drafts']:>10}{size['adoptions']:>11}{generated:>12.1f}"
              f"{r['yearly_standings_ms']:>14.1f}{r['weekly_post_ms']:>16.1f}{r['lagging_ms']:>12.1f}"
              f"{r['peak_rss_mb']:>13.0f}{boot:>11.2f}{idle_rss:>13.0f}")  # fmt: skip
        print(f"  lagging units found: {r['lagging_units']} of {size['units']}")
        print(f"  draft count plan: {r['draft_count_plan']}")
        if tmp:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
