"""The `xinxibot` command: init, doctor, run, demo, backup, db upgrade and the rest.

The composition root: the one module of bot/ that imports the workflows
(handlers.ROUTERS) and hands them to BotApp."""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import logging
import os
import socket
import sys
from datetime import datetime
from pathlib import Path

from aiohttp import web

from .config import Config, ConfigError, database_url, load, read_toml
from .render import TEMPLATE_DIR, Renderer

DEFAULT_CONFIG = Path("xinxibot.toml")


def say(what: str, **context) -> None:
    print(Renderer().text("cli.txt.j2", what=what, **context))


def _config_path(path: str | None) -> Path | None:
    if path is None and DEFAULT_CONFIG.exists():
        return DEFAULT_CONFIG
    return Path(path) if path else None


def _load_config(path: str | None) -> Config:
    return load(_config_path(path))


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        say("init_exists", path=path)
        return 1
    path.write_text((TEMPLATE_DIR / "config.toml.j2").read_text(encoding="utf-8"), encoding="utf-8")
    say("init_done", path=path)
    return 0


LISTEN_FAILURES = {errno.EADDRINUSE: "in_use", errno.EACCES: "no_permission"}


def cmd_run(args: argparse.Namespace) -> int:
    from handlers import ROUTERS

    from . import server
    from .app import BotApp
    from .doctor import placeholders

    config = _load_config(args.config)
    left = placeholders(config)
    if left:
        say("run_placeholders", **left)
        return 2
    bot = BotApp(config, ROUTERS)
    host, port = config.host_port
    try:
        sock = server.bind(host, port)
    except OSError as exc:
        reason = "bad_address" if isinstance(exc, socket.gaierror) else "other"
        say("listen_failed", host=host, port=port, reason=LISTEN_FAILURES.get(exc.errno, reason))
        return 1
    port = sock.getsockname()[1]
    # a web.run_app with a cap on open connections; "started" once connections are accepted
    server.run(server.make_web_app(bot), sock, lambda: say("run_start", host=host, port=port))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose

    checks = asyncio.run(diagnose(_config_path(args.config)))
    print(Renderer().text("doctor.txt.j2", checks=checks))
    return 1 if any(c.outcome == "fail" for c in checks) else 0


def cmd_backup(args: argparse.Namespace) -> int:
    from storage.backup import BackupFailed, backup_sqlite, sqlite_path

    config = _load_config(args.config)
    url = database_url(config)
    source = sqlite_path(url)
    target = Path(args.path)
    if target.is_dir() or args.path.endswith(("/", os.sep)):
        suffix = ".db" if source is not None else ".dump"
        target = target / f"xinxibot-{datetime.now(config.tz):%Y%m%d-%H%M%S}{suffix}"
    if source is None:
        return _backup_postgres(url, target)
    if not source.exists():
        say("backup_no_database", path=source)
        return 1
    try:
        size = backup_sqlite(source, target)
    except BackupFailed:
        say("backup_failed", path=source)
        return 1
    say("backup_done", source=source, path=target, mb=round(size / 1_048_576, 1))
    return 0


def _backup_postgres(url: str, target: Path) -> int:
    """pg_dump's consistent snapshot of a running county (custom format, for pg_restore)."""
    import subprocess

    from storage.pgdump import backup_postgres

    try:
        backup_postgres(url, target)
    except (OSError, subprocess.CalledProcessError) as exc:
        logging.getLogger(__name__).error("pg_dump failed: %s", getattr(exc, "stderr", exc))
        say("backup_pg_failed", path=target)
        return 1
    say("backup_pg_done", path=target, mb=round(target.stat().st_size / 1_048_576, 1))
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_demo(args: argparse.Namespace) -> int:
    from handlers import ROUTERS

    from .sandbox import make_demo_app

    # Whoever reaches the sandbox acts as a coordinator: never on a network by accident.
    if not _is_loopback(args.host):
        if not args.public:
            say("demo_not_loopback", host=args.host, port=args.port)
            return 2
        say("demo_public", host=args.host, port=args.port)
    db_path = Path(args.db)
    if args.fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db_path) + suffix).unlink(missing_ok=True)

    def started(bot, seeded: bool) -> None:
        say(
            "demo_start",
            county=bot.config.bot.county,
            host=args.host,
            port=args.port,
            db=db_path,
            seeded=seeded,
        )

    app = make_demo_app(db_path, args.host, args.port, ROUTERS, on_start=started)
    web.run_app(app, host=args.host, port=args.port, print=None, shutdown_timeout=5)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = _load_config(args.config)

    async def nothing(db) -> None:
        return None

    _run_with_db(config, nothing)
    say("upgraded", url=database_url(config))
    return 0


VERIFY_LIMIT = 50  # differences listed; the count is always given


def cmd_db_verify(args: argparse.Namespace) -> int:
    """Rebuild the rollups from the raw rows and compare; 1 when they differ (unless
    --repair rewrote them and they agree now)."""
    from storage import rollup
    from storage.db import display_url

    config = _load_config(args.config)

    async def work(db):
        differences = await rollup.verify(db)
        if differences and args.repair:
            await rollup.repair(db)
            return differences, not await rollup.verify(db)
        return differences, False

    differences, repaired = _run_with_db(config, work)
    say("verify", url=display_url(database_url(config)), differences=differences,
        limit=VERIFY_LIMIT, repaired=repaired)  # fmt: skip
    return 0 if not differences or repaired else 1


PERIODS = {
    "周": "week",
    "月": "month",
    "季": "quarter",
    "年": "year",
    "week": "week",
    "month": "month",
    "quarter": "quarter",
    "year": "year",
}


def _run_with_db(config: Config, work):
    """Run `work(db)` on a migrated database and close it."""
    from storage import migrate
    from storage.db import Database

    async def run():
        db = Database(database_url(config))
        try:
            await migrate.upgrade(db.engine)
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(run())


def cmd_rescore(args: argparse.Namespace) -> int:
    from datetime import date, datetime

    from handlers.scoring import rescore

    from .rules import load_rules

    config = _load_config(args.config)
    rules = load_rules(config.base_dir / config.bot.scoring if config.bot.scoring else None)
    since = datetime.combine(date.fromisoformat(args.from_date), datetime.min.time())
    changes = _run_with_db(config, lambda db: rescore(db, rules, since, apply=not args.dry_run))
    for c in changes:
        say("rescore_change", change=c, version=rules.version)
    say("rescore_summary", count=len(changes), since=since, version=rules.version, dry_run=args.dry_run,
        delta=round(sum(c.new_points - c.old_points for c in changes), 2))  # fmt: skip
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from datetime import date, datetime

    from handlers import ROUTERS
    from handlers.standings import export_workbook
    from storage.standings import period_containing

    from .app import BotApp

    config = _load_config(args.config)
    bot = BotApp(config, ROUTERS)
    day = date.fromisoformat(args.date) if args.date else bot.clock.now().date()
    # --date is a day inside the period: the whole period, up to now while it runs
    period = period_containing(PERIODS[args.period], datetime.combine(day, datetime.min.time()))

    async def work(db):
        try:
            async with db.reader() as s:
                return await export_workbook(bot, s, period, Path(args.out))
        finally:
            await bot.db.close()

    path = _run_with_db(config, work)
    say("export_done", path=path)
    return 0


def cmd_standings(args: argparse.Namespace) -> int:
    from handlers import ROUTERS
    from handlers.standings import ranking
    from storage.queries import Repo

    from .app import BotApp

    config = _load_config(args.config)
    bot = BotApp(config, ROUTERS)

    async def work(db):
        async with db.reader() as s:
            return await ranking(bot, Repo(s), PERIODS[args.period], None)

    print(_run_with_db(config, work))
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    import json as json_module

    from sqlalchemy import select

    from storage.models import Outbox

    config = _load_config(args.config)
    statuses = ["pending", "sending", "failed", "unknown", "dropped"] + (
        ["sent"] if args.all else []
    )

    async def work(db):
        async with db.reader() as s:
            q = (
                select(Outbox)
                .where(Outbox.status.in_(statuses))
                .order_by(Outbox.id.desc())
                .limit(args.limit)
            )
            return list((await s.execute(q)).scalars())

    rows = _run_with_db(config, work)
    texts = [
        "".join(seg["data"].get("text", "") for seg in json_module.loads(r.segments)).strip()
        for r in rows
    ]
    say("outbox", rows=list(zip(rows, texts, strict=True)))
    return 0


def cmd_units_import(args: argparse.Namespace) -> int:
    from datetime import datetime

    from handlers.unit_import import import_units

    config = _load_config(args.config)
    path = Path(args.file)
    try:
        result = _run_with_db(
            config,
            lambda db: import_units(
                db,
                path,
                datetime.now(config.tz).replace(tzinfo=None),
                config.units.classes,
                args.skip_bad,
            ),
        )
    except (OSError, ValueError):
        say("import_unreadable", path=path)
        return 2
    say("import_report", result=result, path=path, skip_bad=args.skip_bad,
        classes=config.units.classes)  # fmt: skip
    return 1 if result.problems and not result.imported else 0


def cmd_units_template(args: argparse.Namespace) -> int:
    from handlers.unit_import import write_template

    write_template(Path(args.out))
    say("template_written", path=args.out)
    return 0


def parser() -> argparse.ArgumentParser:
    h = read_toml(TEMPLATE_DIR / "cli_help.toml")
    p = argparse.ArgumentParser(prog="xinxibot", description=h["xinxibot"])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("init", help=h["init"])
    s.add_argument("--path", default=str(DEFAULT_CONFIG), help=h["init --path"])
    s.add_argument("--force", action="store_true", help=h["init --force"])
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("doctor", help=h["doctor"])
    s.add_argument("--config", help=h["--config"])
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("run", help=h["run"])
    s.add_argument("--config", help=h["--config"])
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("demo", help="demo county on SQLite with the sandbox page")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--db", default="xinxibot-demo.db")
    s.add_argument("--fresh", action="store_true", help="start from a new demo database")
    s.add_argument(
        "--public",
        action="store_true",
        help="allow a non-loopback --host: anyone who reaches the port acts as a coordinator",
    )
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("rescore", help=h["rescore"])
    s.add_argument("--from", dest="from_date", required=True, help=h["rescore --from"])
    s.add_argument("--dry-run", action="store_true", help=h["rescore --dry-run"])
    s.add_argument("--config", help=h["--config"])
    s.set_defaults(func=cmd_rescore)

    s = sub.add_parser("export", help=h["export"])
    s.add_argument("--period", choices=sorted(PERIODS), default="month", help=h["export --period"])
    s.add_argument("--date", help=h["export --date"])
    s.add_argument("--out", required=True, help=h["export --out"])
    s.add_argument("--config", help=h["--config"])
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("standings", help=h["standings"])
    s.add_argument(
        "--period", choices=sorted(PERIODS), default="year", help=h["standings --period"]
    )
    s.add_argument("--config", help=h["--config"])
    s.set_defaults(func=cmd_standings)

    s = sub.add_parser("outbox", help=h["outbox"])
    s.add_argument("--all", action="store_true", help=h["outbox --all"])
    s.add_argument("--limit", type=int, default=50, help=h["outbox --limit"])
    s.add_argument("--config", help=h["--config"])
    s.set_defaults(func=cmd_outbox)

    s = sub.add_parser("units", help=h["units"])
    units_sub = s.add_subparsers(dest="units_command", required=True)
    u = units_sub.add_parser("import", help=h["units import"])
    u.add_argument("file", help=h["units import file"])
    u.add_argument("--skip-bad", action="store_true", help=h["units import --skip-bad"])
    u.add_argument("--config", help=h["--config"])
    u.set_defaults(func=cmd_units_import)
    u = units_sub.add_parser("template", help=h["units template"])
    u.add_argument("--out", default="单位导入模板.xlsx", help=h["units template --out"])
    u.set_defaults(func=cmd_units_template)

    s = sub.add_parser("backup", help=h["backup"])
    s.add_argument("path", help=h["backup path"])
    s.add_argument("--config", help=h["--config"])
    s.set_defaults(func=cmd_backup)

    s = sub.add_parser("db", help=h["db"])
    db_sub = s.add_subparsers(dest="db_command", required=True)
    u = db_sub.add_parser("upgrade", help=h["db upgrade"])
    u.add_argument("--config", help=h["--config"])
    u.set_defaults(func=cmd_db_upgrade)
    u = db_sub.add_parser("verify", help=h["db verify"])
    u.add_argument("--repair", action="store_true", help=h["db verify --repair"])
    u.add_argument("--config", help=h["--config"])
    u.set_defaults(func=cmd_db_verify)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("alembic", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parser().parse_args(argv)
    from storage.db import DatabaseUnavailable

    try:
        return args.func(args)
    except ConfigError as exc:
        say("config_error", key=exc.key, problem=exc.problem, allowed=exc.allowed, value=exc.value,
            choices=exc.choices, source=exc.source)  # fmt: skip
        return 2
    except DatabaseUnavailable as exc:
        say("db_unreachable", url=exc.url, error=exc.error)
        return 3


if __name__ == "__main__":
    sys.exit(main())
