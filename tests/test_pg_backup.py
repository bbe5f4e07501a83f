"""`pg_dump` backup of a PostgreSQL county, restored into an empty database."""

from __future__ import annotations

import asyncio
import subprocess

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
