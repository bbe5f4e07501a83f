"""Hostile uploads: decompression bombs, huge text, long and dirty names, files
fetched from where they must not come from, stalled downloads. Loopback only;
every fixture is built here (no big binaries in the repository)."""

from __future__ import annotations

import io
import os
import secrets
import zipfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from handlers import files
from handlers.drafts import BODY_PAGE
from storage.db import is_sqlite
from storage.models import DraftStatus, FileJob

from .conftest import COORDINATOR, FakeOneBot, Harness, populate, start_harness
from .test_files import make_docx, read_bytes, upload_event

W = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def docx_with_document_xml(chunks: Iterable[bytes]) -> bytes:
    """A valid .docx whose word/document.xml is written from `chunks`, streamed, so
    a huge inflated size costs the test little memory."""
    src = zipfile.ZipFile(io.BytesIO(make_docx("标题", "正文")))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            if info.filename == "word/document.xml":
                with z.open(info.filename, "w", force_zip64=True) as f:
                    for chunk in chunks:
                        f.write(chunk)
            else:
                z.writestr(info, src.read(info))
    return out.getvalue()


def document_xml(paragraphs: Iterable[bytes]) -> Iterable[bytes]:
    yield b'<?xml version="1.0"?><w:document ' + W + b"><w:body>"
    yield b"<w:p><w:r><w:t>\xe6\xa0\x87\xe9\xa2\x98</w:t></w:r></w:p>"  # 标题
    for text in paragraphs:
        yield b"<w:p><w:r><w:t>" + text + b"</w:t></w:r></w:p>"
    yield b"</w:body></w:document>"


@asynccontextmanager
async def bot(tmp_path: Path, fake: FakeOneBot, **overrides) -> AsyncIterator[Harness]:
    harness, server = await start_harness(tmp_path, fake, **overrides)
    await populate(harness)
    try:
        yield harness
    finally:
        await harness.close()
        await server.close()


async def job_rows(harness: Harness) -> list[FileJob]:
    async with harness.bot.db.reader() as s:
        return list((await s.execute(select(FileJob).order_by(FileJob.id))).scalars())


async def upload(harness: Harness, name: str, data: bytes | None, file_id: str, **kw) -> None:
    if data is not None:
        harness.fake.files[file_id] = data
    await harness.post_event(upload_event(name, file_id=file_id), **kw)


# ------------------------------------------------------------------ bombs and budgets


async def test_docx_bomb_is_refused_from_its_declared_sizes(group):
    # 48 MiB of XML compressed to about 100 KiB: refused before anything is inflated
    paragraph = b"\xe5\x95\x8a" * 1000  # 啊
    bomb = docx_with_document_xml(document_xml(paragraph for _ in range(16 * 1024)))
    assert len(bomb) < 1024 * 1024
    await upload(group, "炸弹.docx", bomb, "bomb")
    assert await group.drafts() == []
    assert "解压后内容过大或过于复杂" in group.last_reply()
    [job] = await job_rows(group)
    assert (job.status, job.error, job.attempts) == ("failed", "bomb", 1)


async def test_billion_laughs_docx_is_unreadable(group):
    entities = b'<!ENTITY a0 "lol">' + b"".join(
        b'<!ENTITY a%d "%s">' % (i, b"&a%d;" % (i - 1) * 10) for i in range(1, 10)
    )
    xml = (
        b'<?xml version="1.0"?><!DOCTYPE w:document [' + entities + b"]><w:document " + W
        + b"><w:body><w:p><w:r><w:t>&a9;</w:t></w:r></w:p></w:body></w:document>"
    )  # fmt: skip
    await upload(group, "实体.docx", docx_with_document_xml([xml]), "laughs")
    assert await group.drafts() == []
    assert "无法读取" in group.last_reply()
    assert (await job_rows(group))[0].error == "unreadable"


async def test_reader_memory_budget(tmp_path, fake_onebot):
    # 12 MB of incompressible XML passes the size checks; it does not fit in 64 MB
    text = (secrets.token_hex(500).encode() for _ in range(12_000))
    heavy = docx_with_document_xml(document_xml(text))
    async with bot(tmp_path, fake_onebot, limits__parse_memory_mb=64) as harness:
        await upload(harness, "很大的稿件.docx", heavy, "heavy")
        assert await harness.drafts() == []
        assert "超出读取上限" in harness.last_reply()
        assert (await job_rows(harness))[0].error == "over_budget"


async def test_reader_time_budget_kills_the_child(tmp_path, fake_onebot, monkeypatch):
    pid_file = tmp_path / "reader.pid"
    stuck = tmp_path / "stuck_reader.py"
    stuck.write_text(
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    )
    monkeypatch.setattr(files, "READER", stuck)
    async with bot(tmp_path, fake_onebot, limits__parse_seconds=1) as harness:
        await upload(harness, "卡住.docx", make_docx("标题", "正文"), "stuck")
        assert "超出读取上限" in harness.last_reply()
        assert (await job_rows(harness))[0].error == "over_budget"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # killed and reaped


async def test_attempts_count_before_reading_so_restarts_never_loop(
    tmp_path, fake_onebot, monkeypatch
):
    seen: list[int] = []

    async def crashing_read(app, name, data):
        seen.append((await job_rows_of(app))[0].attempts)
        raise RuntimeError("the reader took the process down")

    async def job_rows_of(app):
        async with app.db.reader() as s:
            return list((await s.execute(select(FileJob))).scalars())

    monkeypatch.setattr(files, "read", crashing_read)
    fake_onebot.files["crash"] = make_docx("标题", "正文")
    async with bot(tmp_path, fake_onebot) as harness:
        await harness.post_event(upload_event("崩溃.docx", file_id="crash"))
        assert seen == [1]  # counted and committed before the risky work started
    for restart in range(3):  # every restart resumes the pending job ...
        harness, server = await start_harness(tmp_path, fake_onebot)
        await harness.settle()
        if restart == 2:  # ... three tries in all, then it is given up
            assert seen == [1, 2, 3]
            [job] = await job_rows(harness)
            assert (job.status, job.error, job.attempts) == ("failed", "gave_up", 4)
            assert "已读取3次仍未完成" in harness.last_reply()
            assert await harness.drafts() == []
        await harness.close()
        await server.close()


# ------------------------------------------------------------------ huge text


async def test_huge_txt_is_refused_with_the_cap(group):
    line = "今年以来，全县上下认真贯彻落实各项决策部署，各项工作取得积极进展。\n"
    text = "关于全县工作情况的报告\n" + line * 56_000
    assert len(text.encode()) > 5_600_000
    await upload(group, "超长.txt", text.encode(), "huge")
    assert await group.drafts() == []
    reply = group.last_reply()
    assert f"正文{len(text) - 1}字，超过20000字的上限，未予登记" in reply


async def test_long_draft_is_shown_a_page_at_a_time(group):
    body = "".join(f"第{i}段。今年以来全县各项工作稳步推进，成效明显。\n" for i in range(700))
    await upload(group, "长稿.txt", ("长篇调研报告\n" + body).encode(), "long")
    [draft] = await group.drafts()
    assert 18_000 < len(draft.body) < 20_000
    group.fake.clear()
    await group.say(COORDINATOR, f"/稿件 G{draft.id}")
    private = group.fake.texts("private", COORDINATOR)
    assert len(private) <= 3  # not 14 messages for one draft
    first = "\n".join(private)
    assert "第0段" in first and "第699段" not in first
    assert f"发送 /稿件 G{draft.id} 2 查看下一页" in first
    rest = len(draft.body) - BODY_PAGE
    assert f"……等{rest}字" in first
    group.fake.clear()
    await group.say(COORDINATOR, f"/稿件 G{draft.id} 2")
    second = "\n".join(group.fake.texts("private", COORDINATOR))
    pages = -(-len(draft.body) // BODY_PAGE)
    assert f"（第2页，共{pages}页）" in second
    assert draft.body[BODY_PAGE : BODY_PAGE + 40] in second
    group.fake.clear()
    await group.say(COORDINATOR, f"/稿件 G{draft.id} {pages + 1}")
    assert f"正文共{pages}页" in group.last_reply()


def test_split_of_a_huge_line_is_exact():
    from bot.render import POST_LIMIT, Renderer

    text = "字" * 1_900_000
    parts = Renderer().split(text)
    assert all(len(p) <= POST_LIMIT for p in parts)
    assert "".join(p.split("\n", 1)[1] for p in parts) == text


# ------------------------------------------------------------------ names


async def test_long_chinese_file_name_is_kept_as_data(group):
    name = "城关镇关于" + "扎实推进农村人居环境整治工作" * 6 + "的情况报告.docx"
    assert len(name.encode()) > 255
    await upload(group, name, make_docx("城关镇人居环境整治情况", "正文。"), "longname")
    [draft] = await group.drafts()
    assert draft.attachment_name == name and draft.title == "城关镇人居环境整治情况"
    assert read_bytes(draft.attachment_path) == group.fake.files["longname"]
    assert len(Path(draft.attachment_path).name.encode()) < 64
    assert "已收到 城关镇《城关镇人居环境整治情况》" in group.last_reply()


async def test_control_characters_never_reach_a_title(group):
    await upload(group, "城关镇\x00关于\x07防汛\x1b的信息.pdf", b"%PDF-1.4", "nul")
    await upload(group, "正文.txt", "经信局\x00运行\x1b情况\n正文\x00内容\x7f".encode(), "nul2")
    pdf, txt = await group.drafts()
    assert pdf.title == "城关镇关于防汛的信息" and pdf.attachment_name == "城关镇关于防汛的信息.pdf"
    assert txt.title == "经信局运行情况" and txt.body == "正文内容"


# ------------------------------------------------------------------ where files come from


@pytest.fixture
async def secret_site() -> AsyncIterator[tuple[int, list[str]]]:
    """Another service on this machine that a download must never reach."""
    hits: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path == "/go":
            raise web.HTTPFound(f"http://127.0.0.1:{request.url.port}/secret.txt")
        return web.Response(body=b"access_token = 'TOP-SECRET'\n")

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    server = TestServer(app)
    await server.start_server()
    yield server.port, hits
    await server.close()


def answer_with(fake: FakeOneBot, action: str, data: dict) -> None:
    fake.fail_actions[action] = {"status": "ok", "retcode": 0, "data": data}


async def test_urls_to_other_local_services_are_never_fetched(tmp_path, fake_onebot, secret_site):
    port, hits = secret_site
    async with bot(tmp_path, fake_onebot, files__allowed_hosts=[f"localhost:{port}"]) as harness:
        for i, url in enumerate(
            [
                f"http://127.0.0.1:{port}/secret.txt",  # another port of the OneBot host
                f"http://[::ffff:127.0.0.1]:{port}/secret.txt",
                f"http://0.0.0.0:{port}/secret.txt",
                "file:///etc/passwd",
            ]
        ):
            answer_with(harness.fake, "get_group_file_url", {"url": url})
            await upload(harness, f"外部{i}.txt", None, f"ext{i}")
        answer_with(harness.fake, "get_group_file_url", {"url": f"http://localhost:{port}/go"})
        await upload(harness, "跳转.txt", None, "redirect")  # trusted host, redirect re-checked
        assert hits == ["/go"]
        jobs = await job_rows(harness)
        assert [j.error for j in jobs] == ["refused"] * 5
        assert all(d.status == DraftStatus.awaiting_file for d in await harness.drafts())
        assert "下载失败" in harness.last_reply()


async def test_a_name_resolving_to_this_machine_is_refused(tmp_path, fake_onebot, secret_site):
    port, hits = secret_site
    async with bot(tmp_path, fake_onebot) as harness:
        answer_with(harness.fake, "get_group_file_url", {"url": f"http://localhost:{port}/x.txt"})
        await upload(harness, "名称.txt", None, "byname")
        assert hits == []
        assert (await job_rows(harness))[0].error == "refused"


async def test_local_paths_only_inside_local_dir_and_never_the_bots_own(tmp_path, fake_onebot):
    inbox = tmp_path / "napcat"
    inbox.mkdir()
    (inbox / "ok.txt").write_text("经信局运行情况\n正文。", encoding="utf-8")
    (inbox / "link.txt").symlink_to("/etc/passwd")
    config_file = tmp_path / "xinxibot.toml"
    config_file.write_text("[onebot]\naccess_token = 'TOP-SECRET'\n", encoding="utf-8")

    async def ask(harness: Harness, path: Path | str, file_id: str) -> str:
        answer_with(harness.fake, "get_file", {"file": str(path)})
        await upload(harness, f"{file_id}.txt", None, file_id)
        return (await job_rows(harness))[-1].error or "done"

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    async with bot(tmp_path / "a", fake_onebot) as harness:  # no local_dir: no local path
        assert await ask(harness, "/etc/passwd", "passwd") == "refused"
        assert await ask(harness, inbox / "ok.txt", "ok0") == "refused"
    async with bot(tmp_path / "b", fake_onebot, files__local_dir=str(inbox)) as harness:
        assert await ask(harness, "/etc/passwd", "passwd") == "refused"
        assert await ask(harness, inbox / "../xinxibot.toml", "dots") == "refused"
        assert await ask(harness, inbox / "link.txt", "link") == "refused"
        assert await ask(harness, inbox / "ok.txt", "ok") == "done"
        assert (await harness.drafts())[-1].title == "经信局运行情况"
    async with bot(tmp_path, fake_onebot, files__local_dir=str(tmp_path)) as harness:
        harness.bot.config.config_file = config_file  # as `xinxibot run --config` sets it
        (tmp_path / "files").mkdir(exist_ok=True)
        (tmp_path / "files" / "1-old.txt").write_text("别人的稿件\n正文", encoding="utf-8")
        assert await ask(harness, config_file, "config") == "refused"
        if is_sqlite(harness.bot.db.url):  # the database's own files (none here on PostgreSQL)
            assert await ask(harness, tmp_path / "bot.db", "db") == "refused"
            assert await ask(harness, tmp_path / "bot.db-wal", "wal") == "refused"
        assert await ask(harness, tmp_path / "files" / "1-old.txt", "stored") == "refused"
        texts = "\n".join(harness.replies())
        assert "TOP-SECRET" not in texts and "别人的稿件" not in texts


async def test_stalled_downloads_let_new_files_pass(tmp_path, fake_onebot):
    fake_onebot.stalled = {"stall1", "stall2"}
    fake_onebot.files.update(stall1=b"", stall2=b"")  # known to get_group_file_url
    async with bot(tmp_path, fake_onebot, limits__download_stall_seconds=2) as harness:
        await upload(harness, "慢一.docx", None, "stall1", settle=False)
        await upload(harness, "慢二.docx", None, "stall2", settle=False)
        await upload(
            harness, "正常.docx", make_docx("正常上传的稿件", "正文。"), "ok", settle=False
        )
        await harness.settle()
        texts = harness.fake.texts("group")
        receipt = next(i for i, t in enumerate(texts) if "正常上传的稿件" in t)
        failures = [i for i, t in enumerate(texts) if "下载失败" in t]
        assert failures and receipt < min(failures)  # it did not wait behind the stalled two
        assert sorted(j.error or "" for j in await job_rows(harness)) == ["", "stalled", "stalled"]
