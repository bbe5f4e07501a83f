"""Uploaded files become drafts: group_upload notices and private file messages."""

from __future__ import annotations

import copy
import io

import docx
from sqlalchemy import select

from storage.models import DraftStatus, FileJob

from .conftest import GROUP, fixture

FILE_ID = "a1b2c3d4-5e6f-7081-92a3-b4c5d6e7f809"


def make_docx(*paragraphs: str) -> bytes:
    document = docx.Document()
    for p in paragraphs:
        document.add_paragraph(p)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def upload_event(
    name: str = "城关镇关于秋冬季森林防火工作的信息.docx",
    user_id: int = 10020,
    file_id: str = FILE_ID,
) -> dict:
    event = copy.deepcopy(fixture("group_upload.json"))
    event["user_id"] = user_id
    event["file"]["name"] = name
    event["file"]["id"] = "/" + file_id
    return event


async def test_group_upload_of_docx_becomes_a_draft(group):
    group.fake.files[FILE_ID] = make_docx(
        "城关镇扎实做好秋冬季森林防火工作", "", "今年以来，城关镇高度重视。", "一是加强巡查。"
    )
    await group.post_event(upload_event())
    [draft] = await group.drafts()
    assert draft.title == "城关镇扎实做好秋冬季森林防火工作"
    assert draft.body == "今年以来，城关镇高度重视。\n一是加强巡查。"
    assert draft.char_count == 13 + 7
    assert draft.source == "file" and draft.attachment_name.endswith(".docx")
    assert read_bytes(draft.attachment_path) == group.fake.files[FILE_ID]
    actions = [a for a, _ in group.fake.calls]
    assert actions == ["get_group_file_url", "send_group_msg"]
    assert group.fake.calls[0][1] == {"group_id": GROUP, "file_id": "/" + FILE_ID, "busid": 102}
    assert group.last_reply() == f" 已收到 城关镇《{draft.title}》，编号G{draft.id}，本月第1条。"


async def test_napcat_double_report_counts_once(group):
    group.fake.files[FILE_ID] = make_docx("标题", "正文")
    as_message = group.message_event(
        10020,
        [
            {
                "type": "file",
                "data": {"file": "x.docx", "file_id": "/" + FILE_ID, "file_size": "100"},
            }
        ],
    )
    await group.post_event(as_message)
    await group.post_event(upload_event())
    assert len(await group.drafts()) == 1
    assert len(group.fake.texts()) == 1


async def test_txt_in_gb18030_and_pdf_as_attachment(group):
    group.fake.files["t1"] = "经信局工业经济运行情况\n1至10月，全县规上工业增加值增长8%。".encode(
        "gb18030"
    )
    group.fake.files["p1"] = b"%PDF-1.4 fake"
    await group.post_event(upload_event("运行情况.txt", user_id=10030, file_id="t1"))
    await group.post_event(upload_event("经信局调研报告.pdf", user_id=10030, file_id="p1"))
    txt, pdf = await group.drafts()
    assert txt.title == "经信局工业经济运行情况" and txt.char_count == len(
        "1至10月，全县规上工业增加值增长8%。"
    )
    assert pdf.title == "经信局调研报告" and pdf.char_count is None and pdf.body == ""
    assert "字数：—" not in group.last_reply()  # the group receipt stays one line


async def test_corrupt_docx_is_refused_and_nothing_half_written(group):
    group.fake.files[FILE_ID] = b"PK\x03\x04 this is not really a docx"
    await group.post_event(upload_event())
    assert await group.drafts() == []
    assert "无法读取" in group.last_reply()
    async with group.bot.db.reader() as s:
        job = (await s.execute(select(FileJob))).scalar_one()
    assert job.status == "failed"


async def test_download_failure_keeps_a_draft_awaiting_the_file(group):
    await group.post_event(upload_event())  # the fake has no such file: both URL calls fail
    [draft] = await group.drafts()
    assert draft.status == DraftStatus.awaiting_file
    assert draft.title == "城关镇关于秋冬季森林防火工作的信息"
    assert f"已登记为稿件G{draft.id}（待补文件）" in group.last_reply()
    assert [a for a, _ in group.fake.calls][:2] == ["get_group_file_url", "get_file"]
    # the same file uploaded again fills the waiting draft
    group.fake.files["again"] = make_docx("城关镇森林防火工作信息", "正文内容。")
    await group.post_event(upload_event(file_id="again"))
    [draft] = await group.drafts()
    assert draft.status == DraftStatus.submitted and draft.body == "正文内容。"
    assert f"编号G{draft.id}" in group.last_reply()


async def test_files_from_non_officers_are_ignored(group):
    group.fake.files[FILE_ID] = make_docx("标题", "正文")
    await group.post_event(upload_event(user_id=10099))
    assert await group.drafts() == [] and group.fake.calls == []


async def test_oversized_and_unsupported_files_are_refused_before_download(group):
    event = upload_event()
    event["file"]["size"] = 50 * 1024 * 1024
    await group.post_event(event)
    assert "超过20MB上限" in group.last_reply()
    await group.post_event(upload_event("照片.jpg", file_id="jpg"))
    assert "格式暂不受理" in group.last_reply()
    assert [a for a, _ in group.fake.calls] == ["send_group_msg", "send_group_msg"]
    assert await group.drafts() == []


async def test_private_file_message_with_get_file_fallback(group):
    group.fake.files["priv"] = make_docx("经信局私聊报送的稿件", "正文。")
    event = group.message_event(
        10030,
        [{"type": "file", "data": {"file": "稿件.docx", "file_id": "priv", "file_size": 2000}}],
        group=None,
    )
    await group.post_event(event)
    [draft] = await group.drafts()
    assert draft.title == "经信局私聊报送的稿件"
    assert [a for a, _ in group.fake.calls] == ["get_file", "send_private_msg"]
