"""The county bulletin: /编期 compiles an issue, 预览 and 印发 produce the Word document,
印发 records the county adoptions through the /采用 operation, /期刊 lists and fetches."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import docx
import pytest
from sqlalchemy import select

from storage.models import Adoption, BulletinEntry, BulletinIssue, DraftEvent, PointsEntry
from storage.queries import Repo

from .conftest import COORDINATOR, GROUP, populate, start_harness

OFFICER, OTHER = 10020, 10030
SECOND_COORDINATOR = 10002


@pytest.fixture
async def desk(tmp_path, fake_onebot):
    harness, server = await start_harness(
        tmp_path,
        fake_onebot,
        bot__coordinators=[str(COORDINATOR), str(SECOND_COORDINATOR)],
        bulletin__report_to="市委办公室，市政府办公室",
        bulletin__send_to="县委、县人大、县政府、县政协领导",
        bulletin__issue_to="各乡镇人民政府，县级各部门",
        bulletin__editor="张伟",
        bulletin__signer="李强",
        bulletin__copies=60,
        bulletin__recipients=["10090"],
    )
    ok = {"status": "ok", "retcode": 0, "data": None}  # NapCat's answer to an upload
    fake_onebot.fail_actions.update(upload_group_file=ok, upload_private_file=ok)
    await populate(harness)
    await harness.say(
        OFFICER, "/报送 城关镇推进人居环境整治\n今年以来，城关镇聚焦村容村貌。\n全镇清理垃圾300吨。"
    )
    await harness.say(OTHER, "/报送 经信局三措并举稳工业\n经信局多措并举，工业运行平稳。")
    await harness.say(OFFICER, "/报送 城关镇开展安全生产检查\n城关镇组织开展安全生产大检查。")
    harness.fake.clear()
    yield harness
    await harness.close()
    await server.close()


async def ids(h) -> list[int]:
    return [d.id for d in await h.drafts()]


async def issues(h) -> list[BulletinIssue]:
    async with h.bot.db.reader() as s:
        return list((await s.execute(select(BulletinIssue).order_by(BulletinIssue.id))).scalars())


async def order(h) -> list[int]:
    async with h.bot.db.reader() as s:
        issue = await Repo(s).bulletins.preparing()
        return [d.id for _, d, _ in await Repo(s).bulletins.entries(issue.id)]


def said(h, text: str) -> bool:
    """Some message the bot sent contains `text`."""
    return any(text in t for t in h.replies())


def uploads(h, action: str) -> list[dict]:
    return [p for a, p in h.fake.calls if a == action]


def paragraphs(path: str | Path) -> list[str]:
    return [p.text for p in docx.Document(str(path)).paragraphs]


async def print_issue(h) -> Path:
    a, b, c = await ids(h)
    await h.say(COORDINATOR, f"/编期 加入 G{a} G{b} G{c}")
    await h.say(COORDINATOR, f"/编期 顺序 G{b}")
    await h.say(COORDINATOR, "/编期 印发")
    [issue] = await issues(h)
    return Path(issue.file_path)


# ------------------------------------------------------------------ 1. an issue in preparation


async def test_compile_shows_next_number_candidates_and_edits(desk):
    a, b, c = await ids(desk)
    await desk.say(COORDINATOR, "/编期")
    text = desk.last_reply()
    assert "下一期为《高县政务信息》2026年第1期" in text
    assert f"G{a}《城关镇推进人居环境整治》城关镇" in text and f"G{b}" in text
    await desk.say(COORDINATOR, f"/编期 加入 G{a} G{b} G{c}")
    assert "第1期（2026年，编辑中）共3篇" in desk.last_reply()
    await desk.say(COORDINATOR, f"/编期 顺序 G{c} G{b}")
    assert await order(desk) == [c, b, a]
    await desk.say(COORDINATOR, f"/编期 移除 G{b}")
    assert await order(desk) == [c, a]
    text = desk.last_reply()
    assert (
        f"1. G{c}" in text
        and f"2. G{a}" in text
        and f"G{b}《经信局三措并举稳工业》经信局，已报送" in text
    )
    await desk.say(COORDINATOR, "/编期 类型 专报")
    [issue] = await issues(desk)
    assert (issue.kind, issue.number) == ("专报", 1)
    await desk.say(COORDINATOR, "/编期 类型 周刊")
    assert "期刊类型只能是：常规、专报" in desk.last_reply()


async def test_numbers_restart_each_year_and_the_first_is_configurable(tmp_path, fake_onebot):
    h, server = await start_harness(tmp_path, fake_onebot, bulletin__first_number=19)
    await populate(h)
    for title in ("一", "二"):
        await h.say(OFFICER, f"/报送 城关镇信息{title}\n正文{title}。")
    a, b = await ids(h)
    await h.say(COORDINATOR, f"/编期 加入 G{a}")
    await h.say(COORDINATOR, "/编期 印发")
    await h.say(COORDINATOR, "/编期")
    assert "下一期为《高县政务信息》2026年第20期" in h.last_reply()
    await h.advance_to(datetime(2027, 1, 4, 9, 0))
    await h.say(OFFICER, "/报送 城关镇新年信息\n新年正文。")
    await h.say(COORDINATOR, "/编期")
    assert "下一期为《高县政务信息》2027年第1期" in h.last_reply()  # the year restarts at 1
    # a draft of last year does not go into this year's issue
    await h.say(COORDINATOR, f"/编期 加入 G{b}")
    assert "报送于2026年，不能编入2027年的期刊" in h.last_reply()
    assert [i.number for i in await issues(h)] == [19]
    await h.close()
    await server.close()


# ------------------------------------------------------------------ bad input


async def test_withdrawn_rejected_or_printed_drafts_are_refused(desk):
    a, b, c = await ids(desk)
    await desk.say(OFFICER, f"/撤回 G{a}")
    await desk.say(COORDINATOR, f"/不采用 G{b}")
    await desk.say(COORDINATOR, f"/编期 加入 G{a}")
    assert "不能编入本期：该稿件已撤回" in desk.last_reply()
    await desk.say(COORDINATOR, f"/编期 加入 G{c} G{b}")  # one bad draft: nothing is added
    assert "不能编入本期：该稿件已不采用" in desk.last_reply()
    assert await issues(desk) == []
    await desk.say(COORDINATOR, f"/编期 加入 G{c}")
    await desk.say(COORDINATOR, "/编期 印发")
    await desk.say(COORDINATOR, f"/编期 加入 G{c}")
    assert "已在《高县政务信息》2026年第1期印发" in desk.last_reply()
    await desk.say(COORDINATOR, f"/编期 加入 G{c}")
    assert await desk.count(BulletinEntry) == 1


async def test_printing_an_empty_issue_is_refused(desk):
    a, *_ = await ids(desk)
    await desk.say(COORDINATOR, "/编期 印发")
    assert "目前没有待印发的一期" in desk.last_reply()
    await desk.say(COORDINATOR, f"/编期 加入 G{a}")
    await desk.say(COORDINATOR, f"/编期 移除 G{a}")
    await desk.say(COORDINATOR, "/编期 印发")
    assert "尚未编入稿件，不能预览或印发" in desk.last_reply()
    [issue] = await issues(desk)
    assert issue.status == "preparing" and await desk.count(Adoption) == 0


async def test_an_edit_on_a_stale_version_is_refused(desk):
    """Two coordinators on one issue: an edit made on the version before another's edit
    is refused (the operation's version check); the later one is not lost either."""
    from handlers import bulletin

    a, b, c = await ids(desk)
    await desk.say(COORDINATOR, f"/编期 加入 G{a} G{b}")
    [issue] = await issues(desk)
    seen = issue.version
    await desk.say(SECOND_COORDINATOR, f"/编期 加入 G{c}")  # the other coordinator, first
    async with desk.bot.db.reader() as s:
        coordinator = await Repo(s).members.by_im(COORDINATOR)
    with pytest.raises(bulletin.Refusal) as refused:
        async with desk.bot.acting(coordinator) as ctx:
            stale = await ctx.repo.bulletins.preparing()
            draft = await ctx.repo.drafts.get(a)
            await bulletin.remove_piece(ctx, stale, draft, seen)
    assert "刚刚已被其他协调员修改，您的操作未执行" in refused.value.text
    assert await order(desk) == [a, b, c]


async def test_control_characters_are_cleaned_from_the_document(desk, tmp_path):
    await desk.say(OFFICER, "/报送 城关镇\x01信息\x07标题\n正文\x02第一段\x0b第二段\x1f。")
    *_, d = await ids(desk)
    await desk.say(COORDINATOR, f"/编期 加入 G{d}")
    await desk.say(COORDINATOR, "/编期 预览")
    [upload] = uploads(desk, "upload_group_file")
    text = paragraphs(upload["file"])  # opens: not a broken file
    assert "城关镇信息标题" in text and "正文第一段" in text and "第二段。" in text
    assert "1. 城关镇信息标题" in text


# ------------------------------------------------------------------ 2, 5. the document


async def test_preview_uploads_a_draft_document(desk):
    a, *_ = await ids(desk)
    await desk.say(COORDINATOR, f"/编期 加入 G{a}")
    await desk.tell(COORDINATOR, "/编期 预览")
    assert "预览稿《2026年高县政务信息第1期（预览稿）.docx》已生成" in desk.last_reply()
    [upload] = uploads(desk, "upload_private_file")
    assert upload["user_id"] == COORDINATOR
    assert "（预览稿）" in paragraphs(upload["file"])
    assert await desk.count(Adoption) == 0  # a preview records nothing


async def test_printed_document_reads_as_a_bulletin(desk):
    path = await print_issue(desk)
    text = paragraphs(path)
    assert text[:3] == ["高县政务信息", "第1期", "高县人民政府办公室编\t2026年11月23日"]
    start = text.index("本期要目")
    assert text[start + 1 : start + 4] == [
        "1. 经信局三措并举稳工业",
        "2. 城关镇推进人居环境整治",
        "3. 城关镇开展安全生产检查",
    ]
    for title, source in (
        ("经信局三措并举稳工业", "（经信局供稿）"),
        ("城关镇推进人居环境整治", "（城关镇供稿）"),
        ("城关镇开展安全生产检查", "（城关镇供稿）"),
    ):
        i = text.index(title, start + 4)
        assert source in text[i:] and text.index(source, i) > i
    assert "全镇清理垃圾300吨。" in text
    assert text[-4:] == [
        "报：市委办公室，市政府办公室",
        "送：县委、县人大、县政府、县政协领导",
        "发：各乡镇人民政府，县级各部门",
        "编辑：张伟\u3000\u3000签发：李强\u3000\u3000印数：60份",
    ]
    document = docx.Document(str(path))
    masthead = document.paragraphs[0].runs[0]
    assert masthead.font.color.rgb == docx.shared.RGBColor(0xE6, 0x00, 0x12)
    assert masthead.font.size.pt == 48
    fonts = masthead.element.rPr.rFonts
    assert fonts.get(docx.oxml.ns.qn("w:eastAsia")) == "方正小标宋简体"
    section = document.sections[0]
    assert (round(section.page_width.cm, 1), round(section.page_height.cm, 1)) == (21.0, 29.7)
    assert round(section.top_margin.cm, 1) == 3.7 and round(section.left_margin.cm, 1) == 2.8


needs_office = pytest.mark.skipif(
    os.environ.get("CI") != "true" and not (shutil.which("soffice") and shutil.which("pdftoppm")),
    reason="LibreOffice and poppler missing (on CI they are installed and this runs)",
)


def render_first_page(document: Path, out: Path) -> tuple[str, Path]:
    """LibreOffice converts the document to PDF (its own profile: parallel runs do not
    clash); poppler gives page 1's text and a PNG of it."""
    profile = (out / "lo-profile").as_uri()
    subprocess.run(
        ["soffice", f"-env:UserInstallation={profile}", "--headless", "--convert-to", "pdf",
         "--outdir", str(out), str(document)],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    [pdf] = out.glob("*.pdf")
    text = subprocess.run(
        ["pdftotext", "-f", "1", "-l", "1", str(pdf), "-"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    subprocess.run(
        ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", str(pdf), str(out / "page")],
        check=True, timeout=60,
    )  # fmt: skip
    [png] = out.glob("page*.png")
    return text, png


@needs_office
async def test_printed_document_renders_with_libreoffice(desk, tmp_path):
    path = await print_issue(desk)
    text, png = await asyncio.to_thread(render_first_page, path, tmp_path)
    assert "高县政务信息" in text and "第1期" in text and "本期要目" in text
    assert "1. 经信局三措并举稳工业" in text
    assert png.stat().st_size > 10_000  # a page with something on it
    if keep := os.environ.get("XINXIBOT_KEEP_RENDER"):  # to look at it
        shutil.copy(png, keep)


# ------------------------------------------------------------------ 3. recorded once, scored once


async def test_printing_adopts_every_piece_once_with_points_history_and_notices(desk):
    a, b, c = await ids(desk)
    await desk.say(COORDINATOR, f"/编期 加入 G{a} G{b} G{c}")
    await desk.say(COORDINATOR, f"/编期 形式 G{c} 摘编")
    await desk.say(COORDINATOR, "/编期 印发")
    assert said(desk, "第1期已印发，共3篇，均已记为县级采用并通知各单位")
    async with desk.bot.db.reader() as s:
        adoptions = list((await s.execute(select(Adoption).order_by(Adoption.id))).scalars())
        points = list(
            (await s.execute(select(PointsEntry).where(PointsEntry.kind == "adoption"))).scalars()
        )
        events = list(
            (await s.execute(select(DraftEvent).where(DraftEvent.action == "adopt"))).scalars()
        )
    assert [(x.draft_id, x.outlet, x.level, x.form, x.issue) for x in adoptions] == [
        (a, "县政务信息", "county", "full", "1"),
        (b, "县政务信息", "county", "full", "1"),
        (c, "县政务信息", "county", "excerpt", "1"),
    ]
    assert sorted(p.points for p in points) == [0.5, 1, 1]
    assert len(events) == 3
    group_texts = desk.fake.texts("group", GROUP)
    assert any(
        "城关镇《城关镇推进人居环境整治》" in t and "被《县政务信息》全文采用" in t
        for t in group_texts
    )
    # the file goes to the group and to the configured recipient
    assert [u["group_id"] for u in uploads(desk, "upload_group_file")] == [GROUP]
    assert [u["user_id"] for u in uploads(desk, "upload_private_file")] == [10090]
    # printing again changes nothing
    await desk.say(COORDINATOR, "/编期 印发")
    assert "没有待印发的一期，未重复印发" in desk.last_reply()
    assert await desk.count(Adoption) == 3
    # /采用 by hand in the same outlet is refused as a duplicate, naming the issue
    await desk.say(COORDINATOR, f"/采用 G{a} 县")
    assert "（第1期），未重复记录" in desk.last_reply()


async def test_a_correction_replaces_a_piece_with_history_kept(desk):
    a, b, c = await ids(desk)
    await desk.say(COORDINATOR, f"/编期 加入 G{a} G{b}")
    await desk.say(COORDINATOR, "/编期 印发")
    await desk.say(COORDINATOR, f"/编期 更正 第1期 G{b} G{c}")
    assert said(desk, f"G{c}《城关镇开展安全生产检查》替换G{b}")
    async with desk.bot.db.reader() as s:
        adoptions = list((await s.execute(select(Adoption).order_by(Adoption.id))).scalars())
        entries = list(
            (await s.execute(select(BulletinEntry).order_by(BulletinEntry.id))).scalars()
        )
    assert [(x.draft_id, x.revoked_at is not None) for x in adoptions] == [
        (a, False), (b, True), (c, False)
    ]  # fmt: skip
    assert [(e.draft_id, e.position, e.replaced_by) for e in entries] == [
        (a, 1, None), (b, 2, c), (c, 2, None)
    ]  # fmt: skip
    [issue] = await issues(desk)
    text = paragraphs(issue.file_path)
    assert "（更正）" in text and "城关镇开展安全生产检查" in text
    assert "经信局三措并举稳工业" not in text
    await desk.say(COORDINATOR, f"/编期 更正 第1期 G{b} G{c}")
    assert f"稿件G{b}不在" in desk.last_reply()


# ------------------------------------------------------------------ 4. posted and archived


async def test_issues_are_listed_and_fetched_again(desk):
    path = await print_issue(desk)
    await desk.say(OFFICER, "/期刊")
    text = desk.last_reply()
    assert "《高县政务信息》2026年已印发1期" in text and "第1期 2026-11-23，3篇" in text
    desk.fake.clear()
    path.unlink()  # lost on disk: written again from its rows
    await desk.say(OFFICER, "/期刊 第1期")
    [upload] = uploads(desk, "upload_group_file")
    assert upload["name"] == "2026年高县政务信息第1期.docx"
    assert "第1期" in paragraphs(upload["file"])
    await desk.say(OFFICER, "/期刊 第9期")
    assert "没有已印发的《高县政务信息》2026年第9期" in desk.last_reply()
    await desk.say(OFFICER, "/期刊 2025")
    assert "2025年尚无已印发的期刊" in desk.last_reply()


# ------------------------------------------------------------------ the console's 编期 page


async def test_the_console_page_compiles_previews_and_prints(desk):
    from .test_console import Visitor

    desk.bot.config.web.public_url = desk.base
    a, b, c = await ids(desk)
    v = await Visitor(desk).login(COORDINATOR)
    try:
        page = await v.page("/console/bulletin")
        assert "《高县政务信息》2026年第1期" in page and "尚未开始编辑" in page
        assert f"G{a}《城关镇推进人居环境整治》城关镇" in page
        back = "/console/bulletin"
        for d in (a, b, c):
            version = await current_version(desk)
            _, page = await v.act("bulletin_add", back, draft=f"G{d}", version=version)
        assert await order(desk) == [a, b, c]
        _, page = await v.act("bulletin_move", back, draft=f"G{c}", step="up",
                              version=await current_version(desk))  # fmt: skip
        assert await order(desk) == [a, c, b]
        stale = await current_version(desk)
        await v.act("bulletin_remove", back, draft=f"G{a}", version=stale)
        # a second coordinator's page still shows the old version: refused, nothing changed
        _, page = await v.act("bulletin_move", back, draft=f"G{b}", step="up", version=stale)
        assert "刚刚已被其他协调员修改，您的操作未执行" in page
        assert await order(desk) == [c, b]
        data = {"csrf": v.csrf, "back": back, "version": str(await current_version(desk))}
        async with v.client.post(
            desk.base + "/console/action/bulletin_preview", data=data, headers={"Origin": desk.base}
        ) as resp:
            assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
            body = await resp.read()
        preview = desk.bot.config.files_path / "check.docx"
        preview.write_bytes(body)
        assert "1. 城关镇开展安全生产检查" in paragraphs(preview)
        _, page = await v.act("bulletin_publish", back, version=await current_version(desk))
        assert "第1期已印发，共2篇" in page
        assert [u["group_id"] for u in uploads(desk, "upload_group_file")] == [GROUP]
        async with desk.bot.db.reader() as s:
            adopted = [x.draft_id for x in (await s.execute(select(Adoption))).scalars()]
        assert sorted(adopted) == sorted([b, c])
        assert "下一期为" not in page and "第2期" in await v.page("/console/bulletin")
    finally:
        await v.close()


async def current_version(h) -> int:
    async with h.bot.db.reader() as s:
        issue = await Repo(s).bulletins.preparing()
        return issue.version if issue else 0
