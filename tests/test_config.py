"""Config: the file `xinxibot init` writes, env overrides, and clear errors naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, build, load
from bot.render import TEMPLATE_DIR
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
    assert err.value.allowed


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
    assert "配置有误，未启动：onebot.rate_per_minute" in bad.stdout
    assert "a whole number" in bad.stdout


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
