"""User text, card names and file names with CQ codes or template syntax come out inert."""

from __future__ import annotations

from .conftest import COORDINATOR
from .test_files import make_docx, upload_event


def only_text_and_ids(group) -> None:
    for _, _, segments in group.fake.sent():
        for seg in segments:
            assert seg["type"] in ("text", "at"), seg
            if seg["type"] == "at":
                assert seg["data"]["qq"].isdigit()  # never "all"


async def test_template_syntax_in_a_title_is_not_evaluated(group):
    await group.say(
        10020, "/报送 {{ 7*7 }}{% if true %}X{% endif %}[CQ:at,qq=all]\n正文 {{ config }}"
    )
    assert "《{{ 7*7 }}{% if true %}X{% endif %}[CQ:at,qq=all]》" in group.last_reply()
    only_text_and_ids(group)


async def test_card_name_with_codes_is_shown_literally(group):
    await group.say(10088, "/绑定 城关镇", name="[CQ:at,qq=all]{{ 1+1 }}")
    notice = group.fake.texts("private", COORDINATOR)[-1]
    assert "[CQ:at,qq=all]{{ 1+1 }}（QQ 10088）" in notice
    only_text_and_ids(group)


async def test_file_name_with_codes_is_inert(group):
    name = "[CQ:image,file=x]{{ 2*3 }}.docx"
    group.fake.files["inj"] = make_docx("正常标题", "正文")
    await group.post_event(upload_event(name=name, file_id="inj"))
    group.fake.files.clear()
    await group.post_event(upload_event(name="[CQ:at,qq=all]失败.docx", file_id="missing"))
    assert "文件《[CQ:at,qq=all]失败.docx》下载失败" in group.last_reply()
    only_text_and_ids(group)
