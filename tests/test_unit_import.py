"""`xinxibot units import` and `units template`: good sheets in, bad rows reported with numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from openpyxl import Workbook

from .conftest import database_url
from .conftest import query as query_url

ROOT = Path(__file__).resolve().parents[1]


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "XINXIBOT_BOT_DATABASE": database_url(tmp_path, "x")}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def query(tmp_path: Path, sql: str) -> list[tuple]:
    return query_url(database_url(tmp_path, "x"), sql)


def test_good_sheet_imports_units_officers_and_quotas(tmp_path):
    path = tmp_path / "units.xlsx"
    wb = Workbook()
    ws = wb.active
    ws.append(["单位名称", "类型", "别名", "信息员QQ", "信息员姓名", "月报送任务", "年积分任务"])
    ws.append(["城关镇", "乡镇", "城关", 10020, "李明", 4, 30])
    ws.append(["经信局", "部门", "经济和信息化局、经信", "10030、10031", "周强、吴婷", 4, None])
    ws.append(["县人民医院", "直报点", None, None, None, None, 12.5])
    wb.save(path)
    result = cli(tmp_path, "units", "import", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "已导入3个单位（新增3个），登记信息员3人，设定任务4项" in result.stdout
    assert query(tmp_path, "select name, kind from unit order by id") == [
        ("城关镇", "township"), ("经信局", "department"), ("县人民医院", "direct_point")]  # fmt: skip
    assert sorted(query(tmp_path, "select alias from unit_alias")) == [
        ("城关",),
        ("经信",),
        ("经济和信息化局",),
    ]
    assert query(tmp_path, "select im_id, name, role from member order by im_id") == [
        (10020, "李明", "officer"), (10030, "周强", "officer"), (10031, "吴婷", "officer")]  # fmt: skip
    assert len(query(tmp_path, "select * from officer_term")) == 3
    assert sorted(query(tmp_path, "select period, metric, target from quota")) == [
        ("month", "submitted", 4.0), ("month", "submitted", 4.0), ("year", "points", 12.5), ("year", "points", 30.0)]  # fmt: skip
    again = cli(tmp_path, "units", "import", str(path))  # importing the same sheet changes nothing
    assert "新增0个），登记信息员0人，设定任务0项" in again.stdout


def test_bad_sheet_reports_every_row_and_imports_nothing(tmp_path):
    path = tmp_path / "units.csv"
    path.write_text(
        "单位名称,类型,信息员QQ,信息员姓名,月报送任务\n"
        "城关镇,乡镇,10020,李明,4\n"
        "城关镇,乡镇,10021,陈芳,4\n"
        "文江镇,村,abc,赵磊,4\n"
        "经信局,部门,10030,周强,-3\n"
        "教育局,部门,10031,吴婷,0.5\n",
        encoding="gbk",
    )
    result = cli(tmp_path, "units", "import", str(path))
    assert result.returncode == 1
    out = result.stdout
    assert "第3行「单位名称」：单位重复，已出现在 城关镇（第2行）" in out
    assert "第4行「类型」：类型应为乡镇、部门、直报点或其他 村" in out
    assert "第4行「信息员QQ」：QQ号应为数字 abc" in out
    assert "第5行「月报送任务」：任务数量应为不小于0的整数" in out and "第6行「月报送任务」" in out
    assert "有5处错误，未导入任何数据" in out
    assert query(tmp_path, "select count(*) from unit") == [(0,)]
    skipped = cli(tmp_path, "units", "import", str(path), "--skip-bad")
    assert (
        skipped.returncode == 0
        and "已导入1个单位" in skipped.stdout
        and "跳过有错误的行4行" in skipped.stdout
    )
    assert query(tmp_path, "select name from unit") == [("城关镇",)]


def test_missing_column_and_template(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("名称,类型\n城关镇,乡镇\n", encoding="utf-8")
    result = cli(tmp_path, "units", "import", str(path))
    assert "第1行「单位名称」：缺少此列" in result.stdout and result.returncode == 1
    template = tmp_path / "模板.xlsx"
    assert cli(tmp_path, "units", "template", "--out", str(template)).returncode == 0
    imported = cli(tmp_path, "units", "import", str(template))
    assert "已导入2个单位" in imported.stdout
