"""The `xinxibot` command: init, run, demo, db upgrade."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from aiohttp import web

from .config import Config, ConfigError, database_url, load
from .render import TEMPLATE_DIR, Renderer

DEFAULT_CONFIG = Path("xinxibot.toml")


def say(what: str, **context) -> None:
    print(Renderer().text("cli.txt.j2", what=what, **context))


def _load_config(path: str | None) -> Config:
    if path is None and DEFAULT_CONFIG.exists():
        path = str(DEFAULT_CONFIG)
    return load(Path(path) if path else None)


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        say("init_exists", path=path)
        return 1
    path.write_text((TEMPLATE_DIR / "config.toml.j2").read_text(encoding="utf-8"), encoding="utf-8")
    say("init_done", path=path)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .app import BotApp
    from .server import make_web_app

    config = _load_config(args.config)
    bot = BotApp(config)
    host, port = config.host_port
    say("run_start", host=host, port=port)
    web.run_app(
        make_web_app(bot),
        host=host,
        port=port,
        print=None,
        handle_signals=True,
        shutdown_timeout=10,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .sandbox import make_demo_app

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

    app = make_demo_app(db_path, args.host, args.port, on_start=started)
    web.run_app(app, host=args.host, port=args.port, print=None, shutdown_timeout=5)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = _load_config(args.config)

    async def nothing(db) -> None:
        return None

    _run_with_db(config, nothing)
    say("upgraded", url=database_url(config))
    return 0


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
    from datetime import date, datetime, timedelta

    from handlers.export import write_workbook
    from storage.standings import period_containing

    config = _load_config(args.config)
    day = date.fromisoformat(args.date) if args.date else date.today()
    period = period_containing(PERIODS[args.period], datetime.combine(day, datetime.min.time()))
    end = min(period.end, datetime.combine(day, datetime.min.time()) + timedelta(days=1))

    async def work(db):
        async with db.reader() as s:
            return await write_workbook(
                db, s, config.bot.county, period.start, end, Path.cwd(), Path(args.out)
            )

    path = _run_with_db(config, work)
    say("export_done", path=path)
    return 0


def cmd_standings(args: argparse.Namespace) -> int:
    from handlers.standings import ranking
    from storage.queries import Repo

    from .app import BotApp

    config = _load_config(args.config)
    bot = BotApp(config)

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
                db, path, datetime.now(config.tz).replace(tzinfo=None), args.skip_bad
            ),
        )
    except (OSError, ValueError):
        say("import_unreadable", path=path)
        return 2
    say("import_report", result=result, path=path, skip_bad=args.skip_bad)
    return 1 if result.problems and not result.imported else 0


def cmd_units_template(args: argparse.Namespace) -> int:
    from handlers.unit_import import write_template

    write_template(Path(args.out))
    say("template_written", path=args.out)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xinxibot", description="政务信息工作机器人 (county government information bot)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("init", help="write a commented xinxibot.toml")
    s.add_argument("--path", default=str(DEFAULT_CONFIG))
    s.add_argument("--force", action="store_true", help="overwrite an existing file")
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("run", help="run the bot (OneBot v11 HTTP POST / reverse WebSocket)")
    s.add_argument("--config", help="config file (default: ./xinxibot.toml if present)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("demo", help="demo county on SQLite with the sandbox page")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--db", default="xinxibot-demo.db")
    s.add_argument("--fresh", action="store_true", help="start from a new demo database")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser(
        "rescore", help="recompute points under the current rule file and print what changed"
    )
    s.add_argument(
        "--from", dest="from_date", required=True, help="first date to recompute, YYYY-MM-DD"
    )
    s.add_argument("--dry-run", action="store_true", help="print the changes without saving them")
    s.add_argument("--config")
    s.set_defaults(func=cmd_rescore)

    s = sub.add_parser("export", help="Excel workbook of standings and drafts")
    s.add_argument("--period", choices=sorted(PERIODS), default="month")
    s.add_argument("--date", help="a day in the period (default: today)")
    s.add_argument("--out", required=True, help="output .xlsx path")
    s.add_argument("--config")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("standings", help="print the ranking of the current period")
    s.add_argument("--period", choices=sorted(PERIODS), default="year")
    s.add_argument("--config")
    s.set_defaults(func=cmd_standings)

    s = sub.add_parser("outbox", help="list messages that are pending, failed, unknown or dropped")
    s.add_argument("--all", action="store_true", help="include sent messages")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--config")
    s.set_defaults(func=cmd_outbox)

    s = sub.add_parser("units", help="import units, officers and quotas from a sheet")
    units_sub = s.add_subparsers(dest="units_command", required=True)
    u = units_sub.add_parser("import", help="import FILE.xlsx or FILE.csv")
    u.add_argument("file")
    u.add_argument(
        "--skip-bad", action="store_true", help="import the good rows even if some rows are bad"
    )
    u.add_argument("--config")
    u.set_defaults(func=cmd_units_import)
    u = units_sub.add_parser(
        "template", help="write an empty import sheet with the expected headers"
    )
    u.add_argument("--out", default="单位导入模板.xlsx")
    u.set_defaults(func=cmd_units_template)

    s = sub.add_parser("db", help="database maintenance")
    db_sub = s.add_subparsers(dest="db_command", required=True)
    u = db_sub.add_parser("upgrade", help="apply schema migrations")
    u.add_argument("--config")
    u.set_defaults(func=cmd_db_upgrade)
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
        say("config_error", key=exc.key, problem=exc.problem, allowed=exc.allowed, value=exc.value)
        return 2
    except DatabaseUnavailable as exc:
        say("db_unreachable", url=exc.url, error=exc.error)
        return 3


if __name__ == "__main__":
    sys.exit(main())
