"""Configuration: a TOML file, every key overridable by XINXIBOT_<SECTION>_<KEY>.

Each section is a dataclass; the field type drives parsing of environment
values and validation. A wrong key or value raises ConfigError naming the key
and what is allowed; the CLI renders it from a template and stops.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "XINXIBOT_"


class ConfigError(Exception):
    """A config key with a bad value, or an unknown key.

    `problem` is a code the template turns into a sentence:
    unknown_section, unknown_key, bad_type, bad_value.
    """

    def __init__(self, key: str, problem: str, allowed: str = "", value: Any = None) -> None:
        super().__init__(f"{key}: {problem} (allowed: {allowed}; got {value!r})")
        self.key = key
        self.problem = problem
        self.allowed = allowed
        self.value = value


def _check(ok: bool, allowed: str) -> str | None:
    return None if ok else allowed


_HHMM = re.compile(r"^([01]?\d|2[0-3]):[0-5]\d$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _valid_timezone(v: str) -> str | None:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return "an IANA time zone such as Asia/Shanghai"
    return None


def _valid_listen(v: str) -> str | None:
    host, _, port = v.rpartition(":")
    return _check(
        bool(host) and port.isdigit() and int(port) < 65536,
        "host:port, e.g. 127.0.0.1:8080 (port 0: any free port)",
    )


def _valid_database(v: str) -> str | None:
    return _check(
        v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")),
        "sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB",
    )


def _valid_url_or_empty(v: str) -> str | None:
    return _check(
        v == "" or re.match(r"^(https?|wss?)://", v) is not None,
        "empty or an http(s):// / ws(s):// URL",
    )


def _valid_user_ids(v: list[str]) -> str | None:
    return _check(
        all(s.isdigit() for s in v), 'a list of numeric IM user ids as strings, e.g. ["10001"]'
    )


def _valid_weekly(v: str) -> str | None:
    day, _, hm = v.partition(" ")
    return _check(day in _WEEKDAYS and bool(_HHMM.match(hm)), '"mon 09:00" (mon..sun and HH:MM)')


def _valid_monthly_list(v: list[str]) -> str | None:
    def one(s: str) -> bool:
        day, _, hm = s.partition(" ")
        return (
            bool(re.match(r"^-?\d{1,2}$", day))
            and 1 <= abs(int(day)) <= 31
            and bool(_HHMM.match(hm))
        )

    return _check(
        all(one(s) for s in v), 'a list like ["15 09:30", "-3 09:30"] (day 1..31 or -1..-31, HH:MM)'
    )


def _valid_quiet(v: str) -> str | None:
    a, _, b = v.partition("-")
    return _check(
        v == "" or (bool(_HHMM.match(a)) and bool(_HHMM.match(b))),
        '"21:00-08:00" or empty for none',
    )


def _valid_dates(v: list[str]) -> str | None:
    try:
        for s in v:
            date.fromisoformat(s)
    except ValueError:
        return 'a list of dates like "2027-01-01"'
    return None


def _positive(v: int) -> str | None:
    return _check(v > 0, "a whole number greater than 0")


def _non_negative(v: int) -> str | None:
    return _check(v >= 0, "a whole number, 0 or more")


def _valid_groups(v: list[int]) -> str | None:
    return _check(all(g > 0 for g in v), "a list of group numbers, e.g. [123456789]")


def rule(check: Callable[[Any], str | None]) -> Any:
    return {"check": check}


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
    access_token: str = ""
    secret: str = ""
    rate_per_minute: int = field(default=20, metadata=rule(_non_negative))
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


def _percent(v: int) -> str | None:
    return _check(0 <= v <= 100, "a whole number from 0 to 100")


@dataclass
class QuotasSection:
    tolerance_percent: int = field(default=10, metadata=rule(_percent))
    escalate_after: int = field(default=3, metadata=rule(_positive))


@dataclass
class Config:
    bot: BotSection = field(default_factory=BotSection)
    onebot: OneBotSection = field(default_factory=OneBotSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    calendar: CalendarSection = field(default_factory=CalendarSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    quotas: QuotasSection = field(default_factory=QuotasSection)
    # Where the file was read from; relative paths in it resolve against its folder.
    base_dir: Path = field(default_factory=Path.cwd, compare=False)

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
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.bot.listen.rpartition(":")
        return host, int(port)


SECTIONS: dict[str, type] = {
    f.name: f.type for f in dataclasses.fields(Config) if f.name != "base_dir"
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
    names = {bool: "true/false", int: "a whole number", str: "a string in quotes"}
    if hint in names:
        return names[hint]
    (item,) = hint.__args__
    return "a list of numbers" if item is int else "a list of strings"


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
                f"[{section}]", "unknown_section", ", ".join(f"[{s}]" for s in types), section
            )
    sections: dict[str, Any] = {}
    for name, cls in types.items():
        given = data.get(name, {})
        if not isinstance(given, Mapping):
            raise ConfigError(f"[{name}]", "bad_type", "a table of keys", given)
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in given:
            if key not in fields:
                raise ConfigError(f"{name}.{key}", "unknown_key", ", ".join(fields), key)
        values: dict[str, Any] = {}
        for fname, f in fields.items():
            full = f"{name}.{fname}"
            env_key = f"{ENV_PREFIX}{name.upper()}_{fname.upper()}"
            if env_key in env:
                values[fname] = _coerce(env_key, hints[fname], env[env_key], from_env=True)
            elif fname in given:
                values[fname] = _coerce(full, hints[fname], given[fname], from_env=False)
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


def read_toml(path: Path, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """A TOML file's contents; `error` names the file when it is unreadable or invalid."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise error(str(path), "bad_toml", "valid TOML", str(exc)) from None
    except OSError as exc:
        raise error(str(path), "unreadable", "a readable file", exc.strerror) from None


def load(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read a TOML config file (or none: defaults plus environment)."""
    if path is None:
        return build({}, env)
    return build(read_toml(path), env, base_dir=path.resolve().parent)


def database_url(config: Config) -> str:
    """The database URL with a relative SQLite path resolved against the config's folder."""
    url = config.bot.database
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith("/"):
            return prefix + str((config.base_dir / rest).resolve())
    return url
