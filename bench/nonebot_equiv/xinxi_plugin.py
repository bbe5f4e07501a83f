"""The benchmark workload as a NoneBot2 plugin: /报送 and /我的稿件.

An honest equivalent of xinxibot's path for these commands: the same parsing
(title on the first line or up to the first space, body after it), the same
durable SQLite write (WAL, synchronous=FULL, one transaction: member lookup,
duplicate check, insert, month count, commit) before the receipt, and the
same receipt call (send_group_msg with an @-mention). One aiosqlite connection
with a lock around each transaction, as a plugin author would write it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import datetime, timedelta

import aiosqlite
from nonebot import get_driver, on_command
from nonebot.adapters.onebot.v11 import GroupMessageEvent, Message, MessageSegment
from nonebot.params import CommandArg

SCHEMA = """
CREATE TABLE IF NOT EXISTS unit (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS member (im_id INTEGER PRIMARY KEY, name TEXT, unit_id INTEGER);
CREATE TABLE IF NOT EXISTS draft (
    id INTEGER PRIMARY KEY AUTOINCREMENT, unit_id INTEGER, submitter_im INTEGER,
    title TEXT, body TEXT, char_count INTEGER, content_hash TEXT, submitted_at TEXT);
CREATE INDEX IF NOT EXISTS draft_unit_time ON draft (unit_id, submitted_at);
CREATE INDEX IF NOT EXISTS draft_hash ON draft (unit_id, content_hash);
CREATE INDEX IF NOT EXISTS draft_submitter ON draft (submitter_im, submitted_at);
"""

DRAFTS_PER_HOUR = 1_000_000  # the bench lifts xinxibot's flood guard the same way
db: aiosqlite.Connection | None = None
lock = asyncio.Lock()


@get_driver().on_startup
async def open_db() -> None:
    global db
    db = await aiosqlite.connect(os.environ["XINXI_DB"])
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.executescript(SCHEMA)
    await db.commit()


@get_driver().on_shutdown
async def close_db() -> None:
    if db is not None:
        await db.close()


submit = on_command("报送")
mine = on_command("我的稿件")


def split_title(text: str) -> tuple[str, str]:
    text = text.strip()
    first, _, rest = text.partition("\n")
    if not rest and " " in first:
        first, _, rest = first.partition(" ")
    return first.strip(), rest.strip()


async def member_unit(user_id: int) -> tuple[int, str] | None:
    """(unit id, unit name) of a registered officer."""
    cursor = await db.execute(
        "SELECT m.unit_id, u.name FROM member m JOIN unit u ON u.id = m.unit_id WHERE m.im_id = ?",
        (user_id,),
    )
    return await cursor.fetchone()


@submit.handle()
async def handle_submit(event: GroupMessageEvent, arg: Message = CommandArg()) -> None:  # noqa: B008 (NoneBot's injection idiom)
    title, body = split_title(arg.extract_plain_text())
    if not title or not body:
        await submit.finish(MessageSegment.at(event.user_id) + " 请写明标题和正文。")
    now = datetime.now()
    digest = hashlib.sha256(f"{title}\n{body}".encode()).hexdigest()
    async with lock:
        row = await member_unit(event.user_id)
        if row is None:
            await submit.finish(MessageSegment.at(event.user_id) + " 您尚未登记。")
        unit_id, unit_name = row
        hour_ago = (now - timedelta(hours=1)).isoformat(" ")
        (recent,) = await (
            await db.execute(
                "SELECT count(*) FROM draft WHERE submitter_im = ? AND submitted_at >= ?",
                (event.user_id, hour_ago),
            )
        ).fetchone()
        if recent >= DRAFTS_PER_HOUR:
            await submit.finish(
                MessageSegment.at(event.user_id) + f" 每小时最多报送{DRAFTS_PER_HOUR}篇。"
            )
        dup = await (
            await db.execute(
                "SELECT id FROM draft WHERE unit_id = ? AND content_hash = ?", (unit_id, digest)
            )
        ).fetchone()
        if dup is None:
            cur = await db.execute(
                "INSERT INTO draft (unit_id, submitter_im, title, body, char_count, content_hash, submitted_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    unit_id,
                    event.user_id,
                    title,
                    body,
                    len("".join(body.split())),
                    digest,
                    now.isoformat(" "),
                ),
            )
            number = cur.lastrowid
            month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).isoformat(" ")
            (nth,) = await (
                await db.execute(
                    "SELECT count(*) FROM draft WHERE unit_id = ? AND submitted_at >= ?",
                    (unit_id, month),
                )
            ).fetchone()
            await db.commit()
    if dup is not None:
        await submit.finish(MessageSegment.at(event.user_id) + f" 该稿件已报送，编号G{dup[0]}。")
    await submit.finish(
        MessageSegment.at(event.user_id)
        + f" 已收到 {unit_name}《{title}》，编号G{number}，本月第{nth}条。"
    )


@mine.handle()
async def handle_mine(event: GroupMessageEvent) -> None:
    async with lock:
        row = await member_unit(event.user_id)
        if row is None:
            await mine.finish(MessageSegment.at(event.user_id) + " 您尚未登记。")
        unit_id, unit_name = row
        drafts = await (
            await db.execute(
                "SELECT id, submitted_at, title, char_count FROM draft WHERE unit_id = ? "
                "ORDER BY submitted_at DESC LIMIT 5",
                (unit_id,),
            )
        ).fetchall()
        (total,) = await (
            await db.execute("SELECT count(*) FROM draft WHERE unit_id = ?", (unit_id,))
        ).fetchone()
    if not drafts:
        await mine.finish(MessageSegment.at(event.user_id) + f" {unit_name}暂无报送记录。")
    lines = [f"{unit_name}近期稿件（共{total}条）"]
    lines += [f"G{i} {at[5:10]}《{t}》已报送，{n}字" for i, at, t, n in drafts]
    await mine.finish(MessageSegment.at(event.user_id) + " " + "\n".join(lines))
