"""`xinxibot units import FILE.xlsx|csv`: units, their kind and class, aliases, officers
and quotas from a sheet such as offices keep. Every bad row is reported with its row number; a file
with errors imports nothing unless `skip_bad`."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from storage.db import Database
from storage.models import Quota, UnitKind
from storage.queries import Repo

from .registration import guess_kind

REQUIRED = "单位名称"
COLUMNS = ("单位名称", "类型", "类别", "别名", "信息员QQ", "信息员姓名")
QUOTA_COLUMN = re.compile(r"^(月|季|年)(报送|采用|积分)任务$")
PERIODS = {"月": "month", "季": "quarter", "年": "year"}
METRICS = {"报送": "submitted", "采用": "adopted", "积分": "points"}
KINDS = {
    "乡镇": UnitKind.township,
    "部门": UnitKind.department,
    "直报点": UnitKind.direct_point,
    "其他": UnitKind.other,
}
SPLIT = re.compile(r"[、,，;；\s]+")
TEMPLATE_ROWS = [
    ["城关镇", "乡镇", "乡镇", "城关", "10020", "李明", 4, "", 30],
    ["经信局", "部门", "一类部门", "经济和信息化局", "10030、10031", "周强、吴婷", 4, 1, ""],
]


@dataclass
class RowProblem:
    row: int
    column: str
    problem: str  # missing_column / empty / duplicate_unit / bad_kind / bad_class / bad_qq / qq_twice / names_mismatch / bad_amount / alias_taken
    value: str = ""


@dataclass
class UnitRow:
    row: int
    name: str
    kind: UnitKind | None
    klass: str | None
    aliases: list[str]
    officers: list[tuple[int, str]]
    quotas: dict[tuple[str, str], float] = field(default_factory=dict)


@dataclass
class ImportResult:
    problems: list[RowProblem]
    imported: list[UnitRow]
    created: int = 0
    officers: int = 0
    quotas: int = 0


def read_sheet(path: Path) -> list[list[str]]:
    """All rows as text, the header first."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        ws = load_workbook(path, read_only=True, data_only=True).worksheets[0]
        return [
            ["" if v is None else str(v).strip() for v in row]
            for row in ws.iter_rows(values_only=True)
        ]
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ValueError("unreadable")
    return [[c.strip() for c in row] for row in csv.reader(io.StringIO(text))]


def _amount(text: str, metric: str) -> float | None:
    text = text.strip().removesuffix(".0")
    if not re.fullmatch(r"\d+(?:\.\d)?", text) or (metric != "points" and "." in text):
        return None
    return float(text)


def parse(rows: list[list[str]], classes: list[str]) -> tuple[list[UnitRow], list[RowProblem]]:
    if not rows:
        return [], [RowProblem(1, REQUIRED, "missing_column")]
    header = rows[0]
    if REQUIRED not in header:
        return [], [RowProblem(1, REQUIRED, "missing_column")]
    index = {name: i for i, name in enumerate(header) if name}
    quota_columns = {
        name: (PERIODS[m[1]], METRICS[m[2]]) for name in index if (m := QUOTA_COLUMN.match(name))
    }
    good, problems, seen_units, seen_qq = [], [], {}, {}

    def cell(row: list[str], name: str) -> str:
        i = index.get(name)
        return row[i].strip() if i is not None and i < len(row) else ""

    for number, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        before = len(problems)
        name = cell(row, REQUIRED)
        if not name:
            problems.append(RowProblem(number, REQUIRED, "empty"))
        elif name in seen_units:
            problems.append(
                RowProblem(number, REQUIRED, "duplicate_unit", f"{name}（第{seen_units[name]}行）")
            )
        kind_text = cell(row, "类型")
        if kind_text and kind_text not in KINDS:
            problems.append(RowProblem(number, "类型", "bad_kind", kind_text))
        klass = cell(row, "类别") or None
        if klass is not None and klass not in classes:
            problems.append(RowProblem(number, "类别", "bad_class", klass))
        qqs = [q for q in SPLIT.split(cell(row, "信息员QQ")) if q]
        names = [n for n in SPLIT.split(cell(row, "信息员姓名")) if n]
        for qq in qqs:
            if not qq.isdigit():
                problems.append(RowProblem(number, "信息员QQ", "bad_qq", qq))
            elif qq in seen_qq:
                problems.append(
                    RowProblem(number, "信息员QQ", "qq_twice", f"{qq}（第{seen_qq[qq]}行）")
                )
        if names and len(names) != len(qqs):
            problems.append(
                RowProblem(number, "信息员姓名", "names_mismatch", cell(row, "信息员姓名"))
            )
        quotas = {}
        for column, key in quota_columns.items():
            text = cell(row, column)
            if text:
                amount = _amount(text, key[1])
                if amount is None:
                    problems.append(RowProblem(number, column, "bad_amount", text))
                else:
                    quotas[key] = amount
        if len(problems) > before:
            continue
        seen_units[name] = number
        seen_qq.update({qq: number for qq in qqs})
        officers = [(int(qq), names[i] if i < len(names) else qq) for i, qq in enumerate(qqs)]
        aliases = [a for a in SPLIT.split(cell(row, "别名")) if a and a != name]
        good.append(UnitRow(number, name, KINDS.get(kind_text), klass, aliases, officers, quotas))
    return good, problems


class _Abort(Exception):
    """A problem found while applying: roll the whole import back."""


async def import_units(
    db: Database, path: Path, now: datetime, classes: list[str], skip_bad: bool = False
) -> ImportResult:
    """Import the sheet; a 类别 must be one of `classes` ([units] classes)."""
    rows, problems = parse(read_sheet(path), classes)
    if problems and not skip_bad:
        return ImportResult(problems, [])
    try:
        return await _apply(db, rows, problems, now, skip_bad)
    except _Abort as abort:
        return ImportResult(abort.args[0], [])


async def _apply(
    db: Database, rows: list[UnitRow], problems: list[RowProblem], now: datetime, skip_bad: bool
) -> ImportResult:
    result = ImportResult(list(problems), [])
    async with db.transaction() as s:
        repo = Repo(s)
        for row in rows:
            unit = await repo.units.find_any(row.name)
            taken = [
                a
                for a in row.aliases
                if (owner := await repo.units.find_any(a)) is not None and owner.name != row.name
            ]
            if taken:
                result.problems.append(RowProblem(row.row, "别名", "alias_taken", "、".join(taken)))
                continue
            if unit is None:
                kind = row.kind or guess_kind(row.name)
                unit = await repo.units.create(row.name, kind, [], now, row.klass)
                result.created += 1
            elif row.kind is not None:
                unit.kind = row.kind
            if row.klass is not None:
                unit.klass = row.klass
            await repo.units.add_aliases(unit, row.aliases)
            for im_id, name in row.officers:
                member = await repo.members.ensure(im_id, name, now)
                await repo.members.rename(member, name, now)
                if member.role != "officer" or member.unit_id != unit.id:
                    await repo.members.make_officer(member, unit, None, now)
                    result.officers += 1
            current = {
                (q.period, q.metric): q.target
                for q in await repo.quotas.active_at(now)
                if q.unit_id == unit.id
            }
            for (period, metric), target in row.quotas.items():
                if current.get((period, metric)) != target:
                    await repo.quotas.replace(
                        Quota(
                            scope="unit",
                            unit_id=unit.id,
                            period=period,
                            metric=metric,
                            target=target,
                            valid_from=now,
                        )
                    )
                    result.quotas += 1
            result.imported.append(row)
        if result.problems and not skip_bad:  # an alias clash found while applying
            raise _Abort(result.problems)
    return result


def write_template(path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "单位"
    ws.append([*COLUMNS, "月报送任务", "月采用任务", "年积分任务"])
    for row in TEMPLATE_ROWS:
        ws.append(row)
    for column, width in zip("ABCDEFGHI", (18, 8, 12, 20, 20, 16, 12, 12, 12), strict=True):
        ws.column_dimensions[column].width = width
    wb.save(path)
