"""Config: the file `xinxibot init` writes, env overrides, and clear errors naming the key."""

from __future__ import annotations

import copy
import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import get_type_hints

import pytest

from bot.config import SECTIONS, Config, ConfigError, build, load
from bot.render import TEMPLATE_DIR, Renderer
from bot.rules import DEFAULT_RULES, RuleError, load_rules, parse_rules
from storage.migrate import HEAD

from .conftest import database_url, query


@pytest.mark.no_database
def test_init_template_loads_with_the_documented_defaults(tmp_path):
    path = tmp_path / "xinxibot.toml"
    path.write_text((TEMPLATE_DIR / "config.toml.j2").read_text(encoding="utf-8"), encoding="utf-8")
    config = load(path, env={})
    assert config.onebot.groups == [123456789]
    assert config.onebot.rate_per_minute == 20
    assert config.schedule.quota_reminders == ["15 09:30", "25 09:30", "-3 09:30"]
    assert config.coordinator_ids == {10001}


@pytest.mark.no_database
def test_environment_overrides_every_kind_of_key(tmp_path):
    env = {
        "XINXIBOT_ONEBOT_GROUPS": "111,222",
        "XINXIBOT_ONEBOT_SECRET": "s",
        "XINXIBOT_ONEBOT_RATE_PER_MINUTE": "0",
        "XINXIBOT_BOT_COORDINATORS": '["10001", "10002"]',
        "XINXIBOT_CALENDAR_HOLIDAYS": "2027-01-01",
    }
    config = build({"onebot": {"groups": [1], "secret": "file"}}, env=env)
    assert config.onebot.groups == [111, 222]
    assert config.onebot.secret == "s"
    assert config.onebot.rate_per_minute == 0
    assert config.coordinator_ids == {10001, 10002}
    assert config.calendar.holidays == ["2027-01-01"]


@pytest.mark.no_database
@pytest.mark.parametrize(
    ("data", "env", "key", "problem"),
    [
        ({"onebot": {"grups": [1]}}, {}, "onebot.grups", "unknown_key"),
        ({"bots": {}}, {}, "[bots]", "unknown_section"),
        ({"onebot": {"groups": "123"}}, {}, "onebot.groups", "bad_type"),
        ({"onebot": {"rate_per_minute": -1}}, {}, "onebot.rate_per_minute", "bad_value"),
        ({"bot": {"timezone": "Mars/Olympus"}}, {}, "bot.timezone", "bad_value"),
        ({"bot": {"database": "mysql://x"}}, {}, "bot.database", "bad_value"),
        (
            {"schedule": {"weekly_standings": "monday 9"}},
            {},
            "schedule.weekly_standings",
            "bad_value",
        ),
        (
            {"schedule": {"quota_reminders": ["32 09:30"]}},
            {},
            "schedule.quota_reminders",
            "bad_value",
        ),
        ({"calendar": {"holidays": ["2027-02-30"]}}, {}, "calendar.holidays", "bad_value"),
        (
            {},
            {"XINXIBOT_ONEBOT_RATE_PER_MINUTE": "fast"},
            "XINXIBOT_ONEBOT_RATE_PER_MINUTE",
            "bad_type",
        ),
        ({}, {"XINXIBOT_BOT_COORDINATORS": "abc"}, "XINXIBOT_BOT_COORDINATORS", "bad_value"),
    ],
)
def test_wrong_key_or_value_names_the_key(data, env, key, problem):
    with pytest.raises(ConfigError) as err:
        build(data, env=env)
    assert (err.value.key, err.value.problem) == (key, problem)
    assert err.value.allowed or err.value.choices


def test_ws_url_is_one_url_or_a_list():
    assert build({"onebot": {"ws_url": "ws://127.0.0.1:3001"}}, env={}).onebot.ws_url == [
        "ws://127.0.0.1:3001"
    ]
    assert build({"onebot": {"ws_url": ""}}, env={}).onebot.ws_url == []
    both = ["ws://127.0.0.1:3001", "wss://qq.example.org/ws"]
    assert build({"onebot": {"ws_url": both}}, env={}).onebot.ws_url == both
    env = {"XINXIBOT_ONEBOT_WS_URL": ",".join(both)}
    assert build({}, env=env).onebot.ws_url == both
    with pytest.raises(ConfigError) as err:
        build({"onebot": {"ws_url": "http://127.0.0.1:3001"}}, env={})
    assert (err.value.key, err.value.problem) == ("onebot.ws_url", "bad_value")
    assert build({}, env={}).onebot.account_interval_ms == 1000


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.no_database
def test_cli_init_then_bad_config_stops_with_a_chinese_message(tmp_path):
    done = run_cli("init", cwd=tmp_path)
    assert done.returncode == 0 and "已生成配置文件" in done.stdout
    again = run_cli("init", cwd=tmp_path)
    assert again.returncode == 1 and "已存在" in again.stdout
    path = tmp_path / "xinxibot.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "rate_per_minute = 20", 'rate_per_minute = "fast"'
        ),
        encoding="utf-8",
    )
    bad = run_cli("run", "--config", str(path), cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stdout.splitlines() == [
        "配置有误，未执行：",
        "“onebot.rate_per_minute”的取值 fast 类型不对。应填写：整数",
    ]


def test_cli_db_upgrade_creates_the_schema(tmp_path):
    url = database_url(tmp_path, "x", migrated=False)
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "db", "upgrade"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "XINXIBOT_BOT_DATABASE": url},
    )
    assert result.returncode == 0, result.stderr
    assert "数据库已升级到最新结构" in result.stdout
    [(version,)] = query(url, "select version_num from alembic_version")
    assert version == HEAD
    assert query(url, "select count(*) from draft") == [(0,)]


# ---------------------------------------------------------------- wholly Chinese errors

# A value each validated key refuses. A new validated key needs one here, so that
# its message is checked for English too.
BAD_VALUES = {
    "bot.timezone": "Mars/Olympus",
    "bot.database": "mysql://x",
    "bot.listen": "8080",
    "bot.coordinators": ["abc"],
    "onebot.self_id": -1,
    "onebot.groups": [-1],
    "onebot.api_url": "ftp://example",
    "onebot.ws_url": ["http://127.0.0.1:3001"],
    "onebot.rate_per_minute": -1,
    "onebot.account_interval_ms": -1,
    "onebot.api_timeout_seconds": 0,
    "schedule.weekly_standings": "monday 9",
    "schedule.quota_reminders": ["32 09:30"],
    "schedule.quiet_hours": "9pm-8am",
    "calendar.holidays": ["2027-02-30"],
    "calendar.workdays": ["tomorrow"],
    "limits.max_message_chars": 0,
    "limits.max_file_mb": 0,
    "limits.drafts_per_hour": 0,
    "limits.concurrent_downloads": 0,
    "limits.collect_idle_minutes": 0,
    "limits.download_stall_seconds": 0,
    "limits.parse_seconds": 0,
    "limits.parse_memory_mb": 63,
    "files.allowed_hosts": ["http://x/"],
    "quotas.tolerance_percent": 101,
    "quotas.escalate_after": 0,
    "units.classes": ["一类 部门"],
    "web.public_url": "https://xinxi.example/console/",
    "web.session_idle_minutes": 0,
    "bulletin.first_number": 0,
    "bulletin.types": ["专 报"],
    "bulletin.copies": -1,
    "bulletin.recipients": ["abc"],
}
WRONG_TYPE = {int: "x", str: 1, bool: "x", list[int]: "x", list[str]: "x"}


def rendered(exc: ConfigError) -> str:
    return Renderer().text("cli.txt.j2", what="config_error", key=exc.key, problem=exc.problem,
                           allowed=exc.allowed, value=exc.value, choices=exc.choices,
                           source=exc.source)  # fmt: skip


def english_words(exc: ConfigError) -> list[str]:
    """ASCII words in the message other than the key, the value, the choices and the
    literal examples in “quotes” (what the deployer types)."""
    text = re.sub(r"“[^”]*”", "", rendered(exc))
    for literal in sorted({exc.key, str(exc.value), *exc.choices}, key=len, reverse=True):
        text = text.replace(literal, "")
    return [w for w in re.findall(r"[A-Za-z]+", text) if w != "QQ"]  # QQ号 is Chinese usage


def every_field():
    sections = get_type_hints(Config)
    for section in SECTIONS:
        cls = sections[section]
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield section, f, hints[f.name]


def test_every_validation_rule_has_a_wholly_chinese_message():
    errors = []
    for section, f, hint in every_field():
        key = f"{section}.{f.name}"
        if "check" in f.metadata:
            assert key in BAD_VALUES, f"add a refused value of {key} to BAD_VALUES"
            with pytest.raises(ConfigError) as err:
                build({section: {f.name: BAD_VALUES[key]}}, env={})
            assert (err.value.key, err.value.problem) == (key, "bad_value")
            errors.append(err.value)
        wrong = 1 if f.metadata.get("one_or_list") else WRONG_TYPE[hint]  # "x" would be ["x"]
        with pytest.raises(ConfigError) as err:
            build({section: {f.name: wrong}}, env={})
        assert err.value.problem == "bad_type"
        errors.append(err.value)
    for data, env in [
        ({"bots": {}}, {}),
        ({"onebot": {"grups": [1]}}, {}),
        ({"onebot": 5}, {}),
        ({}, {"XINXIBOT_ONEBOT_RATE_PER_MINUTE": "fast"}),
        ({}, {"XINXIBOT_ONEBOT_GROUPS": "[1,"}),
    ]:
        with pytest.raises(ConfigError) as err:
            build(data, env=env)
        errors.append(err.value)
    for exc in errors:
        assert english_words(exc) == [], rendered(exc)
    assert len(errors) > 2 * len(BAD_VALUES)


@pytest.mark.parametrize(
    ("content", "problem", "message"),
    [
        (b"[onebot]\ngroups = 1 2\n", "bad_toml", "格式有误：第2行第12列附近"),
        (b"[onebot]\ngroups = [1,\n", "bad_toml", "格式有误：文件末尾"),
        (b"[onebot\n", "bad_toml", "格式有误：第1行第8列附近"),
        ('county = "高县"'.encode("gbk"), "unreadable", "文件不是“UTF-8”编码"),
        (None, "unreadable", "文件不存在"),
        ("dir", "unreadable", "这是一个目录，不是文件"),
    ],
)
def test_unreadable_or_malformed_files_are_named_in_chinese(tmp_path, content, problem, message):
    path = tmp_path / "xinxibot.toml"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load(path, env={})
    assert err.value.problem == problem
    assert message in rendered(err.value)
    assert english_words(err.value) == [], rendered(err.value)


def _rules() -> dict:
    return tomllib.loads(DEFAULT_RULES.read_text(encoding="utf-8"))


RULE_MUTATIONS = [
    lambda d: d.update(colour=1),
    lambda d: d.update(version=""),
    lambda d: d.pop("outlet"),
    lambda d: d["outlet"][0].update(colour=1),
    lambda d: d["outlet"][0].update(name=""),
    lambda d: d["outlet"][1].update(level="town"),
    lambda d: d["outlet"][0].update(aliases="县刊"),
    lambda d: d["outlet"][1].update(aliases=["县刊"]),
    lambda d: d["outlet"][0].update(points=3),
    lambda d: d["outlet"][0]["points"].update(exerpt=1),
    lambda d: d["outlet"][0]["points"].update(full="1"),
    lambda d: d["outlet"][0]["points"].pop("full"),
    lambda d: d.pop("penalty"),
    lambda d: d["penalty"].update(colour=1),
    lambda d: d["penalty"].pop("urgent_late"),
    lambda d: d["thresholds"].update(excellent_top=1.5),
]


@pytest.mark.parametrize("mutate", RULE_MUTATIONS)
def test_every_rule_file_error_is_wholly_chinese(mutate):
    data = copy.deepcopy(_rules())
    mutate(data)
    with pytest.raises(RuleError) as err:
        parse_rules(data)
    message = rendered(err.value)
    assert message.startswith("积分规则文件有误，未执行：")
    assert english_words(err.value) == [], message


def test_rule_file_syntax_error_and_missing_file_are_wholly_chinese(tmp_path):
    broken = tmp_path / "rules.toml"
    broken.write_text('version = "2026\n', encoding="utf-8")
    messages = []
    for path in (broken, tmp_path / "none.toml"):
        with pytest.raises(RuleError) as err:
            load_rules(path)
        assert english_words(err.value) == [], rendered(err.value)
        messages.append(rendered(err.value).splitlines()[1])
    assert messages == [
        f"积分规则文件 {broken} 格式有误：第1行第16列附近，请检查该处的等号、引号、括号和逗号。",
        f"无法读取积分规则文件 {tmp_path / 'none.toml'}：文件不存在。",
    ]


def test_cli_help_comes_from_the_template_and_is_chinese():
    import argparse

    from bot.cli import parser

    def helps(p: argparse.ArgumentParser) -> set[str]:
        found = {p.description} if p.description else set()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if choice.dest != "demo":  # the demo's options belong to the sandbox work
                        found |= {choice.help} | helps(action.choices[choice.dest])
            elif action.help and action.dest != "help":
                found.add(action.help)
        return found

    template = tomllib.loads((TEMPLATE_DIR / "cli_help.toml").read_text(encoding="utf-8"))
    assert helps(parser()) == set(template.values())
    assert all(re.search(r"[\u4e00-\u9fff]", text) for text in template.values())
