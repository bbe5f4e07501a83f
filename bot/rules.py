"""The points rule file (DESIGN §6): outlet-centric TOML, validated at start-up.

A wrong rule file stops start-up with a RuleError naming the key and what is
allowed, exactly like a wrong config key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, read_toml

DEFAULT_RULES = Path(__file__).with_name("default_rules.toml")
LEVELS = ("county", "city", "province", "national")
FORMS = ("full", "excerpt", "combined")
LEVEL_WORDS = {
    "县": "county",
    "县级": "county",
    "市": "city",
    "市级": "city",
    "省": "province",
    "省级": "province",
    "国": "national",
    "国家": "national",
    "国办": "national",
    "国家级": "national",
}
FORM_WORDS = {"全文": "full", "摘编": "excerpt", "综合": "combined"}


class RuleError(ConfigError):
    """A rule file problem; shown like a config error."""

    source = "rules"


@dataclass(frozen=True)
class Outlet:
    name: str
    aliases: tuple[str, ...]
    level: str
    points: dict[str, float]


@dataclass(frozen=True)
class Rules:
    version: str
    outlets: tuple[Outlet, ...]
    forwarded: dict[str, float]
    instruction: dict[str, float]
    main_leader_extra: float
    answered_adopted_bonus: float
    missed_penalty: float
    monthly_quota_met: float
    research_multiplier: float
    urgent_on_time: float
    urgent_window_hours: float
    urgent_late: float
    excellent_top: int
    min_year_points: float
    zero_months_warn: int
    missed_limit: int = 0  # targeted 约稿 left unanswered in a year before the sanction; 0: off
    missed_action: str = "flag"  # flag: named in the yearly 评比; zero: its points count 0 there
    joint_split: str = "equal"  # 综合采用 of n drafts: each gets points/n (equal) or all (full)
    source: str = field(default="", compare=False)

    def outlet(self, word: str) -> Outlet | None:
        """An outlet by name, alias, or level word (that level's first outlet)."""
        for outlet in self.outlets:
            if word == outlet.name or word in outlet.aliases:
                return outlet
        level = LEVEL_WORDS.get(word.removesuffix("级"), LEVEL_WORDS.get(word))
        if level is not None:
            return next((o for o in self.outlets if o.level == level), None)
        return None

    def outlet_named(self, name: str) -> Outlet | None:
        return next((o for o in self.outlets if o.name == name), None)


MISSED_ACTIONS = ("flag", "zero")
JOINT_SPLITS = ("equal", "full")
# Keys added after counties wrote their files: optional, with these values when absent
# (a section all of whose keys are optional may be absent too).
OPTIONAL: dict[str, Any] = {
    "topic.missed_limit": 0,
    "topic.missed_action": "flag",
    "joint.split": "equal",
}

# A key's type: a number type, or a tuple of the words allowed.
SCHEMA: dict[str, dict[str, type | tuple[str, ...]]] = {
    "forwarded": {"province": float, "national": float},
    "instruction": {
        "national": float,
        "province": float,
        "city": float,
        "county": float,
        "main_leader_extra": float,
    },
    "topic": {
        "answered_adopted_bonus": float,
        "missed_penalty": float,
        "missed_limit": int,
        "missed_action": MISSED_ACTIONS,
    },
    "base": {"monthly_quota_met": float},
    "bonus": {"research_multiplier": float, "urgent_on_time": float, "urgent_window_hours": float},
    "penalty": {"urgent_late": float},
    "thresholds": {"excellent_top": int, "min_year_points": float, "zero_months_warn": int},
    "joint": {"split": JOINT_SPLITS},
}


def _value(key: str, value: Any, kind: type | tuple[str, ...]) -> Any:
    if isinstance(kind, tuple):
        if value not in kind:
            raise RuleError(key, "bad_value", "one_of", value, kind)
        return value
    return _number(key, value, kind)


def _number(key: str, value: Any, kind: type) -> float | int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (kind is int and not isinstance(value, int))
    ):
        raise RuleError(key, "bad_type", "int" if kind is int else "number", value)
    return kind(value)


def parse_rules(data: dict[str, Any], source: str = "") -> Rules:
    allowed_top = {"version", "outlet", *SCHEMA}
    for key in data:
        if key not in allowed_top:
            raise RuleError(key, "unknown_key", value=key, choices=sorted(allowed_top))
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise RuleError("version", "bad_value", "version", version)
    outlets, seen = [], set()
    raw = data.get("outlet")
    if not isinstance(raw, list) or not raw:
        raise RuleError("outlet", "bad_value", "outlets", raw)
    for i, o in enumerate(raw):
        where = f"outlet[{i}]"
        for key in o:
            if key not in ("name", "aliases", "level", "points"):
                raise RuleError(
                    f"{where}.{key}",
                    "unknown_key",
                    value=key,
                    choices=("name", "aliases", "level", "points"),
                )
        name = o.get("name")
        if not isinstance(name, str) or not name:
            raise RuleError(f"{where}.name", "bad_value", "outlet_name", name)
        level = o.get("level")
        if level not in LEVELS:
            raise RuleError(f"{where}.level", "bad_value", "one_of", level, LEVELS)
        aliases = o.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            raise RuleError(f"{where}.aliases", "bad_type", "str_list", aliases)
        for word in (name, *aliases):
            if word in seen:
                raise RuleError(f"{where}.aliases", "bad_value", "unique_names", word)
            seen.add(word)
        points = o.get("points")
        if not isinstance(points, dict) or not points:
            raise RuleError(f"{where}.points", "bad_value", "points_table", points)
        for form, value in points.items():
            if form not in FORMS:
                raise RuleError(f"{where}.points.{form}", "unknown_key", value=form, choices=FORMS)
            _number(f"{where}.points.{form}", value, float)
        if "full" not in points:
            raise RuleError(f"{where}.points.full", "missing", "full_points")
        outlets.append(
            Outlet(name, tuple(aliases), level, {k: float(v) for k, v in points.items()})
        )
    values: dict[str, Any] = {}
    for section, keys in SCHEMA.items():
        table = data.get(section)
        if table is None and all(f"{section}.{key}" in OPTIONAL for key in keys):
            table = {}
        if not isinstance(table, dict):
            raise RuleError(f"[{section}]", "missing", "section_keys", table, keys)
        for key in table:
            if key not in keys:
                raise RuleError(f"{section}.{key}", "unknown_key", value=key, choices=list(keys))
        for key, kind in keys.items():
            full = f"{section}.{key}"
            if key in table:
                values[full] = _value(full, table[key], kind)
            elif full in OPTIONAL:
                values[full] = OPTIONAL[full]
            else:
                raise RuleError(full, "missing", "number")
    if values["topic.missed_limit"] < 0:
        raise RuleError(
            "topic.missed_limit", "bad_value", "non_negative", values["topic.missed_limit"]
        )
    return Rules(
        version=version,
        outlets=tuple(outlets),
        forwarded={lvl: values[f"forwarded.{lvl}"] for lvl in ("province", "national")},
        instruction={lvl: values[f"instruction.{lvl}"] for lvl in LEVELS},
        main_leader_extra=values["instruction.main_leader_extra"],
        answered_adopted_bonus=values["topic.answered_adopted_bonus"],
        missed_penalty=values["topic.missed_penalty"],
        monthly_quota_met=values["base.monthly_quota_met"],
        research_multiplier=values["bonus.research_multiplier"],
        urgent_on_time=values["bonus.urgent_on_time"],
        urgent_window_hours=values["bonus.urgent_window_hours"],
        urgent_late=values["penalty.urgent_late"],
        excellent_top=values["thresholds.excellent_top"],
        min_year_points=values["thresholds.min_year_points"],
        zero_months_warn=values["thresholds.zero_months_warn"],
        missed_limit=values["topic.missed_limit"],
        missed_action=values["topic.missed_action"],
        joint_split=values["joint.split"],
        source=source,
    )


def load_rules(path: str | Path | None) -> Rules:
    path = Path(path) if path else DEFAULT_RULES
    return parse_rules(read_toml(path, RuleError), str(path))
