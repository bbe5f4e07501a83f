"""`pg_dump` backup of a PostgreSQL county, restored into an empty database."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from storage.pgdump import backup_postgres, libpq_args

from .conftest import database_url, query

pytestmark = pytest.mark.postgres


def restore(path, url: str) -> None:
    args, env = libpq_args(url)
    subprocess.run(["pg_restore", "--no-owner", *args, "--dbname", url.rsplit("/", 1)[1], str(path)],
                   env=env, check=True, capture_output=True, text=True)  # fmt: skip


async def test_backup_restores_every_row(group, tmp_path):
    await group.say(10020, "/报送 备份之前的稿件\n正文")
    url = group.bot.config.bot.database
    path = await asyncio.to_thread(backup_postgres, url, tmp_path / "county.dump")
    await group.say(10020, "/报送 备份之后的稿件\n正文")

    empty = database_url(tmp_path, "restored", migrated=False)
    await asyncio.to_thread(restore, path, empty)
    assert query(empty, "select title from draft") == [("备份之前的稿件",)]
    assert query(empty, "select count(*) from member") == query(url, "select count(*) from member")
    assert query(empty, "select version_num from alembic_version") == query(
        url, "select version_num from alembic_version"
    )


async def test_xinxibot_backup_runs_pg_dump_into_a_folder(group, tmp_path):
    await group.say(10020, "/报送 命令行备份的稿件\n正文")
    url = group.bot.config.bot.database
    config = tmp_path / "xinxibot.toml"
    config.write_text(f'[bot]\ndatabase = "{url}"\n', encoding="utf-8")
    folder = tmp_path / "backups"
    folder.mkdir()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot.cli", "backup", f"{folder}/", "--config", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (dump,) = folder.glob("xinxibot-*.dump")  # a dated file in the folder
    assert done.stdout.startswith(f"已用 pg_dump 备份 PostgreSQL 数据库到 {dump}")
    empty = database_url(tmp_path, "restored", migrated=False)
    await asyncio.to_thread(restore, dump, empty)
    assert ("命令行备份的稿件",) in query(empty, "select title from draft")
