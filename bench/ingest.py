"""Ingest side by side: xinxibot, the same workflow on NoneBot2, and a bare aiohttp handler.

    python bench/ingest.py                    # default sizes, about 7 minutes
    python bench/ingest.py --events 300 --rounds 1 --rush 20 --rush-seconds 5   # a quick look

One load generator (aiohttp client, loopback only) posts the same stream of
signed OneBot v11 group events - 70 % chatter, 20 % `/报送` submissions, 10 %
`/我的稿件` - to `/onebot/v11/` of three servers running side by side, taking
turns A B C A B C at each concurrency (1, 10, 100 senders):

* xinxibot   - `xinxibot run` on SQLite, rate limit lifted (`rate_per_minute = 0`);
* nonebot2   - bench/nonebot_equiv on NoneBot2 + nonebot-adapter-onebot, installed
               from PyPI into its own venv (bench/.venv-nonebot) on the first run;
* bare       - an aiohttp handler that reads the body and answers 204 (the ceiling);
* with `--postgres URL` (a server where this script may create databases):
  pg         - `xinxibot run` on a PostgreSQL database of its own;
  pg-2proc   - two `xinxibot run` processes sharing one PostgreSQL database, each
               with its own account and group, the senders split between them.

Both bots send their replies to one fake OneBot HTTP API (bench/peers.py),
which records when each message arrived and whom it @-mentions. An event is
*accepted* when its POST is answered and *completed* when its effect is
committed and its reply has reached the fake API (chatter, which needs no
reply, completes when accepted). Each sender is one officer; the n-th reply
mentioning an officer completes that officer's n-th command.

Then a deadline rush on a fresh xinxibot with the default rate limit (20 per
minute, burst 5): 200 submissions from 50 officers spread over 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import hmac
import json
import os
import random
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
NONEBOT_DIR = BENCH / "nonebot_equiv"
NONEBOT_VENV = BENCH / ".venv-nonebot"

GROUP = 700100200
SELF_ID = 3300000001
GROUP_2, SELF_ID_2 = 700100201, 3300000002  # the second process of pg-2proc
SECRET = "bench-secret"
OFFICERS = 100
CONCURRENCY = (1, 10, 100)


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen
    log: Path
    self_id: int = SELF_ID
    group: int = GROUP
    more: list[Server] = field(default_factory=list)  # a multi-process contender's others

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/onebot/v11/"

    @property
    def endpoints(self) -> list[Server]:
        """Where events go: officer i posts to endpoints[i % n], with its account and group."""
        return [self, *self.more]

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024 + sum(m.rss_mb() for m in self.more)
        return 0.0

    def stop(self) -> None:
        for other in self.more:
            other.stop()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def spawn(name: str, cmd: list[str], port: int, workdir: Path, env: dict | None = None) -> Server:
    log = workdir / f"{name}.log"
    proc = subprocess.Popen(cmd, cwd=workdir, env={**os.environ, **(env or {})},
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    return Server(name, port, proc, log)


async def wait_ready(server: Server, limit: float = 60.0) -> float:
    """Seconds until the server (each of its processes) answers HTTP at all."""
    start = time.monotonic()
    for other in server.more:
        await wait_ready(other, limit)
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - start < limit:
            if server.proc.poll() is not None:
                raise SystemExit(f"{server.name} exited:\n{server.log.read_text()[-3000:]}")
            try:
                async with session.get(f"http://127.0.0.1:{server.port}/"):
                    return time.monotonic() - start
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.01)
    raise SystemExit(
        f"{server.name} did not start within {limit} s:\n{server.log.read_text()[-3000:]}"
    )


def officers(n: int) -> list[tuple[int, str, str]]:
    """(QQ number, name, unit) of the bench's officers, one unit each."""
    return [(20001 + i, f"信息员{i + 1:03d}", f"测试单位{i + 1:03d}") for i in range(n)]


def start_xinxibot(workdir: Path, api_url: str, rate_per_minute: int, database: str | None = None,
                   name: str = "xinxibot", self_id: int = SELF_ID, group: int = GROUP,
                   import_units: bool = True) -> Server:  # fmt: skip
    """`xinxibot run` on `database` (default: SQLite in `workdir`) with the bench's officers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    database = database or f"sqlite+aiosqlite:///{workdir / 'xinxibot.db'}"
    config = workdir / "xinxibot.toml"
    config.write_text(
        f'[bot]\ndatabase = "{database}"\nlisten = "127.0.0.1:{port}"\n'
        f'coordinators = ["10002"]\n\n[onebot]\nself_id = {self_id}\ngroups = [{group}]\n'
        f'api_url = "{api_url}"\nsecret = "{SECRET}"\nrate_per_minute = {rate_per_minute}\n\n'
        '[schedule]\nquiet_hours = ""\n\n[limits]\ndrafts_per_hour = 1000000\n',
        encoding="utf-8",
    )
    xinxibot = [sys.executable, "-m", "bot.cli"]
    if import_units:
        sheet = workdir / "officers.csv"
        with sheet.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["单位名称", "类型", "别名", "信息员QQ", "信息员姓名"])
            for qq, officer, unit in officers(OFFICERS):
                w.writerow([unit, "部门", "", qq, officer])
        subprocess.run([*xinxibot, "units", "import", str(sheet), "--config", str(config)], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
    server = spawn(name, [*xinxibot, "run", "--config", str(config)], port, workdir,
                   {"PYTHONPATH": str(ROOT)})  # fmt: skip
    server.self_id, server.group = self_id, group
    return server


class PostgresDatabases:
    """Databases of this run on the server at `url`, dropped at the end."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        self.url = make_url(url)
        self.names: list[str] = []

    def _admin(self):
        import psycopg

        libpq = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return psycopg.connect(libpq, autocommit=True)

    def create(self, suffix: str) -> str:
        name = f"xinxibot_bench_{os.getpid()}_{suffix}"
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        self.names.append(name)
        return self.url.set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False
        )

    def drop_all(self) -> None:
        with self._admin() as conn:
            for name in self.names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.names.clear()


def start_postgres_contenders(work: Path, api_url: str, dbs: PostgresDatabases) -> list[Server]:
    """pg: one process on its own database; pg-2proc: two processes sharing another."""
    one = start_xinxibot(work / "pg", api_url, 0, dbs.create("1"), name="pg")
    shared = dbs.create("2")
    first = start_xinxibot(work / "pg-2proc-a", api_url, 0, shared, name="pg-2proc")
    second = start_xinxibot(work / "pg-2proc-b", api_url, 0, shared, name="pg-2proc",
                            self_id=SELF_ID_2, group=GROUP_2, import_units=False)  # fmt: skip
    first.more.append(second)
    return [one, first]


def nonebot_python() -> Path:
    """The NoneBot venv's interpreter, created (once per requirements file) from PyPI."""
    python = NONEBOT_VENV / "bin" / "python"
    requirements = NONEBOT_DIR / "requirements.txt"
    stamp = NONEBOT_VENV / "requirements.sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if not python.exists() or not stamp.exists() or stamp.read_text() != digest:
        print(f"installing NoneBot2 into {NONEBOT_VENV.relative_to(ROOT)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(NONEBOT_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True
        )
        stamp.write_text(digest)
    return python


def start_nonebot(workdir: Path, api_url: str) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "nonebot.db"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE unit (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
        "CREATE TABLE member (im_id INTEGER PRIMARY KEY, name TEXT, unit_id INTEGER);"
    )
    for i, (qq, name, unit) in enumerate(officers(OFFICERS), 1):
        con.execute("INSERT INTO unit VALUES (?, ?)", (i, unit))
        con.execute("INSERT INTO member VALUES (?, ?, ?)", (qq, name, i))
    con.commit()
    con.close()
    port = free_port()
    cmd = [str(nonebot_python()), str(NONEBOT_DIR / "run.py"), "--port", str(port), "--api", api_url,
           "--self-id", str(SELF_ID), "--secret", SECRET, "--db", str(db)]  # fmt: skip
    return spawn("nonebot2", cmd, port, workdir)


def start_peer(kind: str, workdir: Path) -> Server:
    port = free_port()
    return spawn(kind, [sys.executable, str(BENCH / "peers.py"), kind, str(port)], port, workdir)


# ---------------------------------------------------------------- the event stream


@dataclass
class Event:
    user: int
    kind: str  # chatter | submit | mine
    body: bytes
    headers: dict
    url: str = ""  # where it is posted (a multi-process contender's endpoint)
    token: str = ""  # the submission's title marker, found again in its receipt
    sent: float = 0.0
    accepted: float | None = None
    completed: float | None = None


_ids = iter(range(1, 1 << 62))


def make_event(user: int, name: str, kind: str, text: str, to: Server | None = None) -> Event:
    mid = next(_ids)
    self_id, group = (to.self_id, to.group) if to else (SELF_ID, GROUP)
    payload = {
        "time": int(time.time()), "self_id": self_id, "post_type": "message", "message_type": "group",
        "sub_type": "normal", "message_id": mid, "group_id": group, "user_id": user, "anonymous": None,
        "message": [{"type": "text", "data": {"text": text}}], "raw_message": text, "font": 0,
        "sender": {"user_id": user, "nickname": name, "card": name, "role": "member"},
    }  # fmt: skip
    body = json.dumps(payload, ensure_ascii=False).encode()
    signature = "sha1=" + hmac.new(SECRET.encode(), body, "sha1").hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Self-ID": str(self_id),
        "X-Signature": signature,
    }
    return Event(user, kind, body, headers, to.url if to else "")


CHATTER = [
    "收到",
    "好的，马上安排",
    "今天的会议材料已经发到邮箱了，请查收。",
    "辛苦了",
    "明天上午九点在三楼会议室开会",
]


def make_stream(count: int, senders: int, rng: random.Random, tag: str,
                server: Server | None = None, only: str | None = None) -> list[list[Event]]:  # fmt: skip
    """`count` events dealt round-robin to `senders` officers: 70/20/10 chatter/submit/mine
    (`only`: all of that kind); officer i posts to the server's endpoint i % n."""
    people = officers(OFFICERS)[:senders]
    queues: list[list[Event]] = [[] for _ in range(senders)]
    ends = server.endpoints if server else [None]
    for i in range(count):
        qq, name, _ = people[i % senders]
        to = ends[(i % senders) % len(ends)]
        r = {"chatter": 0.0, "submit": 0.8, "mine": 0.95}[only] if only else rng.random()
        if r < 0.7:
            ev = make_event(qq, name, "chatter", rng.choice(CHATTER), to)
        elif r < 0.9:
            token = f"{tag}{i}"
            body = f"本周共排查隐患{rng.randint(3, 90)}处，整改完成{rng.randint(1, 60)}处，编号{token}。"
            ev = make_event(qq, name, "submit", f"/报送 关于安全生产检查的情况{token}\n{body}", to)
            ev.token = token
        else:
            ev = make_event(qq, name, "mine", "/我的稿件", to)
        queues[i % senders].append(ev)
    return queues


# ---------------------------------------------------------------- one phase


@dataclass
class PhaseResult:
    server: str
    senders: int
    events: list[Event] = field(default_factory=list)
    started: float = 0.0
    errors: int = 0


async def records_since(session: aiohttp.ClientSession, api: str, since: int) -> list[list]:
    async with session.get(f"{api}/_bench/records", params={"since": str(since)}) as r:
        return (await r.json())["records"]


async def record_count(session: aiohttp.ClientSession, api: str) -> int:
    async with session.get(f"{api}/_bench/records", params={"since": str(1 << 40)}) as r:
        return (await r.json())["total"]


async def run_phase(server: Server, api: str, queues: list[list[Event]], time_limit: float,
                    drain_limit: float) -> PhaseResult:  # fmt: skip
    result = PhaseResult(server.name, len(queues))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        first = await record_count(session, api)
        pending: dict[int, deque[Event]] = defaultdict(
            deque
        )  # commands awaiting a reply, per officer
        seen = first

        def absorb(records: list[list]) -> None:
            for at, users, _target, _text in records:
                for user in users:
                    if pending[user]:
                        pending[user].popleft().completed = at

        replies = server.name != "bare"  # the ceiling answers nothing: done when accepted

        async def sender(queue: list[Event], deadline: float) -> None:
            for ev in queue:
                if time.monotonic() > deadline:
                    return
                ev.sent = time.monotonic()
                awaits_reply = replies and ev.kind != "chatter"
                if awaits_reply:
                    pending[ev.user].append(ev)
                result.events.append(ev)
                try:
                    async with session.post(
                        ev.url or server.url, data=ev.body, headers=ev.headers
                    ) as r:
                        await r.read()
                        ok = r.status < 300
                except aiohttp.ClientError:
                    ok = False
                if not ok:
                    result.errors += 1
                    if awaits_reply:
                        pending[ev.user].remove(ev)
                    continue
                ev.accepted = time.monotonic()
                if not awaits_reply:
                    ev.completed = ev.accepted

        result.started = time.monotonic()
        deadline = result.started + time_limit
        await asyncio.gather(*(sender(q, deadline) for q in queues))
        drain_end = time.monotonic() + drain_limit
        while any(pending.values()) and time.monotonic() < drain_end:
            records = await records_since(session, api, seen)
            seen += len(records)
            absorb(records)
            if any(pending.values()):
                await asyncio.sleep(0.02)
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


@dataclass
class Summary:
    server: str
    senders: int
    sent: int
    accepted_per_s: float
    completed_per_s: float
    unfinished: int
    p50: float
    p95: float
    p99: float


def summarize(phases: list[PhaseResult]) -> Summary:
    """Pooled over the rounds: rates are totals over the summed phase durations."""
    sent = accepted = completed = unfinished = 0
    accept_time = complete_time = 0.0
    latencies: list[float] = []
    for ph in phases:
        evs = ph.events
        sent += len(evs)
        acc = [e.accepted for e in evs if e.accepted is not None]
        done = [e.completed for e in evs if e.completed is not None]
        accepted += len(acc)
        completed += len(done)
        unfinished += len(evs) - len(done)
        if acc:
            accept_time += max(acc) - ph.started
        if done:
            complete_time += max(done) - ph.started
        latencies += [(e.completed - e.sent) * 1000 for e in evs if e.completed is not None]
    return Summary(
        phases[0].server, phases[0].senders, sent,
        accepted / accept_time if accept_time else 0.0, completed / complete_time if complete_time else 0.0,
        unfinished, percentile(latencies, 50), percentile(latencies, 95), percentile(latencies, 99),
    )  # fmt: skip


# ---------------------------------------------------------------- cost per event kind

KINDS = {"chatter": "chatter", "submit": "/报送", "mine": "/我的稿件"}


def cpu_seconds(server: Server) -> float:
    """User + system CPU time of the server's processes so far (/proc/<pid>/stat)."""
    total = 0.0
    for s in server.endpoints:
        fields = Path(f"/proc/{s.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def metrics(session: aiohttp.ClientSession, server: Server) -> dict[str, float] | None:
    """xinxibot's /metrics counters summed over the server's processes; None for others."""
    out: dict[str, float] = defaultdict(float)
    for s in server.endpoints:
        try:
            async with session.get(f"http://127.0.0.1:{s.port}/metrics") as r:
                if r.status != 200:
                    return None
                for line in (await r.text()).splitlines():
                    if line and not line.startswith("#"):
                        name, value = line.rsplit(" ", 1)
                        out[name] += float(value)
        except aiohttp.ClientError:
            return None
    return out


@dataclass
class Cost:
    server: str
    kind: str
    events: int
    completed: int
    cpu_ms: float
    statements: float | None
    commits: float | None


async def cost_per_kind(server: Server, api: str, rng: random.Random, counts: dict[str, int],
                        senders: int = 10) -> list[Cost]:  # fmt: skip
    """Each kind alone: the server's CPU time and SQL per completed event, as deltas around
    a phase of only that kind (CPU is steadier than rates on a shared machine)."""
    out = []
    async with aiohttp.ClientSession() as session:
        for kind, count in counts.items():
            queues = make_stream(count, senders, rng, f"c{kind}", server, only=kind)
            before_cpu, before = cpu_seconds(server), await metrics(session, server)
            phase = await run_phase(server, api, queues, 120, 60)
            after_cpu, after = cpu_seconds(server), await metrics(session, server)
            done = sum(e.completed is not None for e in phase.events) or 1
            sql = [None if before is None or after is None else (after[n] - before[n]) / done
                   for n in ("xinxibot_sql_statements_total", "xinxibot_sql_commits_total")]  # fmt: skip
            out.append(Cost(server.name, kind, len(phase.events), done,
                            1000 * (after_cpu - before_cpu) / done, *sql))  # fmt: skip
    return out


def pad(text: str, width: int) -> str:
    """`text` left-aligned in `width` terminal columns (a Chinese character takes two)."""
    return text + " " * max(width - sum(2 if ord(ch) > 0x2E80 else 1 for ch in text), 0)


def print_costs(costs: list[Cost]) -> None:
    print("\ncost per completed event, each kind alone at 10 senders "
          "(server CPU user+system from /proc; SQL from /metrics)")  # fmt: skip
    print(
        f"{'server':<10}{'kind':<12}{'events':>8}{'CPU ms/event':>14}{'SQL/event':>11}{'commits/event':>15}"
    )
    for c in costs:
        sql = "-" if c.statements is None else f"{c.statements:.2f}"
        commits = "-" if c.commits is None else f"{c.commits:.2f}"
        print(
            f"{c.server:<10}{pad(KINDS[c.kind], 12)}{c.completed:>8}{c.cpu_ms:>14.2f}{sql:>11}{commits:>15}"
        )


# ---------------------------------------------------------------- the deadline rush


async def deadline_rush(workdir: Path, api_server: Server, count: int, officers_n: int,
                        seconds: float, rng: random.Random) -> dict:  # fmt: skip
    api = f"http://127.0.0.1:{api_server.port}"
    bot = start_xinxibot(workdir, api, rate_per_minute=20)  # the default rate limit
    try:
        await wait_ready(bot)
        people = officers(OFFICERS)[:officers_n]
        events = []
        for i in range(count):
            qq, name, _ = people[i % officers_n]
            token = f"R{i}"
            ev = make_event(
                qq,
                name,
                "submit",
                f"/报送 截止前报送的信息{token}\n今日完成重点工作{i}项，编号{token}。",
            )
            ev.token = token
            events.append((rng.uniform(0, seconds), ev))
        events.sort(key=lambda x: x[0])
        async with aiohttp.ClientSession() as session:
            first = await record_count(session, api)
            start = time.monotonic()

            async def post(offset: float, ev: Event) -> None:
                await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
                ev.sent = time.monotonic()
                async with session.post(bot.url, data=ev.body, headers=ev.headers) as r:
                    await r.read()
                    if r.status < 300:
                        ev.accepted = time.monotonic()

            await asyncio.gather(*(post(o, ev) for o, ev in events))
            by_token = {ev.token: ev for _, ev in events}
            receipts: dict[str, int] = defaultdict(int)
            group_messages = 0
            seen = first
            limit = time.monotonic() + 600
            while len(receipts) < count and time.monotonic() < limit:
                records = await records_since(session, api, seen)
                seen += len(records)
                for at, _users, target, text in records:
                    if target != GROUP:
                        continue
                    group_messages += 1
                    for token in re.findall(r"信息(R\d+)》", text):
                        receipts[token] += 1
                        ev = by_token.get(token)
                        if ev is not None and ev.completed is None:
                            ev.completed = at
                await asyncio.sleep(0.2)
    finally:
        bot.stop()
    con = sqlite3.connect(workdir / "xinxibot.db")
    stored = dict(con.execute(
        "SELECT title, count(*) FROM draft WHERE title LIKE '截止前报送的信息R%' GROUP BY title").fetchall())  # fmt: skip
    con.close()
    waits = [ev.completed - ev.sent for _, ev in events if ev.completed is not None]
    return {
        "submissions": count, "accepted": sum(ev.accepted is not None for _, ev in events),
        "group_messages": group_messages, "receipts": sum(receipts.values()),
        "distinct_receipts": len(receipts), "stored": len(stored),
        "stored_twice": sum(1 for n in stored.values() if n > 1),
        "longest_wait_s": max(waits) if waits else float("nan"),
        "median_wait_s": statistics.median(waits) if waits else float("nan"),
        "span_s": seconds,
    }  # fmt: skip


# ---------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    dbs = PostgresDatabases(args.postgres) if args.postgres else None
    with tempfile.TemporaryDirectory(prefix="xinxibot-ingest-") as tmp:
        work = Path(tmp)
        api_server = start_peer("fake-api", work)
        servers: list[Server] = [api_server]
        try:
            await wait_ready(api_server)
            api = f"http://127.0.0.1:{api_server.port}"
            contenders = [start_xinxibot(work / "xinxibot", api, rate_per_minute=0)]
            servers += contenders
            if not args.no_nonebot:
                contenders.append(start_nonebot(work / "nonebot2", api))
                servers.append(contenders[-1])
            if dbs is not None:
                pg = start_postgres_contenders(work, api, dbs)
                contenders += pg
                servers += pg
            contenders.append(start_peer("bare", work))
            servers.append(contenders[-1])
            for s in contenders:
                await wait_ready(s)
            # One small warm-up per server (first-request imports, page cache).
            for s in contenders:
                await run_phase(s, api, make_stream(50, 5, rng, "W", s), 30, 30)
            print(f"{args.rounds} round(s) of A B C per concurrency; {args.events} events per phase "
                  f"(1 sender: {max(args.events // 5, 20)}); 70% chatter, 20% /报送, 10% /我的稿件", flush=True)  # fmt: skip
            summaries: list[Summary] = []
            for senders in args.senders:
                count = args.events if senders > 1 else max(args.events // 5, 20)
                phases: dict[str, list[PhaseResult]] = defaultdict(list)
                for rnd in range(args.rounds):
                    for n, s in enumerate(contenders):
                        queues = make_stream(count, senders, rng, f"{n}s{senders}x{rnd}n", s)
                        phases[s.name].append(
                            await run_phase(s, api, queues, args.phase_seconds, args.drain_seconds)
                        )
                summaries += [summarize(phases[s.name]) for s in contenders]
            rss = {s.name: s.rss_mb() for s in contenders}
            print_table(summaries, rss)
            if args.cost_events:
                counts = {"chatter": 4 * args.cost_events, "submit": args.cost_events,
                          "mine": args.cost_events}  # fmt: skip
                costs = []
                for s in contenders:
                    if s.name != "bare":
                        costs += await cost_per_kind(s, api, rng, counts)
                print_costs(costs)
            if args.rush:
                r = await deadline_rush(work / "rush", api_server, args.rush, args.rush_officers,
                                        args.rush_seconds, rng)  # fmt: skip
                print(f"\ndeadline rush (xinxibot, default rate limit 20/min, burst 5): {r['submissions']} submissions "
                      f"from {args.rush_officers} officers over {r['span_s']:g} s")  # fmt: skip
                print(f"  accepted {r['accepted']}, stored {r['stored']} (stored twice: {r['stored_twice']}), "
                      f"receipts {r['receipts']} for {r['distinct_receipts']} distinct drafts")  # fmt: skip
                print(f"  group messages sent: {r['group_messages']}; wait from submission to receipt: "
                      f"median {r['median_wait_s']:.1f} s, longest {r['longest_wait_s']:.1f} s")  # fmt: skip
                lost = r["submissions"] - min(r["stored"], r["distinct_receipts"])
                print(
                    f"  lost: {lost}; duplicated receipts: {r['receipts'] - r['distinct_receipts']}"
                )
                if lost or r["receipts"] != r["distinct_receipts"]:
                    return 1
        finally:
            for s in servers:
                s.stop()
            if dbs is not None:
                dbs.drop_all()
    return 0


def print_table(summaries: list[Summary], rss: dict[str, float]) -> None:
    print(f"\n{'server':<10}{'senders':>8}{'events':>8}{'accepted/s':>12}{'completed/s':>13}"
          f"{'unfinished':>11}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")  # fmt: skip
    for s in summaries:
        print(f"{s.server:<10}{s.senders:>8}{s.sent:>8}{s.accepted_per_s:>12.0f}{s.completed_per_s:>13.0f}"
              f"{s.unfinished:>11}{s.p50:>9.1f}{s.p95:>9.1f}{s.p99:>9.1f}")  # fmt: skip
    print("\ncompleted events/s ratios")
    by = {(s.server, s.senders): s for s in summaries}
    for senders in sorted({s.senders for s in summaries}):
        ours = by[("xinxibot", senders)].completed_per_s
        parts = [f"{senders:>3} senders:"]
        if ("nonebot2", senders) in by and by[("nonebot2", senders)].completed_per_s:
            parts.append(
                f"xinxibot/nonebot2 = {ours / by[('nonebot2', senders)].completed_per_s:.1f}x"
            )
        if by[("bare", senders)].completed_per_s:
            parts.append(
                f"xinxibot/ceiling = {100 * ours / by[('bare', senders)].completed_per_s:.0f}%"
            )
        print("  " + "   ".join(parts))
    print("RSS after the runs: " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items()))


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--events", type=int, default=2000, help="events per phase at 10 and 100 senders"
    )
    p.add_argument("--senders", type=int, nargs="+", default=list(CONCURRENCY))
    p.add_argument("--rounds", type=int, default=2, help="A B C turns per concurrency")
    p.add_argument(
        "--phase-seconds", type=float, default=20, help="cap on one phase's sending time"
    )
    p.add_argument(
        "--drain-seconds", type=float, default=60, help="cap on waiting for replies after sending"
    )
    p.add_argument("--cost-events", type=int, default=500,
                   help="events of each kind (chatter: 4x) for the cost table (0: skip)")  # fmt: skip
    p.add_argument("--rush", type=int, default=200, help="deadline-rush submissions (0: skip)")
    p.add_argument("--rush-officers", type=int, default=50)
    p.add_argument("--rush-seconds", type=float, default=120)
    p.add_argument("--no-nonebot", action="store_true", help="skip NoneBot2 (no venv install)")
    p.add_argument("--postgres", metavar="URL", help="also run xinxibot on PostgreSQL, one and two "
                   "processes (postgresql+asyncpg://USER@HOST:PORT/DB; creates and drops databases)")  # fmt: skip
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args()
    if max(args.senders) > OFFICERS or args.rush_officers > OFFICERS:
        p.error(f"at most {OFFICERS} senders")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
