"""Start-up imports what the first event needs; the Word, Excel, migration and
PostgreSQL libraries load on first use, and work then (DESIGN §9: start-up
under 1 s, timed by bench/startup.py, never here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Loaded only by the work that needs them.
ON_FIRST_USE = (
    "alembic",  # a database behind the newest migration (storage/migrate.py)
    "mako",  # Alembic's
    "docx",  # the bulletin's Word file, reading an uploaded .docx
    "lxml",
    "openpyxl",  # /导出, `units import`
    "sqlalchemy.dialects.postgresql",  # on SQLite
    "asyncpg",
    "psycopg",
)

PROGRAM = """
import asyncio, json, sys
from datetime import date
from pathlib import Path

import bot.cli, bot.app, bot.server, handlers  # what `xinxibot run` imports to serve

out = {"at_start": [m for m in LAZY if m in sys.modules]}

from sqlalchemy import text
from storage import migrate
from storage.db import Database

async def upgrade():
    db = Database(f"sqlite+aiosqlite:///{TMP / 'new.db'}")
    await migrate.upgrade(db.engine)
    async with db.engine.connect() as conn:
        out["tables"] = (await conn.execute(text("SELECT count(*) FROM sqlite_master"))).scalar()
    out["revision"] = await migrate.current(db.engine)
    await db.close()

asyncio.run(upgrade())
out["migrated"] = "alembic" in sys.modules

from handlers.unit_import import write_template
write_template(TMP / "units.xlsx")
out["workbook"] = "openpyxl" in sys.modules and (TMP / "units.xlsx").stat().st_size > 0

from bot.render import Renderer
from handlers import bulletin_doc, file_reader
issue = bulletin_doc.Issue("县政务信息", "", 3, "县政府办公室", date(2026, 11, 23),
                           [bulletin_doc.Piece("标题", "正文第一段", "城关镇")])
bulletin_doc.build(TMP / "issue.docx", issue, Renderer().labels["BULLETIN"])
read = file_reader.read(".docx", (TMP / "issue.docx").read_bytes(), 20000)
out["document"] = "docx" in sys.modules and "正文第一段" in json.dumps(read, ensure_ascii=False)
print(json.dumps(out))
"""


@pytest.mark.no_database
def test_heavy_libraries_load_on_first_use_and_work_then(tmp_path):
    program = f"LAZY = {ON_FIRST_USE!r}\nTMP = __import__('pathlib').Path({str(tmp_path)!r})\n"
    result = subprocess.run(
        [sys.executable, "-c", program + PROGRAM],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["at_start"] == []
    assert out["migrated"] and out["tables"] > 20
    from storage import migrate

    assert out["revision"] == migrate.HEAD
    assert out["workbook"]
    assert out["document"]
