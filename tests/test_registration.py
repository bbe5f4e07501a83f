"""Units and officers: registration, binding requests, retirement, history, help."""

from __future__ import annotations

import tomllib

from sqlalchemy import select

from bot.render import TEMPLATE_DIR
from storage.models import BindRequest, Member, OfficerTerm, Role, Unit, UnitAlias, UnitKind

from .conftest import COORDINATOR, GROUP


async def _member(group, im_id: int) -> Member | None:
    async with group.bot.db.reader() as s:
        return (await s.execute(select(Member).where(Member.im_id == im_id))).scalar_one_or_none()


async def _terms(group, im_id: int) -> list[tuple[str, bool]]:
    async with group.bot.db.reader() as s:
        rows = await s.execute(
            select(Unit.name, OfficerTerm.ended_at)
            .join(Unit, Unit.id == OfficerTerm.unit_id)
            .join(Member, Member.id == OfficerTerm.member_id)
            .where(Member.im_id == im_id)
            .order_by(OfficerTerm.id)
        )
        return [(name, ended is None) for name, ended in rows]


async def test_coordinator_registers_officer_with_mention(group):
    await group.register(10021, "城关", "陈芳")  # by alias
    assert (
        group.last_reply()
        == " 已登记 陈芳 为城关镇信息员。可发送 /报送 报送稿件，发送 /帮助 查看全部命令。"
    )
    assert group.fake.sent()[-1][2][0] == {"type": "at", "data": {"qq": "10021"}}
    member = await _member(group, 10021)
    assert member.role == Role.officer and member.name == "陈芳"


async def test_register_by_numeric_id_and_move_to_other_unit_keeps_history(group):
    await group.say(COORDINATOR, "/登记 10020 经信局")
    assert "原为城关镇信息员" in group.last_reply()
    assert await _terms(group, 10020) == [("城关镇", False), ("经信局", True)]
    await group.say(COORDINATOR, "/登记 10020 经信局")
    assert "无需重复登记" in group.last_reply()


async def test_register_unknown_unit_suggests_closest(group):
    await group.say(COORDINATOR, "/登记 10022 城关乡")
    assert "未找到单位“城关乡”" in group.last_reply()
    assert "城关镇" in group.last_reply()
    assert await _member(group, 10022) is None


async def test_officer_cannot_register_others(group):
    await group.say(10020, "/登记 10022 城关镇")
    assert "仅限协调员使用" in group.last_reply()
    assert await _member(group, 10022) is None


async def test_bind_request_approved_by_coordinator(group):
    await group.say(10025, "/绑定 经信局", name="经信局-吴婷")
    assert "已提交登记申请（申请号1）" in group.fake.texts("group", GROUP)[-1]
    [notice] = group.fake.texts("private", COORDINATOR)
    assert "经信局-吴婷（QQ 10025）申请登记为经信局信息员" in notice and "“/同意 1”" in notice
    group.fake.clear()
    await group.tell(COORDINATOR, "/同意 1")
    assert "已同意申请1" in group.fake.texts("private", COORDINATOR)[-1]
    assert "协调员已同意" in group.fake.texts("group", GROUP)[-1]  # told where they asked
    member = await _member(group, 10025)
    assert member.role == Role.officer and member.name == "经信局-吴婷"
    await group.tell(COORDINATOR, "/同意 1")
    assert "无需重复处理" in group.last_reply()


async def test_bind_request_rejected_with_reason(group):
    await group.say(10026, "/绑定 城关镇", name="张三")
    await group.say(10026, "/绑定 经信局", name="张三")
    assert "待审核的登记申请（申请号1）" in group.last_reply()
    await group.say(COORDINATOR, "/拒绝 1 非本单位人员")
    assert "理由：非本单位人员" in group.last_reply()
    assert await _member(group, 10026) is None
    async with group.bot.db.reader() as s:
        req = (await s.execute(select(BindRequest))).scalar_one()
    assert req.status == "rejected" and req.reason == "非本单位人员"


async def test_stranger_in_private_gets_one_hint_a_day(group):
    await group.tell(10099, "/绑定 城关镇")
    await group.tell(10099, "你好")
    await group.tell(10099, "/帮助")
    texts = group.fake.texts("private", 10099)
    assert len(texts) == 1 and "/绑定 单位名称" in texts[0]
    from datetime import timedelta

    group.clock.advance(timedelta(days=1))
    await group.tell(10099, "你好")
    assert len(group.fake.texts("private", 10099)) == 2
    async with group.bot.db.reader() as s:
        assert (await s.execute(select(BindRequest))).first() is None


async def test_retire_officer_keeps_history(group):
    await group.say(
        COORDINATOR,
        [
            {"type": "text", "data": {"text": "/注销 "}},
            {"type": "at", "data": {"qq": "10020"}},
        ],
    )
    assert "已注销 李明 的城关镇信息员登记" in group.last_reply()
    member = await _member(group, 10020)
    assert member.role == Role.none and member.unit_id is None
    assert await _terms(group, 10020) == [("城关镇", False)]
    await group.say(10020, "/报送 注销后报送\n正文")
    assert "仅限已登记人员使用" in group.last_reply()
    await group.say(COORDINATOR, "/注销 10020")
    assert "不是在册信息员" in group.last_reply()


async def test_add_unit_with_kind_and_aliases_and_refuse_duplicates(group):
    await group.say(COORDINATOR, "/添加单位 县人民医院 直报点 人民医院，县医院")
    assert "已添加单位：县人民医院（直报点），别名：人民医院、县医院" in group.last_reply()
    await group.say(COORDINATOR, "/添加单位 文江镇")  # kind guessed from the name
    await group.say(COORDINATOR, "/添加单位 医院 部门 县医院")
    assert "“县医院”已是现有单位的名称或别名" in group.last_reply()
    async with group.bot.db.reader() as s:
        kinds = dict((await s.execute(select(Unit.name, Unit.kind))).all())
        aliases = set((await s.execute(select(UnitAlias.alias))).scalars())
    assert kinds["县人民医院"] == UnitKind.direct_point and kinds["文江镇"] == UnitKind.township
    assert "医院" not in kinds and {"人民医院", "县医院", "城关"} <= aliases


async def test_unit_list_shows_officers(group):
    await group.say(10099, "/单位")
    text = group.last_reply()
    assert "城关镇（乡镇） 别名：城关 信息员：李明" in text
    assert "经信局（部门） 信息员：周强" in text


async def test_help_is_filtered_by_role(group):
    await group.say(10099, "/帮助")
    stranger = group.last_reply()
    assert "/绑定 单位" in stranger and "/登记" not in stranger and "/报送" not in stranger
    await group.say(10020, "/help")
    officer = group.last_reply()
    assert "/报送" in officer and "/登记" not in officer
    group.fake.clear()
    await group.say(COORDINATOR, "/帮助")
    coordinator = "\n".join(group.replies())  # long enough to come in parts
    assert "/登记 @成员 单位" in coordinator and "/添加单位" in coordinator
    await group.say(10020, "/帮助 登记")
    assert "使用范围：协调员（您当前不可使用）" in group.last_reply()
    await group.say(10020, "/帮助 单位")  # everyone: two roles share the label 未登记人员
    assert "使用范围：协调员、领导、未登记人员、信息员" in group.last_reply()


def test_every_command_has_help_text():
    from bot.router import Registry
    from handlers import ROUTERS

    info = tomllib.loads((TEMPLATE_DIR / "commands.toml").read_text(encoding="utf-8"))
    for spec in Registry(ROUTERS).specs:
        assert spec.name in info, spec.name
        assert info[spec.name]["usage"].startswith("/" + spec.name)
        assert info[spec.name]["summary"]
