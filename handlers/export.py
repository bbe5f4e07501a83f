"""The Excel export: a standings sheet and a drafts sheet, Chinese headers, real dates.
Headers and words come from templates/labels.toml, like every other text.

The drafts sheet has one row per piece that counts in the period (its live version,
first submission time, every version's number), so its rows add up to the 报送 column."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bot.render import Renderer
from storage import standings as st
from storage.queries import Drafts, Reviews

STANDINGS_WIDTHS = [8, 22, 10, 12, 8, 10, 10, 10, 12, 10, 10, 10, 12, 40]
DRAFT_WIDTHS = [10, 18, 48, 10, 8, 18, 10, 40, 8, 16]

# Excel and WPS take a cell typed with one of these first as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")

Ranked = list[tuple[str, st.UnitStanding]]  # (class label, figures), in ranking order


async def collect(s: AsyncSession, renderer: Renderer, start: datetime, end: datetime):
    pieces = await Drafts(s).pieces(start, end)
    versions = {v: d.id for d, _, ids in pieces for v in ids}  # any version -> the live one
    reviews = Reviews(s)
    adoptions: dict[int, list[str]] = {}
    for a in await reviews.adoptions_of(list(versions)):
        adoptions.setdefault(versions[a.draft_id], []).append(
            renderer.text("export_adoption.txt.j2", adoption=a)
        )
    points: dict[int, float] = {}
    for draft_id, p in (await reviews.draft_points(list(versions))).items():
        points[versions[draft_id]] = points.get(versions[draft_id], 0.0) + p
    return [
        (d, unit, "；".join(adoptions.get(d.id, [])), points.get(d.id, 0.0), ids)
        for d, unit, ids in pieces
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


def build(path: Path, title: str, labels: dict, rows: Ranked, remarks: dict, drafts) -> None:
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
    for label, r in rows:
        a = r.adopted
        append_literal(ranking, [r.rank, r.name, labels["KIND"].get(r.kind, r.kind), label, r.submitted, a["county"],
                        a["city"], a["province"], a["national"], r.adopted_total, r.instructions, r.points,
                        r.topics_missed, remarks.get(r.unit_id)])  # fmt: skip
    for d, unit, adopted, points, ids in drafts:
        versions = "、".join(f"G{i}" for i in ids) if len(ids) > 1 else None
        append_literal(sheet, [d.number, unit, d.title, d.category, d.char_count, d.piece_at,
                      labels["STATUS"].get(d.status, d.status), adopted, points, versions])  # fmt: skip
        sheet.cell(row=sheet.max_row, column=6).number_format = "yyyy-mm-dd hh:mm"
    wb.properties.title = title
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


async def write_workbook(
    s: AsyncSession,
    renderer: Renderer,
    county: str,
    start: datetime,
    end: datetime,
    rows: Ranked,
    remarks: dict[int, str],
    folder: Path,
    path: Path | None = None,
) -> Path:
    """Write the workbook of [start, end): the ranked `rows` (with a remark per unit id
    where a rule of the 评比 applied) and the pieces of the period."""
    drafts = await collect(s, renderer, start, end)
    title = renderer.text(
        "export_title.txt.j2", county=county, start=start, last=end - timedelta(seconds=1)
    )
    path = path or folder / f"{title}.xlsx"
    await asyncio.to_thread(build, path, title, renderer.labels, rows, remarks, drafts)
    return path
