"""Backups of a PostgreSQL database with the server's own tools.

`xinxibot backup PATH` copies the SQLite file; on PostgreSQL it calls
`backup_postgres`, which runs `pg_dump` in its custom format (compressed, restored
with `pg_restore`, table by table if need be). `pg_dump` takes one consistent
snapshot while the bots keep running; the scheduler's job table is included.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url


def libpq_args(url: str) -> tuple[list[str], dict[str, str]]:
    """pg_dump/pg_restore connection options and environment for a SQLAlchemy URL."""
    u = make_url(url)
    args = ["--host", u.host or "localhost", "--port", str(u.port or 5432)]
    if u.username:
        args += ["--username", u.username]
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)  # not on the command line, where `ps` shows it
    return args, env


def backup_postgres(url: str, path: Path) -> Path:
    """Dump the database at `url` to `path` (pg_dump custom format); raises
    CalledProcessError with pg_dump's message when it fails."""
    args, env = libpq_args(url)
    subprocess.run(
        ["pg_dump", "--format=custom", "--no-owner", "--file", str(path), *args,
         make_url(url).database or ""],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return path
