"""The Excel export: a standings sheet and a drafts sheet, Chinese headers, real dates."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.render import Renderer
from storage import standings as st
from storage.db import Database
from storage.models import Adoption, Draft, Unit
from storage.queries import Reviews

STANDINGS_HEADERS = [
    "名次",
    "单位",
    "类型",
    "报送",
    "县级采用",
    "市级采用",
    "省级采用",
    "国家级采用",
    "采用合计",
    "领导批示",
    "积分",
]
STANDINGS_WIDTHS = [8, 22, 10, 8, 10, 10, 10, 12, 10, 10, 10]
DRAFT_HEADERS = ["编号", "单位", "标题", "类别", "字数", "报送时间", "状态", "采用情况", "积分"]
DRAFT_WIDTHS = [10, 18, 48, 10, 8, 18, 10, 40, 8]
KIND = {"township": "乡镇", "department": "部门", "direct_point": "直报点", "other": "其他"}
STATUS = {
    "submitted": "已报送",
    "awaiting_file": "待补文件",
    "withdrawn": "已撤回",
    "returned": "退回修改",
    "rejected": "不采用",
    "adopted": "已采用",
}
FORM = {"full": "全文", "excerpt": "摘编", "combined": "综合"}


async def collect(db: Database, s: AsyncSession, start: datetime, end: datetime):
    rows = await st.standings(db, start, end)
    drafts = (
        await s.execute(
            select(Draft, Unit.name)
            .join(Unit, Unit.id == Draft.unit_id)
            .where(Draft.submitted_at >= start, Draft.submitted_at < end)
            .order_by(Draft.id)
        )
    ).all()
    ids = [d.id for d, _ in drafts]
    adoptions: dict[int, list[str]] = {}
    if ids:
        q = (
            select(Adoption)
            .where(Adoption.draft_id.in_(ids), Adoption.revoked_at.is_(None))
            .order_by(Adoption.id)
        )
        for a in (await s.execute(q)).scalars():
            adoptions.setdefault(a.draft_id, []).append(
                f"{a.outlet}（{FORM[a.form]}{f'，第{a.issue}期' if a.issue else ''}）"
            )
    points = await Reviews(s).draft_points(ids)
    return rows, [
        (d, unit, "；".join(adoptions.get(d.id, [])), points.get(d.id, 0.0)) for d, unit in drafts
    ]


def build(path: Path, title: str, rows, drafts) -> None:
    from openpyxl import Workbook  # imported here: only exports need it
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = "排名"
    for sheet, headers, widths in (
        (ws, STANDINGS_HEADERS, STANDINGS_WIDTHS),
        (wb.create_sheet("稿件"), DRAFT_HEADERS, DRAFT_WIDTHS),
    ):
        sheet.append(headers)
        for i, width in enumerate(widths, 1):
            sheet.column_dimensions[get_column_letter(i)].width = width
        for cell in sheet[1]:
            cell.font = Font(bold=True)
            cell.alignment = Alignment(horizontal="center")
        sheet.freeze_panes = "A2"
    for r in rows:
        a = r.adopted
        ws.append([r.rank, r.name, KIND.get(r.kind, r.kind), r.submitted, a["county"], a["city"], a["province"],
                   a["national"], r.adopted_total, r.instructions, r.points])  # fmt: skip
    sheet = wb["稿件"]
    for d, unit, adopted, points in drafts:
        sheet.append(
            [
                d.number,
                unit,
                d.title,
                d.category,
                d.char_count,
                d.submitted_at,
                STATUS.get(d.status, d.status),
                adopted,
                points,
            ]
        )
        sheet.cell(row=sheet.max_row, column=6).number_format = "yyyy-mm-dd hh:mm"
    wb.properties.title = title
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


async def write_workbook(
    db: Database,
    s: AsyncSession,
    county: str,
    start: datetime,
    end: datetime,
    folder: Path,
    path: Path | None = None,
) -> Path:
    rows, drafts = await collect(db, s, start, end)
    label = Renderer().text(
        "export_title.txt.j2", county=county, start=start, last=end - timedelta(seconds=1)
    )
    path = path or folder / f"{label}.xlsx"
    await asyncio.to_thread(build, path, label, rows, drafts)
    return path
