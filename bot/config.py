"""Configuration: a TOML file, every key overridable by XINXIBOT_<SECTION>_<KEY>.

Each section is a dataclass; the field type drives parsing of environment
values and validation. A wrong key or value raises ConfigError naming the key
and what is allowed, as codes; the CLI renders them from templates (labels.toml
[ALLOWED]) and stops, so no English reaches the deployer.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "XINXIBOT_"


class ConfigError(Exception):
    """A config key with a bad value, or an unknown key.

    `problem` is a code templates/config_error.txt.j2 turns into a sentence:
    unknown_section, unknown_key, missing, bad_type, bad_value, bad_toml, unreadable.
    `allowed` is a code of templates/labels.toml [ALLOWED] (for unreadable: of
    [UNREADABLE]); `choices` are key names or values, shown as they are.
    """

    source = "config"  # which file the template names

    def __init__(
        self,
        key: str,
        problem: str,
        allowed: str = "",
        value: Any = None,
        choices: Sequence[str] = (),
    ) -> None:
        super().__init__(f"{key}: {problem} (allowed: {allowed} {list(choices)}; got {value!r})")
        self.key = key
        self.problem = problem
        self.allowed = allowed
        self.value = value
        self.choices = tuple(choices)


def _check(ok: bool, allowed: str) -> str | None:
    return None if ok else allowed


_HHMM = re.compile(r"^([01]?\d|2[0-3]):[0-5]\d$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _valid_timezone(v: str) -> str | None:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return "timezone"
    return None


def _valid_listen(v: str) -> str | None:
    host, _, port = v.rpartition(":")
    return _check(
        bool(host) and port.isdigit() and int(port) < 65536,
        "listen",
    )


def _valid_database(v: str) -> str | None:
    return _check(
        v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")),
        "database",
    )


def _valid_url_or_empty(v: str) -> str | None:
    return _check(
        v == "" or re.match(r"^(https?|wss?)://", v) is not None,
        "url_or_empty",
    )


def _valid_ws_urls(v: list[str]) -> str | None:
    return _check(
        all(re.match(r"^wss?://[^\s/]+", u) for u in v),
        "ws_urls",
    )


def _valid_user_ids(v: list[str]) -> str | None:
    return _check(all(s.isdigit() for s in v), "user_ids")


def _valid_weekly(v: str) -> str | None:
    day, _, hm = v.partition(" ")
    return _check(day in _WEEKDAYS and bool(_HHMM.match(hm)), "weekly")


def _valid_monthly_list(v: list[str]) -> str | None:
    def one(s: str) -> bool:
        day, _, hm = s.partition(" ")
        return (
            bool(re.match(r"^-?\d{1,2}$", day))
            and 1 <= abs(int(day)) <= 31
            and bool(_HHMM.match(hm))
        )

    return _check(all(one(s) for s in v), "monthly_list")


def _valid_quiet(v: str) -> str | None:
    a, _, b = v.partition("-")
    return _check(
        v == "" or (bool(_HHMM.match(a)) and bool(_HHMM.match(b))),
        "quiet_hours",
    )


def _valid_dates(v: list[str]) -> str | None:
    try:
        for s in v:
            date.fromisoformat(s)
    except ValueError:
        return "dates"
    return None


def _at_least_64(v: int) -> str | None:
    return _check(v >= 64, "at_least_64")


def _positive(v: int) -> str | None:
    return _check(v > 0, "positive")


def _non_negative(v: int) -> str | None:
    return _check(v >= 0, "non_negative")


def _valid_groups(v: list[int]) -> str | None:
    return _check(all(g > 0 for g in v), "groups")


def _valid_hosts(v: list[str]) -> str | None:
    return _check(
        all(re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?", h) for h in v),
        "hosts",
    )


def rule(check: Callable[[Any], str | None], one_or_list: bool = False) -> Any:
    """Field metadata: the validity check; `one_or_list` lets a list key be given as one value."""
    return {"check": check, "one_or_list": one_or_list}


@dataclass
class BotSection:
    county: str = "高县"
    bulletin: str = "高县政务信息"
    timezone: str = field(default="Asia/Shanghai", metadata=rule(_valid_timezone))
    database: str = field(default="sqlite+aiosqlite:///xinxibot.db", metadata=rule(_valid_database))
    listen: str = field(default="127.0.0.1:8080", metadata=rule(_valid_listen))
    coordinators: list[str] = field(default_factory=list, metadata=rule(_valid_user_ids))
    scoring: str = ""
    files_dir: str = "files"


@dataclass
class OneBotSection:
    # The bot's own QQ account; 0: learnt from events (one process on SQLite).
    # Required on PostgreSQL, where several processes may share the database.
    self_id: int = field(default=0, metadata=rule(_non_negative))
    groups: list[int] = field(default_factory=list, metadata=rule(_valid_groups))
    api_url: str = field(default="", metadata=rule(_valid_url_or_empty))
    ws_url: list[str] = field(default_factory=list, metadata=rule(_valid_ws_urls, one_or_list=True))
    access_token: str = ""
    secret: str = ""
    rate_per_minute: int = field(default=20, metadata=rule(_non_negative))
    account_interval_ms: int = field(default=1000, metadata=rule(_non_negative))
    api_timeout_seconds: int = field(default=10, metadata=rule(_positive))


@dataclass
class ScheduleSection:
    weekly_standings: str = field(default="mon 09:00", metadata=rule(_valid_weekly))
    quota_reminders: list[str] = field(
        default_factory=lambda: ["15 09:30", "25 09:30", "-3 09:30"],
        metadata=rule(_valid_monthly_list),
    )
    quiet_hours: str = field(default="21:00-08:00", metadata=rule(_valid_quiet))


@dataclass
class CalendarSection:
    holidays: list[str] = field(default_factory=list, metadata=rule(_valid_dates))
    workdays: list[str] = field(default_factory=list, metadata=rule(_valid_dates))


@dataclass
class LimitsSection:
    max_message_chars: int = field(default=20_000, metadata=rule(_positive))
    max_file_mb: int = field(default=20, metadata=rule(_positive))
    drafts_per_hour: int = field(default=30, metadata=rule(_positive))
    concurrent_downloads: int = field(default=2, metadata=rule(_positive))
    collect_idle_minutes: int = field(default=10, metadata=rule(_positive))
    download_stall_seconds: int = field(default=30, metadata=rule(_positive))
    parse_seconds: int = field(default=20, metadata=rule(_positive))
    parse_memory_mb: int = field(default=512, metadata=rule(_at_least_64))


@dataclass
class FilesSection:
    """Where uploaded files may be fetched from (see handlers/files.py)."""

    allowed_hosts: list[str] = field(default_factory=list, metadata=rule(_valid_hosts))
    local_dir: str = ""


def _percent(v: int) -> str | None:
    return _check(0 <= v <= 100, "percent")


@dataclass
class QuotasSection:
    tolerance_percent: int = field(default=10, metadata=rule(_percent))
    escalate_after: int = field(default=3, metadata=rule(_positive))


def _valid_classes(v: list[str]) -> str | None:
    return _check(
        all(c.strip() and " " not in c for c in v) and len(set(v)) == len(v),
        "classes",
    )


@dataclass
class UnitsSection:
    # 类别: units of one class are ranked together when [standings] by_class is on
    classes: list[str] = field(
        default_factory=lambda: ["乡镇", "一类部门", "二类部门", "直报点"],
        metadata=rule(_valid_classes),
    )


@dataclass
class StandingsSection:
    by_class: bool = False  # rank each class separately (standings, reports, 评比, exports)


def _valid_public_url(v: str) -> str | None:
    return _check(v == "" or re.fullmatch(r"https?://[^\s/?#@]+/?", v) is not None, "public_url")


@dataclass
class WebSection:
    """The web console (bot/console.py)."""

    public_url: str = field(default="", metadata=rule(_valid_public_url))  # "": from bot.listen
    session_idle_minutes: int = field(default=120, metadata=rule(_positive))


def _valid_issue_types(v: list[str]) -> str | None:
    return _check(
        all(t.strip() and " " not in t for t in v) and len(set(v)) == len(v), "issue_types"
    )


@dataclass
class BulletinSection:
    """The county bulletin /编期 compiles (handlers/bulletin.py); its name is bot.bulletin."""

    first_number: int = field(
        default=1, metadata=rule(_positive)
    )  # the first issue the bot numbers
    types: list[str] = field(default_factory=lambda: ["专报"], metadata=rule(_valid_issue_types))
    office: str = ""  # the editing office; "": the county's government office
    report_to: str = ""  # 报
    send_to: str = ""  # 送
    issue_to: str = ""  # 发
    editor: str = ""  # 编辑
    signer: str = ""  # 签发
    copies: int = field(default=0, metadata=rule(_non_negative))  # 印数; 0: left out
    recipients: list[str] = field(default_factory=list, metadata=rule(_valid_user_ids))


@dataclass
class Config:
    bot: BotSection = field(default_factory=BotSection)
    onebot: OneBotSection = field(default_factory=OneBotSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    calendar: CalendarSection = field(default_factory=CalendarSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    files: FilesSection = field(default_factory=FilesSection)
    quotas: QuotasSection = field(default_factory=QuotasSection)
    units: UnitsSection = field(default_factory=UnitsSection)
    standings: StandingsSection = field(default_factory=StandingsSection)
    web: WebSection = field(default_factory=WebSection)
    bulletin: BulletinSection = field(default_factory=BulletinSection)
    # Where the file was read from; relative paths in it resolve against its folder.
    base_dir: Path = field(default_factory=Path.cwd, compare=False)
    # The file itself (None: defaults and environment only); never served as an upload.
    config_file: Path | None = field(default=None, compare=False)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.bot.timezone)

    @property
    def coordinator_ids(self) -> set[int]:
        return {int(s) for s in self.bot.coordinators}

    @property
    def files_path(self) -> Path:
        return (self.base_dir / self.bot.files_dir).resolve()

    @property
    def public_url(self) -> str:
        """The address people open the console at, without a trailing slash."""
        return self.web.public_url.rstrip("/") or f"http://{self.bot.listen}"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.bot.listen.rpartition(":")
        return host, int(port)


SECTIONS: dict[str, type] = {
    f.name: f.type for f in dataclasses.fields(Config) if f.name not in ("base_dir", "config_file")
}


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def _coerce(key: str, hint: Any, value: Any, from_env: bool) -> Any:
    """Convert `value` to the field's type; env values arrive as strings."""
    origin = getattr(hint, "__origin__", None)
    if from_env:
        value = _parse_env(key, hint, value)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is list:
        (item,) = hint.__args__
        if item is int and isinstance(value, list):
            try:
                value = [int(v) for v in value]  # ids may be written as strings
            except (TypeError, ValueError):
                value = None
        if item is str and isinstance(value, list):
            value = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        ok = isinstance(value, list) and all(isinstance(v, item) for v in value)
    else:  # pragma: no cover - a new field type needs a branch here
        raise TypeError(hint)
    if not ok:
        raise ConfigError(key, "bad_type", _type_name(hint), value)
    return value


def _type_name(hint: Any) -> str:
    """The [ALLOWED] code of a field type."""
    names = {bool: "bool", int: "int", str: "str"}
    if hint in names:
        return names[hint]
    (item,) = hint.__args__
    return "int_list" if item is int else "str_list"


def _parse_env(key: str, hint: Any, raw: str) -> Any:
    if hint is str:
        return raw
    if hint is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(key, "bad_type", _type_name(hint), raw) from None
    if hint is bool:
        return {"true": True, "1": True, "false": False, "0": False}.get(raw.lower(), raw)
    raw = raw.strip()
    if raw.startswith("["):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(key, "bad_type", _type_name(hint), raw) from None
    return [s.strip() for s in raw.split(",") if s.strip()]


def build(
    data: Mapping[str, Any], env: Mapping[str, str] | None = None, base_dir: Path | None = None
) -> Config:
    """Build a Config from parsed TOML plus environment overrides; validate everything."""
    env = os.environ if env is None else env
    types = _section_types()
    for section in data:
        if section not in types:
            raise ConfigError(
                f"[{section}]", "unknown_section", value=section, choices=[f"[{s}]" for s in types]
            )
    sections: dict[str, Any] = {}
    for name, cls in types.items():
        given = data.get(name, {})
        if not isinstance(given, Mapping):
            raise ConfigError(f"[{name}]", "bad_type", "table", given)
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in given:
            if key not in fields:
                raise ConfigError(f"{name}.{key}", "unknown_key", value=key, choices=list(fields))
        values: dict[str, Any] = {}
        for fname, f in fields.items():
            full = f"{name}.{fname}"
            env_key = f"{ENV_PREFIX}{name.upper()}_{fname.upper()}"
            if env_key in env:
                values[fname] = _coerce(env_key, hints[fname], env[env_key], from_env=True)
            elif fname in given:
                value = given[fname]
                if f.metadata.get("one_or_list") and isinstance(value, str):
                    value = [value] if value else []
                values[fname] = _coerce(full, hints[fname], value, from_env=False)
            else:
                continue
            check = f.metadata.get("check")
            problem = check(values[fname]) if check else None
            if problem:
                raise ConfigError(
                    env_key if env_key in env else full, "bad_value", problem, values[fname]
                )
        sections[name] = cls(**values)
    return Config(**sections, base_dir=base_dir or Path.cwd())


_TOML_WHERE = re.compile(r"\(at line (\d+), column (\d+)\)")
_OS_REASONS = {errno.ENOENT: "not_found", errno.EACCES: "no_permission", errno.EISDIR: "directory"}


def read_toml(path: Path, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """A TOML file's contents; `error` names the file when it is unreadable or invalid.

    A syntax error carries its (line, column), or None at the end of the file:
    tomllib's English description is not shown."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        where = _TOML_WHERE.search(str(exc))
        place = (int(where[1]), int(where[2])) if where else None
        raise error(str(path), "bad_toml", value=place) from None
    except UnicodeDecodeError:
        raise error(str(path), "unreadable", "not_utf8") from None
    except OSError as exc:
        raise error(str(path), "unreadable", _OS_REASONS.get(exc.errno, "os_error")) from None


def load(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read a TOML config file (or none: defaults plus environment)."""
    if path is None:
        return build({}, env)
    config = build(read_toml(path), env, base_dir=path.resolve().parent)
    config.config_file = path.resolve()
    return config


def database_url(config: Config) -> str:
    """The database URL with a relative SQLite path resolved against the config's folder."""
    url = config.bot.database
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith("/"):
            return prefix + str((config.base_dir / rest).resolve())
    return url
