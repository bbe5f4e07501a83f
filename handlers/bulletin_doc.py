"""The county bulletin as a Word document (python-docx), in the look of a Chinese
government information bulletin: the red masthead above a red rule, 本期要目, the
pieces with their source lines, the distribution footer; A4 with the GB/T 9704
margins. Every word comes from templates/labels.toml [BULLETIN] or the config.

Fonts are the ones offices use (方正小标宋简体, 黑体, 仿宋_GB2312), each named
for East Asian text (w:eastAsia) and listed in the font table with an alternative
that ships with Windows and WPS (宋体, 仿宋), so the document opens correctly
where the office fonts are missing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

# What XML 1.0 cannot hold: python-docx refuses these, Word could not open them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")

TITLE_FONT = "方正小标宋简体"
HEADING_FONT = "黑体"
BODY_FONT = "仿宋_GB2312"
# Where a font is missing, Word and WPS try its altName (fontTable.xml).
FALLBACKS = {TITLE_FONT: "宋体", HEADING_FONT: "SimHei", BODY_FONT: "仿宋"}
RED = (0xE6, 0x00, 0x12)


def clean(text: str) -> str:
    """`text` without the characters a Word document cannot hold (a vertical tab or a
    form feed, Word's own line and page breaks in pasted text, become line breaks)."""
    return _NOT_XML.sub("", text.replace("\x0b", "\n").replace("\x0c", "\n"))


@dataclass(frozen=True)
class Piece:
    title: str
    body: str
    unit: str


@dataclass(frozen=True)
class Issue:
    name: str  # the bulletin's name (bot.bulletin)
    kind: str  # "" regular, or e.g. 专报
    number: int
    office: str
    day: date
    pieces: list[Piece]
    report_to: str = ""
    send_to: str = ""
    issue_to: str = ""
    editor: str = ""
    signer: str = ""
    copies: int = 0
    note: str = ""  # （预览稿） or （更正） under the number


def contents_lines(issue: Issue) -> list[str]:
    """本期要目 as printed: one numbered title a line."""
    return [f"{i}. {clean(p.title)}" for i, p in enumerate(issue.pieces, 1)]


def build(path: Path, issue: Issue, words: dict[str, str]) -> None:
    """Write the issue's document to `path`."""
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_BREAK, WD_TAB_ALIGNMENT
    from docx.shared import Cm, Pt, RGBColor

    doc = Document()
    section = doc.sections[0]
    section.page_width, section.page_height = Cm(21), Cm(29.7)
    section.top_margin, section.bottom_margin = Cm(3.7), Cm(3.5)
    section.left_margin, section.right_margin = Cm(2.8), Cm(2.6)
    _default_font(doc, BODY_FONT, Pt(16))
    red = RGBColor(*RED)

    def para(text: str = "", font: str = BODY_FONT, size: float = 16, align=None, color=None,
             bold: bool = False, indent: bool = False, exact: float | None = 28):  # fmt: skip
        p = doc.add_paragraph()
        fmt = p.paragraph_format
        fmt.space_before = fmt.space_after = Pt(0)
        if exact:
            fmt.line_spacing = Pt(exact)
        if align is not None:
            p.alignment = align
        if indent:
            fmt.first_line_indent = Pt(size * 2)
        if text:
            _run(p, clean(text), font, Pt(size), color, bold)
        return p

    center = WD_ALIGN_PARAGRAPH.CENTER
    # masthead
    para(issue.name, TITLE_FONT, 48, center, red, exact=None)
    number = words["number"].format(number=issue.number)
    para(f"{issue.kind} {number}" if issue.kind else number, BODY_FONT, 16, center, exact=36)
    if issue.note:
        para(issue.note, BODY_FONT, 16, center)
    line = para(exact=None)
    width = section.page_width - section.left_margin - section.right_margin
    line.paragraph_format.tab_stops.add_tab_stop(width, WD_TAB_ALIGNMENT.RIGHT)
    day = words["date"].format(year=issue.day.year, month=issue.day.month, day=issue.day.day)
    _run(line, clean(words["office"].format(office=issue.office)) + "\t" + day, BODY_FONT, Pt(16))
    _rule(line, "bottom", "E60012", 18)
    # contents
    para(exact=None)
    para(words["contents"], HEADING_FONT, 16, center)
    for text in contents_lines(issue):
        para(text, BODY_FONT, 16)
    _rule(para(exact=None), "bottom", "E60012", 6)
    # the pieces
    for piece in issue.pieces:
        para(exact=None)
        para(piece.title, TITLE_FONT, 22, center, exact=None)
        para(exact=None)
        for text in clean(piece.body).splitlines():
            if text.strip():
                para(text.strip(), BODY_FONT, 16, indent=True)
        para(words["source"].format(unit=clean(piece.unit)), BODY_FONT, 16,
             WD_ALIGN_PARAGRAPH.RIGHT)  # fmt: skip
    # the distribution footer, from the bottom of the last page's text
    para(exact=None).add_run().add_break(WD_BREAK.LINE)
    first = True
    for key, value in (("report_to", issue.report_to), ("send_to", issue.send_to),
                       ("issue_to", issue.issue_to)):  # fmt: skip
        if value:
            p = para(words[key] + clean(value), BODY_FONT, 14)
            if first:
                _rule(p, "top", "000000", 6)
                first = False
    credits = [
        words[key].format(name=clean(value))
        for key, value in (("editor", issue.editor), ("signer", issue.signer))
        if value
    ]
    if issue.copies:
        credits.append(words["copies"].format(copies=issue.copies))
    last = para("　　".join(credits), BODY_FONT, 14)
    if first:
        _rule(last, "top", "000000", 6)
    _rule(last, "bottom", "000000", 6)
    doc.core_properties.title = clean(f"{issue.name} {number}")
    _font_table(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path)


def _run(paragraph, text: str, font: str, size, color=None, bold: bool = False):
    run = paragraph.add_run(text)
    run.font.size, run.font.bold = size, bold
    if color is not None:
        run.font.color.rgb = color
    _fonts(run.element.get_or_add_rPr(), font)
    return run


def _fonts(rpr, font: str) -> None:
    """Name `font` for Latin and East Asian text alike (w:eastAsia is what Word uses for
    Chinese; without it Chinese falls back to the theme's font)."""
    from docx.oxml.ns import qn

    fonts = rpr.get_or_add_rFonts()
    for attr in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attr), font)
    fonts.set(qn("w:hint"), "eastAsia")


def _default_font(doc, font: str, size) -> None:
    style = doc.styles["Normal"]
    style.font.size = size
    _fonts(style.element.get_or_add_rPr(), font)


def _rule(paragraph, side: str, color: str, size: int) -> None:
    """A line along the paragraph's `side` (the red rule under the masthead)."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    ppr = paragraph._p.get_or_add_pPr()
    borders = ppr.find(qn("w:pBdr"))
    if borders is None:
        borders = OxmlElement("w:pBdr")
        ppr.append(borders)
    edge = OxmlElement(f"w:{side}")
    for attr, value in (("val", "single"), ("sz", str(size)), ("space", "1"), ("color", color)):
        edge.set(qn(f"w:{attr}"), value)
    borders.append(edge)


def _font_table(doc) -> None:
    """List the office fonts in word/fontTable.xml with their alternatives."""
    from lxml import etree

    part = next(
        (p for p in doc.part.package.iter_parts() if p.partname == "/word/fontTable.xml"), None
    )
    if part is None:
        return
    ns = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    root = etree.fromstring(part.blob)
    for name, alternative in FALLBACKS.items():
        font = etree.SubElement(root, f"{{{ns}}}font", {f"{{{ns}}}name": name})
        etree.SubElement(font, f"{{{ns}}}altName", {f"{{{ns}}}val": alternative})
        etree.SubElement(font, f"{{{ns}}}charset", {f"{{{ns}}}val": "86"})  # GB2312
        etree.SubElement(font, f"{{{ns}}}family", {f"{{{ns}}}val": "modern"})
        etree.SubElement(font, f"{{{ns}}}pitch", {f"{{{ns}}}val": "fixed"})
    part._blob = etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)
