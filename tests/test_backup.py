"""`xinxibot backup`: a consistent copy of the SQLite database while the bot keeps committing."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import GROUP, populate, start_harness

pytestmark = pytest.mark.sqlite_only(
    "the online backup of the SQLite file; PostgreSQL's pg_dump is in test_pg_backup.py"
)

ROOT = Path(__file__).resolve().parents[1]
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}


def write_config(tmp_path: Path, database: str) -> Path:
    path = tmp_path / "xinxibot.toml"
    path.write_text(
        f'[bot]\ndatabase = "{database}"\ncoordinators = ["20001"]\n[onebot]\ngroups = [{GROUP}]\n',
        encoding="utf-8",
    )
    return path


def titles(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {t for (t,) in con.execute("select title from draft")}
    finally:
        con.close()


async def test_backup_while_the_bot_commits_drafts(tmp_path, fake_onebot):
    group, server = await start_harness(tmp_path, fake_onebot, limits__drafts_per_hour=10_000)
    try:
        await populate(group)
        for i in range(20):
            await group.say(10020, f"/报送 备份前的第{i}条信息\n正文{i}")
        before = titles(tmp_path / "bot.db")
        config = write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
        target = tmp_path / "backups" / "copy.db"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "backup", str(target), "--config", str(config),
            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        copying = asyncio.create_task(proc.communicate())
        during = 0
        while not copying.done() and during < 2000:  # keep committing while the copy runs
            await group.say(10030, f"/报送 备份时的第{during}条信息\n正文")
            during += 1
        out, err = await copying
    finally:
        await group.close()
        await server.close()

    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith(f"已备份数据库 {tmp_path / 'bot.db'} 到 {target}（")
    print(f"\n{during} drafts committed while the backup ran; {len(titles(target))} in the copy")
    assert during > 0  # drafts were committed while the backup ran
    con = sqlite3.connect(target)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    con.close()
    copied = titles(target)
    assert before <= copied  # everything committed before the backup started is in it
    assert copied <= titles(tmp_path / "bot.db")  # and nothing the bot never committed
    assert not list(target.parent.glob("*.partial"))


def xinxibot(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_backup_into_a_folder_and_what_it_cannot_back_up(tmp_path):
    db = tmp_path / "bot.db"
    config = write_config(tmp_path, f"sqlite+aiosqlite:///{db}")
    missing = xinxibot("backup", str(tmp_path / "b.db"), "--config", str(config), cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stdout.startswith(f"数据库文件 {db} 不存在，没有可备份的内容。")
    assert xinxibot("db", "upgrade", "--config", str(config), cwd=tmp_path).returncode == 0
    folder = tmp_path / "backups"
    done = xinxibot("backup", f"{folder}/", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (copy,) = folder.glob("xinxibot-*.db")  # a dated file in the folder
    assert "draft" in {
        r[0] for r in sqlite3.connect(copy).execute("select name from sqlite_master")
    }
