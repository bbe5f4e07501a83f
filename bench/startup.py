"""Start-up: the time from spawning `xinxibot run` until it answers HTTP, and its idle RSS.

    python bench/startup.py                        # an empty SQLite database and a county-sized one
    python bench/startup.py --runs 11              # more runs per database (the median is printed)
    python bench/startup.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test
    python bench/startup.py --no-bytecode-cache    # every module compiled from source each run
    python bench/startup.py --root /old/checkout   # the same runs on another checkout
    python bench/startup.py --vs /old/checkout     # this one (A) and another (B) in turns

DESIGN §9: start-up under 1 s on an empty database, RSS under 100 MB at idle.

Every timed run spawns the real `xinxibot run` (`python -m bot.cli run`) and polls its port;
the RSS is VmRSS after 3 s idle (`--idle`). "cpu s" is the bot's user + system time when it
answered (median): on a shared machine it moves less than the wall time. By default the
children write and reuse bytecode in a private cache (PYTHONPYCACHEPREFIX in a temporary
directory, one uncounted warm-up run), as an installed package does; with
PYTHONDONTWRITEBYTECODE set (as on the development VM) the project's own modules are
compiled from source at every start, which `--no-bytecode-cache` keeps. Then, from one
more run of each kind: the bot's own account of its start (the "started in" log line:
migrations, cluster, statistics, jobs and hooks, sender), the import time by top-level
package (`-X importtime`, which inflates it), and the wall time of
`python -c "import bot.cli, handlers"` beside `python -c pass`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import PostgresDatabases, free_port, spawn, wait_ready  # the process helpers

ROOT = Path(__file__).resolve().parents[1]


def child_env(pycache: Path | None, root: Path) -> dict[str, str]:
    env = {"PYTHONPATH": str(root)}  # ahead of an editable install of another checkout
    if pycache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


@dataclass
class Run:
    seconds: float  # from spawning until HTTP answers
    cpu: float  # the bot's user + system seconds by then (less disturbed by other load)
    rss: float  # MB after idling
    log: str


def cpu_seconds(pid: int) -> float:
    """User + system time of a running process (Linux; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_once(url: str, work: Path, env: dict[str, str], idle: float,
               python_args: tuple[str, ...] = ()) -> Run:  # fmt: skip
    """Spawn `xinxibot run` on `url` and wait until it answers HTTP, then idle."""
    port = free_port()
    config = work / "xinxibot.toml"
    config.write_text(f'[bot]\ndatabase = "{url}"\nlisten = "127.0.0.1:{port}"\n'
                      '[onebot]\nself_id = 3300000001\ngroups = [700100200]\napi_url = ""\n',
                      encoding="utf-8")  # fmt: skip
    cmd = [sys.executable, *python_args, "-m", "bot.cli", "run", "--config", str(config)]
    start = time.perf_counter()
    server = spawn("xinxibot", cmd, port, work, env)
    try:
        asyncio.run(wait_ready(server))
        seconds = time.perf_counter() - start
        cpu = cpu_seconds(server.proc.pid)
        time.sleep(idle)
        rss = server.rss_mb()
    finally:
        server.stop()
    return Run(seconds, cpu, rss, server.log.read_text(encoding="utf-8", errors="replace"))


def fresh_url(kind: str, work: Path, county: Path, pg: PostgresDatabases | None, n: int) -> str:
    """A database for one run: a new empty one, or the county file (already migrated)."""
    if kind == "empty":
        return f"sqlite+aiosqlite:///{work / 'empty.db'}"
    if kind == "county":
        return f"sqlite+aiosqlite:///{county}"
    assert pg is not None
    return pg.create(f"startup{n}")  # empty/pg: a new database each run


def measure(kind: str, runs: int, county: Path, pg: PostgresDatabases | None, envs: list[dict],
            idle: float) -> list[dict]:  # fmt: skip
    """Runs of each checkout in turn (A B A B ...), so a drift of the machine hits both."""
    done: list[list[Run]] = [[] for _ in envs]
    for n in range(runs + 1):  # the first run warms the bytecode cache and the page cache
        for i, env in enumerate(envs):
            with tempfile.TemporaryDirectory() as tmp:
                url = fresh_url(kind, Path(tmp), county, pg, n * len(envs) + i)
                run = start_once(url, Path(tmp), env, idle)
            if n:
                done[i].append(run)
    logs = []
    for i, env in enumerate(envs):  # one more run each, for the breakdown
        with tempfile.TemporaryDirectory() as tmp:
            url = fresh_url(kind, Path(tmp), county, pg, (runs + 1) * len(envs) + i)
            logs.append(start_once(url, Path(tmp), env, 0, ("-X", "importtime")).log)
    if pg is not None:
        pg.drop_all()
    return [
        {
            "times": [r.seconds for r in rs],
            "cpus": [r.cpu for r in rs],
            "rss": statistics.median(r.rss for r in rs),
            "log": log,
        }
        for rs, log in zip(done, logs, strict=True)
    ]


PHASES = re.compile(r"started in (\d+) ms \((.*)\)")


def breakdown(log: str) -> tuple[str, Counter]:
    """The bot's phase line and the import time (ms) per top-level package."""
    phases = next((m.group(0) for m in PHASES.finditer(log)), "no 'started in' line")
    imports: Counter = Counter()
    for line in log.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*([\w.]+)", line)
        if m:
            imports[m.group(2).split(".")[0]] += int(m.group(1)) / 1000
    return phases, imports


def wall(cmd: list[str], env: dict, runs: int) -> float:
    """Median wall seconds of a short command."""
    out = []
    for _ in range(runs + 1):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=env["PYTHONPATH"], env={**os.environ, **env}, check=True)
        out.append(time.perf_counter() - t)
    return statistics.median(out[1:])


def county_database(path: Path) -> None:
    """The county scale of bench/scale.py: 50 units, 5,000 drafts, 1,000 adoptions."""
    import scale

    asyncio.run(scale.create_schema(f"sqlite+aiosqlite:///{path}"))
    scale.generate(path, **scale.SCALES["county"], years=4.0)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=7, help="timed runs per database (median)")
    p.add_argument("--postgres", metavar="URL", help="also an empty PostgreSQL database per run "
                   "(postgresql+asyncpg://USER@HOST:PORT/DB; creates and drops databases)")  # fmt: skip
    p.add_argument("--idle", type=float, default=3.0, help="seconds idle before the RSS is read")
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout to start (A)")
    p.add_argument("--vs", type=Path, help="another checkout (B), its runs taking turns with A's")
    p.add_argument("--no-bytecode-cache", action="store_true",
                   help="leave PYTHONDONTWRITEBYTECODE as it is (no private bytecode cache)")  # fmt: skip
    args = p.parse_args()
    roots = [args.root.resolve(), *([args.vs.resolve()] if args.vs else [])]
    names = ["A", "B"][: len(roots)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pycache = None
        if not args.no_bytecode_cache:
            pycache = work / "pycache"
            os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        envs = [
            child_env(pycache / name if pycache else None, root)
            for name, root in zip(names, roots, strict=True)
        ]
        county = work / "county.db"
        county_database(county)
        kinds = ["empty", "county"]
        pg = None
        if args.postgres:
            pg = PostgresDatabases(args.postgres)
            kinds.append("empty/pg")
        bytecode = "private bytecode cache" if pycache else "PYTHONDONTWRITEBYTECODE as set"
        print(f"xinxibot run until HTTP answers, median of {args.runs} runs ({bytecode})")
        for name, root in zip(names, roots, strict=True):
            print(f"  {name}: {root}")
        print(f"{'database':<10}{'':<3}{'median s':>10}{'min s':>8}{'max s':>8}{'cpu s':>8}"
              f"{'idle RSS MB':>13}{'A/B s':>8}{'A/B cpu':>9}")  # fmt: skip
        results = {}
        try:
            for kind in kinds:
                rs = results[kind] = measure(kind, args.runs, county, pg, envs, args.idle)
                for name, r in zip(names, rs, strict=True):
                    t = r["times"]
                    ratios = ""
                    if name == "B":  # the median of the paired ratios
                        a = rs[0]
                        ratios = (f"{statistics.median(x / y for x, y in zip(a['times'], t, strict=True)):>8.2f}"
                                  f"{statistics.median(x / y for x, y in zip(a['cpus'], r['cpus'], strict=True)):>9.2f}")  # fmt: skip
                    print(f"{kind:<10}{name:<3}{statistics.median(t):>10.2f}{min(t):>8.2f}{max(t):>8.2f}"
                          f"{statistics.median(r['cpus']):>8.2f}{r['rss']:>13.0f}{ratios}", flush=True)  # fmt: skip
        finally:
            if pg is not None:
                pg.drop_all()
        for kind, rs in results.items():
            for name, r in zip(names, rs, strict=True):
                phases, imports = breakdown(r["log"])
                top = ", ".join(f"{pkg} {ms:.0f}" for pkg, ms in imports.most_common(8))
                print(f"\n{kind} {name}: {phases}")
                print(f"  imports {sum(imports.values()):.0f} ms (under -X importtime): {top}")
        print()
        for name, env in zip(names, envs, strict=True):
            bare = wall([sys.executable, "-c", "pass"], env, args.runs)
            imports = wall([sys.executable, "-c", "import bot.cli, handlers"], env, args.runs)
            print(f"{name}: python -c pass: {bare * 1000:.0f} ms; "
                  f"python -c 'import bot.cli, handlers': {imports * 1000:.0f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
