"""kill -9 in the middle of a burst: nothing acknowledged is lost, nothing is sent twice.

`xinxibot run` runs as a real subprocess against a fake OneBot API in this
process; 1,000 signed submission events come from 50 concurrent senders; the
bot is killed with SIGKILL at a random point, restarted, and every event is
delivered again (as an OneBot implementation does after a reconnect).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from bot.onebot import sign

from .conftest import GROUP, ON_POSTGRES, SELF_ID, database_url, fixture, query

ROOT = Path(__file__).resolve().parents[1]
SENDERS, PER_SENDER = 50, 20
RECEIPT = re.compile(r"编号G(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_setup(tmp_path: Path, api_url: str, port: int) -> Path:
    rows = ["单位名称,类型,信息员QQ,信息员姓名"] + [
        f"单位{i:02d}镇,乡镇,{20000 + i},信息员{i}" for i in range(SENDERS)
    ]
    (tmp_path / "units.csv").write_text("\n".join(rows), encoding="utf-8")
    config = tmp_path / "xinxibot.toml"
    config.write_text(
        f'[bot]\ndatabase = "{database_url(tmp_path)}"\nlisten = "127.0.0.1:{port}"\n'
        f'coordinators = ["10002"]\nfiles_dir = "{tmp_path / "files"}"\n'
        f'[onebot]\ngroups = [{GROUP}]\napi_url = "{api_url}"\nsecret = "s3"\nrate_per_minute = 0\n'
        + (f"self_id = {SELF_ID}\n" if ON_POSTGRES else "")
        + "[limits]\ndrafts_per_hour = 100\n",
        encoding="utf-8",
    )
    subprocess.run([sys.executable, "-m", "bot.cli", "units", "import", str(tmp_path / "units.csv"), "--config", str(config)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    return config


def events() -> list[bytes]:
    out = []
    for sender in range(SENDERS):
        for n in range(PER_SENDER):
            e = fixture("group_message_array.json")
            e.update(user_id=20000 + sender, message_id=sender * 1000 + n, group_id=GROUP)
            text = f"/报送 单位{sender:02d}镇第{n}条信息\n正文{sender}-{n}"
            e["message"] = [{"type": "text", "data": {"text": text}}]
            e["sender"] = {"user_id": 20000 + sender, "nickname": f"信息员{sender}"}
            out.append(json.dumps(e, ensure_ascii=False).encode())
    return out


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def start_bot(config: Path, port: int) -> subprocess.Popen:
    proc = spawn("run", "--config", str(config))
    async with aiohttp.ClientSession() as session:
        for _ in range(200):  # bounded: up to ~20 s for start-up
            try:
                async with session.get(f"http://127.0.0.1:{port}/onebot/v11/"):
                    return proc
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    raise AssertionError("the bot did not start")


async def post_all(port: int, bodies: list[bytes], stop_after: int | None) -> tuple[int, int]:
    """Send per sender in order, 50 senders at once; returns (sent, acknowledged)."""
    sent = acked = 0
    url = f"http://127.0.0.1:{port}/onebot/v11/"
    stop = asyncio.Event()

    async def sender(mine: list[bytes]) -> None:
        nonlocal sent, acked
        async with aiohttp.ClientSession() as session:
            for body in mine:
                if stop.is_set():
                    return
                sent += 1
                headers = {
                    "X-Self-ID": str(SELF_ID),
                    "X-Signature": sign("s3", body),
                    "Content-Type": "application/json",
                }
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        if resp.status == 204:
                            acked += 1
                except aiohttp.ClientError:
                    stop.set()
                    return
                if stop_after is not None and acked >= stop_after:
                    stop.set()

    chunks = [bodies[i * PER_SENDER : (i + 1) * PER_SENDER] for i in range(SENDERS)]
    await asyncio.gather(*(sender(c) for c in chunks))
    return sent, acked


def outbox_settled(url: str) -> bool:
    return query(url, "select count(*) from outbox where status in ('pending', 'sending')") == [
        (0,)
    ]


async def test_kill_9_mid_burst_loses_nothing_acknowledged_and_sends_nothing_twice(
    tmp_path, fake_onebot
):
    port = free_port()
    config = write_setup(tmp_path, fake_onebot.url, port)
    bodies = events()
    kill_at = random.Random().randint(100, 900)

    proc = await start_bot(config, port)
    sent, acked = await post_all(port, bodies, stop_after=kill_at)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    receipts_before = len(fake_onebot.texts())

    proc = await start_bot(config, port)
    try:
        resent, reacked = await post_all(port, bodies, stop_after=None)  # every event again
        for _ in range(300):  # bounded wait for the sender to drain (real subprocess)
            if outbox_settled(database_url(tmp_path)):
                break
            await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)

    numbers = [int(n) for text in fake_onebot.texts() for n in RECEIPT.findall(text)]
    url = database_url(tmp_path)
    drafts = query(url, "select id, unit_id, title from draft")
    statuses = dict(query(url, "select status, count(*) from outbox group by status"))
    print(f"\nkill -9 after {acked} acknowledged of {sent} sent; receipts before kill {receipts_before}; "
          f"redelivered {resent}, acknowledged {reacked}; drafts {len(drafts)}; receipts {len(numbers)} "
          f"(distinct {len(set(numbers))}); outbox {statuses}")  # fmt: skip
    assert reacked == len(bodies)
    assert len(drafts) == len(bodies)  # every event processed once in all
    assert len({(unit, title) for _, unit, title in drafts}) == len(bodies)  # none twice
    assert len(numbers) == len(set(numbers))  # no receipt sent twice
    ids = {d for d, _, _ in drafts}
    assert set(numbers) <= ids  # every receipt that went out is for a stored draft
    assert acked >= kill_at
    assert statuses.get("pending", 0) == 0 and statuses.get("sending", 0) == 0


async def test_sigterm_finishes_in_flight_work_and_flushes_the_sender(tmp_path, fake_onebot):
    port = free_port()
    config = write_setup(tmp_path, fake_onebot.url, port)
    proc = await start_bot(config, port)
    _, acked = await post_all(port, events()[:200], stop_after=None)
    proc.send_signal(signal.SIGTERM)
    # wait in a thread: the fake OneBot API in this process must keep answering the flush
    assert await asyncio.to_thread(proc.wait, 30) == 0
    assert acked == 200
    url = database_url(tmp_path)
    assert query(url, "select count(*) from draft") == [(200,)]
    assert dict(query(url, "select status, count(*) from outbox group by status")).keys() == {
        "sent"
    }
    numbers = [int(n) for text in fake_onebot.texts() for n in RECEIPT.findall(text)]
    assert sorted(numbers) == list(range(1, 201))
    listing, _ = spawn("outbox", "--config", str(config)).communicate(timeout=60)
    assert "发件箱中没有待发送、失败或结果不明的消息" in listing
