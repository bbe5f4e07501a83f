"""The Excel export: a standings sheet and a drafts sheet, Chinese headers, real dates.
Headers and words come from templates/labels.toml, like every other text."""

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

STANDINGS_WIDTHS = [8, 22, 10, 8, 10, 10, 10, 12, 10, 10, 10]
DRAFT_WIDTHS = [10, 18, 48, 10, 8, 18, 10, 40, 8]
# Excel and WPS take a cell typed with one of these first as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


async def collect(
    db: Database, s: AsyncSession, renderer: Renderer, start: datetime, end: datetime
):
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
                renderer.text("export_adoption.txt.j2", adoption=a)
            )
    points = await Reviews(s).draft_points(ids)
    return rows, [
        (d, unit, "；".join(adoptions.get(d.id, [])), points.get(d.id, 0.0)) for d, unit in drafts
    ]


def append_literal(ws, values: list) -> None:
    """Append a row whose texts are literal strings, never formulas: an officer's
    title "=HYPERLINK(...)" must not run in the coordinator's Excel. A text that
    starts like a formula also gets Excel's quote prefix, so editing the cell
    keeps it text."""
    ws.append(values)
    for cell in ws[ws.max_row]:
        if isinstance(cell.value, str):
            cell.data_type = "s"
            if cell.value.startswith(FORMULA_START):
                cell.quotePrefix = True


def build(path: Path, title: str, labels: dict, rows, drafts) -> None:
    from openpyxl import Workbook  # imported here: only exports need it
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    words = labels["EXPORT"]
    wb = Workbook()
    ranking = wb.active
    ranking.title = words["standings_sheet"]
    sheet = wb.create_sheet(words["drafts_sheet"])
    for ws, headers, widths in (
        (ranking, words["standings_headers"], STANDINGS_WIDTHS),
        (sheet, words["drafts_headers"], DRAFT_WIDTHS),
    ):
        append_literal(ws, headers)
        for i, width in enumerate(widths, 1):
            ws.column_dimensions[get_column_letter(i)].width = width
        for cell in ws[1]:
            cell.font = Font(bold=True)
            cell.alignment = Alignment(horizontal="center")
        ws.freeze_panes = "A2"
    for r in rows:
        a = r.adopted
        append_literal(ranking, [r.rank, r.name, labels["KIND"].get(r.kind, r.kind), r.submitted, a["county"], a["city"],
                        a["province"], a["national"], r.adopted_total, r.instructions, r.points])  # fmt: skip
    for d, unit, adopted, points in drafts:
        append_literal(sheet, [d.number, unit, d.title, d.category, d.char_count, d.submitted_at,
                      labels["STATUS"].get(d.status, d.status), adopted, points])  # fmt: skip
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
    renderer = Renderer()
    rows, drafts = await collect(db, s, renderer, start, end)
    title = renderer.text(
        "export_title.txt.j2", county=county, start=start, last=end - timedelta(seconds=1)
    )
    path = path or folder / f"{title}.xlsx"
    await asyncio.to_thread(build, path, title, renderer.labels, rows, drafts)
    return path
