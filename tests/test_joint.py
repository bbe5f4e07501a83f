"""综合采用 (issue 13 item 13): one adopted piece credited to several units' drafts, the
points split by the rule file's `[joint] split`, every credited unit told."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from handlers.scoring import rescore
from storage.models import Adoption, DraftStatus, PointsEntry

from .conftest import COORDINATOR, GROUP, populate, start_harness
from .test_standings import rules_file

WENJIANG = 10021  # 文江镇's officer


@pytest.fixture
async def county(tmp_path, fake_onebot):
    harness, server = await start_harness(tmp_path, fake_onebot)
    yield harness
    await harness.close()
    await server.close()


async def three_drafts(h) -> list[int]:
    """城关镇, 经信局 and 文江镇 each submit one draft on the same subject."""
    await populate(h)
    await h.say(COORDINATOR, "/添加单位 文江镇")
    await h.register(WENJIANG, "文江镇", "陈芳")
    for user, unit in ((10020, "城关镇"), (10030, "经信局"), (WENJIANG, "文江镇")):
        await h.say(user, f"/报送 {unit}冬季防火工作\n{unit}……")
    return [d.id for d in await h.drafts()]


async def adoption_rows(h) -> list[tuple[int, str, int | None, bool]]:
    async with h.bot.db.reader() as s:
        rows = (await s.execute(select(Adoption).order_by(Adoption.id))).scalars().all()
        return [(a.draft_id, a.form, a.joint_of, a.revoked_at is None) for a in rows]


async def live_points(h) -> dict[int, float]:
    async with h.bot.db.reader() as s:
        q = select(PointsEntry).where(PointsEntry.void.is_(False), PointsEntry.kind == "adoption")
        return {p.draft_id: p.points for p in (await s.execute(q)).scalars()}


async def test_a_joint_adoption_splits_the_points_and_tells_every_unit(county):
    h = county
    g1, g2, g3 = await three_drafts(h)
    h.fake.clear()
    await h.say(COORDINATOR, f"/采用 G{g1} 市 综合 合并 G{g2} G{g3}")
    rows = await adoption_rows(h)
    head = None
    async with h.bot.db.reader() as s:
        head = (await s.execute(select(Adoption.id).where(Adoption.draft_id == g1))).scalar_one()
    assert rows == [(g1, "combined", None, True), (g2, "combined", head, True),
                    (g3, "combined", head, True)]  # fmt: skip
    assert await live_points(h) == {g1: 0.33, g2: 0.33, g3: 0.33}  # 1 point in 3 equal shares
    group_text = "\n".join(h.fake.texts("group", GROUP))
    assert (
        f"城关镇《城关镇冬季防火工作》（G{g1}）被《政务信息快报》综合采用"
        f"（与经信局G{g2}、文江镇G{g3}合并采用），积0.33分。"
    ) in group_text
    assert f"文江镇《文江镇冬季防火工作》（G{g3}）被《政务信息快报》综合采用" in group_text
    for officer, others in ((10020, f"经信局G{g2}、文江镇G{g3}"), (10030, f"城关镇G{g1}、文江镇G{g3}"),
                            (WENJIANG, f"城关镇G{g1}、经信局G{g2}")):  # fmt: skip
        [detail] = h.fake.texts("private", officer)
        assert f"合并采用：与{others}合并为一条，该条积分由各稿件平均分得。" in detail
    assert {d.status for d in await h.drafts()} == {DraftStatus.adopted}
    await h.say(10020, "/排行 月")
    ranking = h.last_reply()
    for unit in ("城关镇", "经信局", "文江镇"):
        assert f"{unit} 0.33分（报送1条，采用1条）" in ranking, ranking
    # rescore recomputes the same shares
    assert await rescore(h.bot.db, h.bot.rules, datetime(2026, 1, 1), apply=False) == []

    # revoking the adoption it was recorded on revokes the merged ones with it
    await h.say(COORDINATOR, f"/采用 G{g1} 市 撤销")
    assert [live for *_, live in await adoption_rows(h)] == [False, False, False]
    assert await live_points(h) == {}
    assert {d.status for d in await h.drafts()} == {DraftStatus.submitted}


async def test_full_split_credits_each_unit_the_whole(tmp_path, fake_onebot):
    rules = rules_file(tmp_path / "rules.toml", ('split = "equal"', 'split = "full"'))
    h, server = await start_harness(tmp_path, fake_onebot, bot__scoring=str(rules))
    try:
        g1, g2, g3 = await three_drafts(h)
        await h.say(COORDINATOR, f"/采用 G{g1} 省 综合 合并 G{g2}、G{g3}")
        assert await live_points(h) == {g1: 2.0, g2: 2.0, g3: 2.0}
        [detail] = h.fake.texts("private", 10030)
        assert "该条积分各稿件均计全额。" in detail
    finally:
        await h.close()
        await server.close()


async def test_bad_joint_adoptions_are_refused_and_write_nothing(county):
    h = county
    g1, g2, g3 = await three_drafts(h)
    await h.say(WENJIANG, f"/撤回 G{g3}")
    await h.say(COORDINATOR, f"/采用 G{g2} 市")  # 经信局's draft adopted on its own
    before = await adoption_rows(h)
    for words, answer in (
        (f"合并 G{g1}", f"合并采用的稿件号有重复（G{g1}），未记录。"),
        (f"合并 G{g3}", f"稿件G{g3}当前状态为“已撤回”，不能进行此操作。"),
        (f"合并 G{g2}", f"稿件G{g2}已于"),
        ("合并 G999", "未找到稿件G999"),
        ("合并", "/采用 稿件号 刊物或级别"),
    ):
        await h.say(COORDINATOR, f"/采用 G{g1} 市 综合 {words}")
        assert answer in h.last_reply(), (words, h.last_reply())
    assert await adoption_rows(h) == before
    assert (await h.drafts())[0].status == DraftStatus.submitted


async def test_the_console_adopt_form_merges_drafts_too(county):
    from .test_console import Visitor

    h = county
    h.bot.config.web.public_url = h.base
    g1, g2, g3 = await three_drafts(h)
    v = await Visitor(h).login(COORDINATOR)
    try:
        _, page = await v.act("adopt", f"/console/drafts?draft=G{g1}", draft=f"G{g1}",
                              seen="submitted", outlet="政务信息快报|combined",
                              joined=f"G{g2}、G{g3}")  # fmt: skip
        assert f"（与经信局G{g2}、文江镇G{g3}合并采用），积0.33分。" in page
        rows = await adoption_rows(h)
        assert [draft for draft, *_ in rows] == [g1, g2, g3]
        assert rows[0][2] is None and rows[1][2] == rows[2][2] is not None
    finally:
        await v.close()
