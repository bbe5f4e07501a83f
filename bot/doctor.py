"""`xinxibot doctor`: a deployer's checks of a config, one line per check.

Each check is a `Check` (what, outcome, facts); templates/doctor.txt.j2 turns
them into Chinese lines. The OneBot checks only use `call(self_id, action,
params)`, so any transport with that method (the HTTP API today, a forward
WebSocket client later) can be checked the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from storage import migrate
from storage.backup import sqlite_path
from storage.db import make_engine

from .clock import Clock
from .config import Config, ConfigError, database_url, load
from .onebot import Event
from .rules import load_rules
from .transport import ApiResult, ForwardWs, HttpApi, OneBotApi, Transport
from .workdays import WorkCalendar

log = logging.getLogger(__name__)

# The example values `xinxibot init` writes (templates/config.toml.j2).
PLACEHOLDER_GROUP = 123456789
PLACEHOLDER_COORDINATOR = "10001"


@dataclass
class Check:
    what: str  # which check; the template has a sentence for each
    outcome: str  # ok, warn (works, but look at it), fail
    facts: dict[str, Any] = field(default_factory=dict)


def placeholders(config: Config) -> dict[str, list]:
    """The example values from `xinxibot init` still in the config (empty: none)."""
    left = {
        "groups": [g for g in config.onebot.groups if g == PLACEHOLDER_GROUP],
        "coordinators": [c for c in config.bot.coordinators if c == PLACEHOLDER_COORDINATOR],
    }
    return left if any(left.values()) else {}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def diagnose(
    path: Path | None, api: Transport | None = None, today: date | None = None
) -> list[Check]:
    """Every check of the config at `path` (None: defaults plus environment).

    `api` replaces the HTTP API client built from `api_url` (tests, other transports)."""
    try:
        config = load(path)
        load_rules(config.base_dir / config.bot.scoring if config.bot.scoring else None)
    except ConfigError as exc:
        return [Check("config", "fail", {"path": path, "error": exc})]
    checks = [
        Check("config", "ok", {"path": path}),
        check_placeholders(config),
        check_people(config),
        check_listen(config),
        await check_database(config),
        check_calendar(config, today),
    ]
    if api is None and not config.onebot.api_url and config.onebot.ws_url:
        checks += await _through_forward_ws(config)
    elif api is None and config.onebot.api_url:
        timeout = float(config.onebot.api_timeout_seconds)
        http = HttpApi(config.onebot.api_url, config.onebot.access_token, timeout)
        try:
            checks += await check_onebot(config, http)
        finally:
            await http.close()
    elif api is not None:
        checks += await check_onebot(config, api)
    else:
        checks.append(Check("api_skipped", "warn"))
    return checks


async def _through_forward_ws(config: Config) -> list[Check]:
    """The API checks over the first forward WebSocket (`ws_url`), connected as `run` does."""
    timeout = float(config.onebot.api_timeout_seconds)
    api = OneBotApi(timeout)
    connected = asyncio.Event()

    async def ignore(_event: Event) -> None:
        return None

    async def on_connect() -> None:
        connected.set()

    ws = ForwardWs(config.onebot.ws_url[0], config.onebot.access_token, api, ignore, on_connect)
    ws.start()
    try:
        async with asyncio.timeout(timeout):
            await connected.wait()
        return await check_onebot(config, api)
    except TimeoutError:
        return [Check("api", "fail", {"why": "unreachable", "via": "ws_url"})]
    finally:
        await ws.stop()


def check_placeholders(config: Config) -> Check:
    left = placeholders(config)
    return Check("placeholders", "fail" if left else "ok", left)


def check_people(config: Config) -> Check:
    facts = {"groups": len(config.onebot.groups), "coordinators": len(config.bot.coordinators)}
    return Check("people", "ok" if all(facts.values()) else "fail", facts)


def check_listen(config: Config) -> Check:
    facts = {
        "listen": config.bot.listen,
        "loopback": is_loopback(config.host_port[0]),
        "secret": bool(config.onebot.secret),
        "token": bool(config.onebot.access_token),
    }
    open_to_all = not facts["loopback"] and not facts["secret"] and not facts["token"]
    return Check("listen", "fail" if open_to_all else "ok", facts)


async def check_database(config: Config) -> Check:
    url = database_url(config)
    file = sqlite_path(url)
    if file is not None and not file.exists():
        return Check("database", "warn", {"state": "absent", "path": file})
    where = str(file) if file is not None else url.split("@")[-1]  # no password in the output
    try:
        engine = make_engine(url)
    except ImportError:  # asyncpg not installed
        return Check("database", "fail", {"state": "driver_missing", "where": where})
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        revision = await migrate.current(engine)
    except (OSError, SQLAlchemyError) as exc:
        log.warning("database check: %r", exc)
        return Check("database", "fail", {"state": "unreachable", "where": where})
    finally:
        await engine.dispose()
    if revision == migrate.HEAD:
        return Check("database", "ok", {"state": "current", "where": where})
    if revision is None:
        return Check("database", "warn", {"state": "empty", "where": where})
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        ScriptDirectory.from_config(migrate.alembic_config()).get_revision(revision)
    except CommandError:
        return Check("database", "fail", {"state": "unknown", "where": where, "rev": revision})
    return Check("database", "warn", {"state": "behind", "where": where, "rev": revision})


def check_calendar(config: Config, today: date | None) -> Check:
    year = (today or Clock(config.tz).now().date()).year
    calendar = WorkCalendar(config.calendar.holidays, config.calendar.workdays)
    this, following = calendar.covers(year), calendar.covers(year + 1)
    outcome = "ok" if this and following else "warn" if this else "fail"
    return Check("calendar", outcome, {"year": year, "this": this, "next": following})


def _code(result: ApiResult) -> str:
    """The status or return code in HttpApi's error: "HTTP <status>" or "<retcode> <msg>"."""
    words = result.error.split()
    return words[-1] if words[:1] == ["HTTP"] else (words or [""])[0]


def _failure(result: ApiResult) -> dict[str, str]:
    """Why a call failed (a code of the template), and the code the peer answered."""
    if result.status == "down":
        return {"why": "unreachable"}
    if result.status == "unknown":
        return {"why": "no_answer"}
    code = _code(result)
    return {"why": "token" if code in ("401", "403", "1403") else "refused", "code": code}


def _ids(rows: Any, key: str) -> set[int]:
    """Ids from a list answer; implementations send them as numbers or strings."""
    out = set()
    for row in rows if isinstance(rows, list) else []:
        try:
            out.add(int(row[key]))
        except (KeyError, TypeError, ValueError):
            continue
    return out


async def check_onebot(config: Config, api: Transport) -> list[Check]:
    """The account behind the API, its groups, and the coordinators in them."""
    login = await api.call(None, "get_login_info", {})
    if not login.ok or not isinstance(login.data, dict):
        return [Check("api", "fail", _failure(login))]
    self_id = int(login.data.get("user_id", 0)) or None
    checks = [Check("api", "ok", {"account": self_id, "nickname": login.data.get("nickname", "")})]
    listed = await api.call(self_id, "get_group_list", {})
    if not listed.ok:
        return [*checks, Check("groups", "fail", _failure(listed))]
    joined = _ids(listed.data, "group_id")
    coordinators = config.coordinator_ids
    for group in config.onebot.groups:
        if group not in joined:
            checks.append(Check("group", "fail", {"group": group}))
            continue
        members = await api.call(self_id, "get_group_member_list", {"group_id": group})
        if not members.ok:
            checks.append(Check("group", "warn", {"group": group, **_failure(members)}))
            continue
        missing = sorted(coordinators - _ids(members.data, "user_id"))
        outcome = "fail" if missing else "ok"
        checks.append(Check("group", outcome, {"group": group, "missing": missing}))
    return checks
