"""A copy of the live SQLite database, taken through SQLite's online backup API.

The copy is read in one step inside one read transaction: in WAL mode the bot
keeps committing meanwhile, and the copy is the database as of one commit. It
is written beside the target and renamed into place only after PRAGMA
integrity_check passed, so a half-written file never carries the backup's name.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SQLITE_PREFIX = "sqlite+aiosqlite:///"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite database URL (None: another database, or in memory)."""
    if not url.startswith(SQLITE_PREFIX):
        return None
    rest = url[len(SQLITE_PREFIX) :]
    return Path(rest) if rest and rest != ":memory:" else None


class BackupFailed(Exception):
    """The copy did not pass SQLite's integrity check; nothing was written."""


def backup_sqlite(source: Path, target: Path) -> int:
    """Copy the database `source` to `target`; returns the copy's size in bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # all pages in one step: one consistent snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            dst.close()
    finally:
        src.close()
    if verdict != "ok":
        partial.unlink(missing_ok=True)
        raise BackupFailed(verdict)
    os.replace(partial, target)
    return target.stat().st_size
