"""Several `xinxibot run` processes on one PostgreSQL database (DESIGN §7.2).

Real subprocesses, each with its own config (QQ account, listen port, group)
and its own fake OneBot API in this process. Waits are bounded polls of what
can be observed (messages at the fake APIs, rows, lock holders), never sleeps
for a job.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.onebot import sign
from bot.scheduler import JOB_TABLE, run_job, sync_url
from storage.locks import SCHEDULER

from . import pgtest
from .conftest import FakeOneBot, database_url, fixture, query
from .test_crash import free_port

COORDINATOR = 10002  # not `xinxibot init`'s placeholder 10001, which `xinxibot run` refuses

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[1]
SECRET = "cluster"
TZ = ZoneInfo("Asia/Shanghai")
ACCOUNT_A, ACCOUNT_B = 3300000101, 3300000202
GROUP_A, GROUP_B = 700000101, 700000202
OFFICERS = 40  # units 0-19 write in group A, 20-39 in group B


class TimedOneBot(FakeOneBot):
    """The fake API, with the monotonic time of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[tuple[float, str, dict]] = []

    async def _api(self, request: web.Request) -> web.Response:
        self.times.append((time.monotonic(), request.match_info["action"], await request.json()))
        return await super()._api(request)

    def group_posts(self, group: int) -> list[tuple[float, str]]:
        return [
            (t, "".join(s["data"].get("text", "") for s in p["message"]))
            for t, action, p in self.times
            if action == "send_group_msg" and int(p["group_id"]) == group
        ]


class BotProcess:
    """One `xinxibot run` with its own config file and log."""

    def __init__(
        self, tmp_path: Path, name: str, account: int, group: int, api_url: str, **extra: str
    ) -> None:
        self.name, self.account, self.group = name, account, group
        self.port = free_port()
        self.config = tmp_path / f"{name}.toml"
        self.log_path = tmp_path / f"{name}.log"
        lines = [
            "[bot]",
            f'database = "{database_url(tmp_path)}"',
            f'listen = "127.0.0.1:{self.port}"',
            f'coordinators = ["{COORDINATOR}"]',
            f'files_dir = "{tmp_path / "files"}"',
            "[onebot]",
            f"self_id = {account}",
            f"groups = [{group}]",
            f'api_url = "{api_url}"',
            f'secret = "{SECRET}"',
            *(f"{k} = {v}" for k, v in extra.items()),
            "[limits]",
            "drafts_per_hour = 100",
        ]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.proc: subprocess.Popen | None = None

    def _spawn(self) -> subprocess.Popen:
        with self.log_path.open("a", encoding="utf-8") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "run", "--config", str(self.config)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self) -> None:
        self.proc = self._spawn()
        async with aiohttp.ClientSession() as session:
            for _ in range(300):  # bounded: ~30 s (start-ups take turns on the start-up lock)
                assert self.proc.poll() is None, self.log()
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/onebot/v11/"):
                        return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not start:\n{self.log()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait, 30)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    async def post(self, event: dict) -> int:
        body = json.dumps(event, ensure_ascii=False).encode()
        headers = {
            "X-Self-ID": str(event["self_id"]),
            "X-Signature": sign(SECRET, body),
            "Content-Type": "application/json",
        }
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{self.port}/onebot/v11/"
            async with session.post(url, data=body, headers=headers) as resp:
                return resp.status


_message_ids = iter(range(1, 10**6))


def message(account: int, user: int, text: str, group: int | None) -> dict:
    event = fixture("group_message_array.json" if group else "private_message.json")
    event.update(self_id=account, user_id=user, message_id=next(_message_ids))
    event["message"] = [{"type": "text", "data": {"text": text}}]
    event["sender"] = {"user_id": user, "nickname": f"用户{user}"}
    if group:
        event["group_id"] = group
    return event


async def fake_api() -> tuple[TimedOneBot, TestServer]:
    fake = TimedOneBot()
    server = TestServer(fake.app())
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    return fake, server


def import_units(tmp_path: Path, config: Path) -> None:
    rows = ["单位名称,类型,信息员QQ,信息员姓名"] + [
        f"单位{i:02d}镇,乡镇,{20000 + i},信息员{i}" for i in range(OFFICERS)
    ]
    (tmp_path / "units.csv").write_text("\n".join(rows), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "bot.cli", "units", "import", str(tmp_path / "units.csv"), "--config", str(config)],
                   cwd=ROOT, check=True, capture_output=True, timeout=60)  # fmt: skip


async def until(predicate, seconds: float, what: str) -> float:
    """Poll `predicate` (bounded); returns how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


async def test_two_processes_share_one_county(tmp_path):
    fake_a, server_a = await fake_api()
    fake_b, server_b = await fake_api()
    a = BotProcess(tmp_path, "a", ACCOUNT_A, GROUP_A, fake_a.url, rate_per_minute="60")
    b = BotProcess(tmp_path, "b", ACCOUNT_B, GROUP_B, fake_b.url, rate_per_minute="60")
    import_units(tmp_path, a.config)
    url = database_url(tmp_path)
    try:
        await asyncio.gather(a.start(), b.start())
        assert sorted(query(url, "select group_id, self_id from served_group")) == [
            (GROUP_A, ACCOUNT_A),
            (GROUP_B, ACCOUNT_B),
        ]

        # 1. Submissions at both processes at once: numbers unique, receipts from the right account.
        async def officer(i: int) -> list[int]:
            bot, group = (a, GROUP_A) if i < OFFICERS // 2 else (b, GROUP_B)
            return [
                await bot.post(message(bot.account, 20000 + i, f"/报送 单位{i:02d}镇第{n}条\n正文", group))
                for n in range(3)
            ]  # fmt: skip

        statuses = await asyncio.gather(*(officer(i) for i in range(OFFICERS)))
        assert {s for row in statuses for s in row} == {204}
        drafts = query(url, "select id, unit_id from draft")
        assert len(drafts) == OFFICERS * 3 == len({d for d, _ in drafts})

        def receipts(fake: TimedOneBot, group: int) -> list[str]:
            return [n for _, text in fake.group_posts(group) for n in text.split("编号")[1:]]

        await until(
            lambda: len(receipts(fake_a, GROUP_A)) + len(receipts(fake_b, GROUP_B)) == OFFICERS * 3,
            30,
            "every receipt delivered",
        )
        numbers = [int(r.split("，")[0][1:]) for f, g in ((fake_a, GROUP_A), (fake_b, GROUP_B)) for r in receipts(f, g)]  # fmt: skip
        assert sorted(numbers) == sorted(d for d, _ in drafts)  # each draft receipted once
        assert not fake_a.group_posts(GROUP_B) and not fake_b.group_posts(GROUP_A)

        # 2. The same private event delivered to both processes is handled once, and
        #    answered by its own account (A), whichever process took it.
        event = message(ACCOUNT_A, 20001, "/报送 私聊报送的稿件\n正文", None)
        assert await asyncio.gather(a.post(event), b.post(event)) == [204, 204]
        assert query(url, "select count(*) from draft where title = '私聊报送的稿件'") == [(1,)]
        await until(
            lambda: "私聊报送的稿件" in "".join(fake_a.texts("private", 20001)), 10, "reply"
        )
        assert fake_b.texts("private", 20001) == []

        # 3. County-wide posts from both processes: each group's posts leave through its
        #    own account, paced by one bucket (burst 5, then 1 a second) whoever queued them.
        asked = [
            bot.post(message(bot.account, COORDINATOR, f"/约稿 专题{bot.name}{n} 截止后天", None))
            for bot in (a, b)
            for n in range(4)
        ]
        assert set(await asyncio.gather(*asked)) == {204}
        for fake, group in ((fake_a, GROUP_A), (fake_b, GROUP_B)):
            await until(
                lambda f=fake, g=group: sum("【约稿Y" in t for _, t in f.group_posts(g)) == 8,
                30,
                f"8 topic posts in {group}",
            )
            times = [t for t, text in fake.group_posts(group) if "【约稿Y" in text]
            for i in range(len(times)):
                for j in range(i + 1, len(times)):
                    assert j - i + 1 <= 5 + (times[j] - times[i]) * 1.0 + 0.5, (group, times)
            print(f"\ntopic posts to {group}, s: {[round(t - times[0], 2) for t in times]}")
        assert not fake_a.group_posts(GROUP_B) and not fake_b.group_posts(GROUP_A)

        # 4. A second process for account A, or a new account claiming group B, is refused.
        twin = BotProcess(tmp_path, "twin", ACCOUNT_A, 700000303, fake_a.url)
        thief = BotProcess(tmp_path, "thief", 3300000303, GROUP_B, fake_b.url)
        for bot, words in (
            (twin, f"账号 {ACCOUNT_A} 已有一个 xinxibot 进程在使用同一数据库"),
            (thief, f"群 {GROUP_B} 已由账号 {ACCOUNT_B} 的进程服务"),
        ):
            proc = bot._spawn()
            assert await asyncio.to_thread(proc.wait, 60) == 2
            assert words in bot.log(), bot.log()
        assert sorted(query(url, "select group_id, self_id from served_group")) == [
            (GROUP_A, ACCOUNT_A),
            (GROUP_B, ACCOUNT_B),
        ]
    finally:
        await asyncio.gather(a.stop(), b.stop())
        await server_a.close()
        await server_b.close()


# ------------------------------------------------------------------ the scheduler


def holder(url: str) -> str | None:
    """application_name of the session holding the scheduler lock ("xinxibot ACCOUNT locks")."""
    rows = query(
        url,
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
        f" AND l.classid::bigint = {SCHEDULER >> 32} AND l.objid::bigint = {SCHEDULER & 0xFFFFFFFF}"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    return rows[0][0] if rows else None


def add_report_job(url: str, job_id: str, week: str, when: datetime) -> None:
    """What a process does when it plans a job: write it to the shared store
    (with a paused scheduler of this test's loop, which runs nothing)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    store = SQLAlchemyJobStore(url=sync_url(url), tablename=JOB_TABLE)
    scheduler = AsyncIOScheduler(jobstores={"default": store}, timezone=TZ)
    scheduler.start(paused=True)
    scheduler.add_job(run_job, "date", run_date=when, args=["handlers.standings:report_job", "week", week],
                      id=job_id, replace_existing=True, misfire_grace_time=3600)  # fmt: skip
    scheduler.shutdown(wait=False)


def report_title(week: str) -> str:
    start = datetime.fromisoformat(week)
    end = start + timedelta(days=6)
    return f"周通报】{start:%Y年%m月%d日}至{end:%m月%d日}"


async def test_one_scheduler_fails_over_on_kill_9_and_waits_for_a_frozen_holder(tmp_path):
    fake_a, server_a = await fake_api()
    fake_b, server_b = await fake_api()
    a = BotProcess(tmp_path, "a", ACCOUNT_A, GROUP_A, fake_a.url, rate_per_minute="0")
    b = BotProcess(tmp_path, "b", ACCOUNT_B, GROUP_B, fake_b.url, rate_per_minute="0")
    url = database_url(tmp_path)
    t0 = time.monotonic()
    timeline: list[str] = []

    def note(text: str) -> None:
        timeline.append(f"{time.monotonic() - t0:6.2f} s  {text}")

    def posted(week: str) -> tuple[int, int]:
        title = report_title(week)
        return (
            sum(title in t for _, t in fake_a.group_posts(GROUP_A)),
            sum(title in t for _, t in fake_b.group_posts(GROUP_B)),
        )

    def ran(bot: BotProcess, job: str) -> bool:
        return f"job {job} ran" in bot.log()

    now = lambda: datetime.now(TZ)  # noqa: E731
    try:
        await a.start()
        await b.start()
        assert holder(url) == f"xinxibot {ACCOUNT_A} locks"
        note(f"A and B started; the scheduler lock is held by A ({holder(url)}); B waits")

        # J1: due in a second, run by the holder A; the report reaches both groups.
        add_report_job(url, "test:j1", "2026-10-05", now() + timedelta(seconds=1))
        await until(lambda: posted("2026-10-05") == (1, 1), 20, "J1 posted")
        assert ran(a, "test:j1") and not ran(b, "test:j1")
        note("J1 ran on A; its report reached group A (account A) and group B (account B)")

        # J2: A starts it and is killed in the middle (its transaction waits for a row this
        # test holds); B takes over; J2 runs again on B after its lease, and posts once.
        blocker = await asyncio.to_thread(pgtest.block_key, url, "report:week:2026-10-12")
        add_report_job(url, "test:j2", "2026-10-12", now())
        await until(lambda: pgtest.waiting_on_locks(url) > 0, 20, "A's J2 waiting on the row")
        note("J2 started on A; its transaction waits on a row held by the test")
        a.signal(signal.SIGKILL)
        await asyncio.to_thread(a.proc.wait, 10)
        killed = time.monotonic()
        note("A killed with SIGKILL in the middle of J2")
        took = await until(lambda: holder(url) == f"xinxibot {ACCOUNT_B} locks", 10, "B takes over")
        note(f"B holds the scheduler lock {took:.2f} s after the kill")
        await asyncio.to_thread(blocker.rollback)
        await until(lambda: posted("2026-10-12")[1] == 1, 30, "J2 re-run on B")
        assert ran(b, "test:j2") and not ran(a, "test:j2")
        note(f"J2 ran again on B, {time.monotonic() - killed:.2f} s after the kill (lease 10 s)")

        # J3: due while A is down, run by B; group A's copy waits for account A's process.
        add_report_job(url, "test:j3", "2026-10-26", now() + timedelta(seconds=1))
        await until(lambda: posted("2026-10-26")[1] == 1, 20, "J3 posted in group B")
        assert ran(b, "test:j3") and posted("2026-10-12")[0] == posted("2026-10-26")[0] == 0
        note("J3 ran on B; group A's copies of J2 and J3 wait in the outbox for account A")
        await a.start()
        await until(lambda: posted("2026-10-12")[0] == posted("2026-10-26")[0] == 1, 20, "A sends")
        assert holder(url) == f"xinxibot {ACCOUNT_B} locks"
        note("A restarted: it waits for the scheduler lock and sends group A's J2 and J3 reports")

        # J4: B is frozen (SIGSTOP) before it is due. Its session stays open and keeps the
        # lock: A does not take over and J4 does not run; B runs it once when it resumes.
        b.signal(signal.SIGSTOP)
        add_report_job(url, "test:j4", "2026-11-02", now() + timedelta(seconds=1))
        note("B frozen with SIGSTOP; J4 due 1 s later")
        frozen = time.monotonic()
        while time.monotonic() - frozen < 8:  # four of A's lock polls
            assert holder(url) == f"xinxibot {ACCOUNT_B} locks"
            assert posted("2026-11-02") == (0, 0)
            await asyncio.sleep(0.5)
        note("8 s later: B still holds the lock, A has not taken over, J4 has not run")
        b.signal(signal.SIGCONT)
        await until(lambda: posted("2026-11-02") == (1, 1), 20, "J4 after B resumes")
        assert ran(b, "test:j4") and not ran(a, "test:j4")
        note("B resumed (SIGCONT): J4 ran on B, once")

        for week in ("2026-10-05", "2026-10-12", "2026-10-26", "2026-11-02"):
            assert posted(week) == (1, 1), week  # each report once in each group
        for job in ("test:j1", "test:j2", "test:j3", "test:j4"):
            assert (a.log() + b.log()).count(f"job {job} ran") == 1, job
        assert query(url, f"select count(*) from {JOB_TABLE} where id like 'test:%'") == [(0,)]
    finally:
        print("\n" + "\n".join(timeline))
        await asyncio.gather(a.stop(), b.stop())
        await server_a.close()
        await server_b.close()
