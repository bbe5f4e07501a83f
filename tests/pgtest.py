"""The PostgreSQL run of the suite: one database per test.

`XINXIBOT_TEST_DATABASE=postgresql+asyncpg://USER@HOST:PORT/DB` names a server
and a database to connect to for administration. A template database is
migrated once per run; each test's database is cloned from it
(`CREATE DATABASE … TEMPLATE …`, ~0.2 s against ~1 s for running the
migrations) and dropped after the test by a background thread, because
`DROP DATABASE` waits for a checkpoint (~1 s) that the next test need not wait
for. Names start with `xinxibot_t<pid>_`; databases left by a run that was
killed are dropped by the next run.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

BASE_URL = os.environ.get("XINXIBOT_TEST_DATABASE", "")
ON_POSTGRES = BASE_URL.startswith("postgresql")
PREFIX = f"xinxibot_t{os.getpid()}_"
TEMPLATE = PREFIX + "template"

_created: dict[tuple[str, str], str] = {}  # (tmp_path, name) -> database, this test's
_counter = iter(range(1, 1_000_000))
_template_ready = False
_dropper: _Dropper | None = None


def url_of(database: str, driver: str = "asyncpg") -> str:
    url = make_url(BASE_URL).set(drivername=f"postgresql+{driver}", database=database)
    return url.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin() -> psycopg.Connection:
    return psycopg.connect(libpq_url(BASE_URL), autocommit=True)


def _drop_stale(conn: psycopg.Connection) -> None:
    """Databases of earlier runs whose process is gone."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE 'xinxibot\\_t%\\_%'"
    ).fetchall()
    for (name,) in rows:
        pid = name[len("xinxibot_t") :].split("_", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ensure_template() -> None:
    global _template_ready
    if _template_ready:
        return
    from alembic import command

    from storage.migrate import alembic_config

    with _admin() as conn:
        _drop_stale(conn)
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}" TEMPLATE template0')
    engine = create_engine(url_of(TEMPLATE, "psycopg"))
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    engine.dispose()
    _template_ready = True


def database(tmp_path: Path, name: str, migrated: bool) -> str:
    """The URL of this test's database `name` (created on first use)."""
    key = (str(tmp_path), name)
    if key not in _created:
        if migrated:
            _ensure_template()
        db = f"{PREFIX}{next(_counter)}"
        with _admin() as conn:
            template = TEMPLATE if migrated else "template0"
            conn.execute(f'CREATE DATABASE "{db}" TEMPLATE "{template}"')
        _created[key] = db
    return url_of(_created[key])


def query(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute(sql).fetchall()


def connect(url: str) -> psycopg.Connection:
    """A session of its own on the database at `url` (another process, as the bot sees it)."""
    return psycopg.connect(libpq_url(url))


def block_key(url: str, key: str) -> psycopg.Connection:
    """An open transaction that has inserted the processed-event `key`: another
    transaction claiming the same key waits until this one ends (`.rollback()`)."""
    conn = connect(url)
    conn.execute("INSERT INTO processed_event (key, created_at) VALUES (%s, now())", (key,))
    return conn


def waiting_on_locks(url: str) -> int:
    """Sessions of the database at `url` waiting for a lock now."""
    [(n,)] = query(
        url,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return n


class _Dropper(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="drop-test-databases", daemon=True)
        self.names: queue.Queue[str | None] = queue.Queue()

    def run(self) -> None:
        with _admin() as conn:
            while (name := self.names.get()) is not None:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_test_databases() -> None:
    """After each test: its databases go to the background dropper."""
    global _dropper
    if not _created:
        return
    if _dropper is None:
        _dropper = _Dropper()
        _dropper.start()
    for db in _created.values():
        _dropper.names.put(db)
    _created.clear()


def finish() -> None:
    """End of the run: wait for the drops, then drop the template."""
    if _dropper is not None:
        _dropper.names.put(None)
        _dropper.join()
    if _template_ready:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
