"""One permission table, walked whole: every command × stranger / officer / coordinator,
and the unit-scoped commands for an officer of another unit."""

from __future__ import annotations

import pytest

from bot.router import Registry
from handlers import ROUTERS
from storage.models import Role

from .conftest import COORDINATOR

PERSONAS = {Role.stranger: 10099, Role.officer: 10020, Role.coordinator: COORDINATOR}
TABLE = Registry(ROUTERS)


def test_permission_table_is_complete():
    names = {spec.name for spec in TABLE.specs}
    assert len(names) == len(TABLE.specs) >= 30
    # anyone may ask for help, the ranking, the units, the topics and bind themselves
    assert {s.name for s in TABLE.permitted(Role.stranger)} == {
        "帮助",
        "单位",
        "绑定",
        "约稿列表",
        "排行",
    }
    # nobody but coordinators may change scores
    for name in (
        "采用",
        "批示",
        "上报",
        "迟报",
        "设任务",
        "退回",
        "不采用",
        "登记",
        "注销",
        "通报",
        "导出",
    ):
        assert TABLE.lookup(name).roles == frozenset({Role.coordinator}), name
    # the web console: any member may log in (and out); what each sees is the page's roles
    for name in ("登录", "退出登录"):
        assert TABLE.lookup(name).roles == {Role.officer, Role.leader, Role.coordinator}, name


@pytest.mark.parametrize("spec", TABLE.specs, ids=lambda s: s.name)
async def test_every_command_for_every_role(group, spec):
    for role, im_id in PERSONAS.items():
        group.fake.clear()
        await group.say(im_id, f"/{spec.name}")
        replies = group.fake.texts()
        refused = any("仅限" in t for t in replies)
        assert refused == (role not in spec.roles), (spec.name, role, replies)
        if refused:
            hint = "/绑定" if role == Role.stranger else "/帮助"
            assert hint in replies[-1]


async def test_officer_of_another_unit_cannot_act_on_a_draft(group):
    await group.say(10020, "/报送 城关镇的稿件\n正文")
    g = (await group.drafts())[-1].id
    for text in (f"/撤回 G{g}", f"/稿件 G{g}"):
        await group.say(10030, text)
        assert "不属于您所在单位" in group.last_reply(), text
    await group.say(10030, "/任务 城关镇")
    assert "只能查看本单位" in group.last_reply()
    await group.say(COORDINATOR, "/约稿 约稿 截止11月30日 对象 城关镇")
    await group.say(10030, "/认领 Y1")
    assert "不在约稿Y1的对象中" in group.last_reply()
    assert (await group.drafts())[-1].status == "submitted"
