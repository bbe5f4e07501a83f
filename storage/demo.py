"""The demo county: units of the three kinds, officers, two coordinators and
a few weeks of drafts, so the sandbox has something to show from the start.
Place names follow 高县 from the seed documents."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import func, select

from .db import Database
from .models import (
    Adoption,
    BulletinEntry,
    BulletinIssue,
    Draft,
    DraftEvent,
    DraftStatus,
    Member,
    OfficerTerm,
    Outbox,
    PointsEntry,
    ProcessedEvent,
    Quota,
    Role,
    Topic,
    TopicTarget,
    Unit,
    UnitAlias,
    UnitKind,
)
from .queries import char_count, content_hash

BOT_ID = 3300000001
GROUP_ID = 700100200
COORDINATORS = {10001: "王科长", 10002: "张敏"}

# name, kind, aliases, officer (im id, name) or None
UNITS: list[tuple[str, UnitKind, list[str], tuple[int, str] | None]] = [
    ("城关镇", UnitKind.township, ["城关"], (10020, "李明")),
    ("文江镇", UnitKind.township, ["文江"], (10021, "陈芳")),
    ("庆符镇", UnitKind.township, ["庆符"], (10022, "赵磊")),
    ("沙河镇", UnitKind.township, ["沙河"], (10023, "刘洋")),
    ("嘉乐镇", UnitKind.township, ["嘉乐"], (10024, "杨静")),
    ("胜天镇", UnitKind.township, ["胜天"], None),
    ("经信局", UnitKind.department, ["经济和信息化局"], (10030, "周强")),
    ("教育局", UnitKind.department, ["教体局"], (10031, "吴婷")),
    ("农业农村局", UnitKind.department, ["农业局"], (10032, "徐涛")),
    ("住建局", UnitKind.department, ["住房和城乡建设局"], (10033, "孙丽")),
    ("应急管理局", UnitKind.department, ["应急局"], (10034, "马超")),
    ("县人民医院", UnitKind.direct_point, ["人民医院"], (10040, "朱琳")),
    ("工业园区管委会", UnitKind.direct_point, ["工业园区"], (10041, "胡军")),
    ("县融媒体中心", UnitKind.direct_point, ["融媒体中心"], (10042, "郭敏")),
]

TITLES = [
    ("{u}“三个一批”推进项目建设提速增效", "经验"),
    ("{u}开展秋冬季森林防火隐患排查", "动态"),
    ("{u}探索“积分制”推动人居环境整治", "经验"),
    ("{u}多措并举做好冬季安全生产工作", "动态"),
    ("{u}农村集体经济发展面临的困难及建议", "建议"),
    ("{u}基层医疗服务能力提升情况调研", "调研"),
    ("{u}群众反映农村公路养护不到位问题", "社情民意"),
    ("{u}“四举措”壮大农业产业化龙头企业", "经验"),
    ("{u}汛前地质灾害排查工作全面展开", "动态"),
    ("{u}营商环境“一窗通办”改革成效明显", "经验"),
    ("{u}部分企业用工短缺问题值得关注", "问题"),
]

BODY = (
    "今年以来，{u}紧紧围绕县委、县政府中心工作，坚持问题导向，狠抓工作落实。"
    "一是强化组织领导，成立工作专班，明确责任分工；二是细化工作措施，建立周调度、月通报机制；"
    "三是加强督查考核，将工作情况纳入年度目标考核。截至目前，已累计完成相关任务{n}项，群众满意度明显提升。"
)


async def seed(db: Database, now: datetime) -> bool:
    """Fill an empty database with the demo county; False when it has units already."""
    async with db.transaction() as s:
        if (await s.execute(select(func.count()).select_from(Unit))).scalar_one():
            return False
        start = now - timedelta(days=35)
        for im_id, name in COORDINATORS.items():
            member = (
                await s.execute(select(Member).where(Member.im_id == im_id))
            ).scalar_one_or_none()
            if member is None:
                s.add(
                    Member(
                        im_id=im_id,
                        name=name,
                        role=Role.coordinator,
                        created_at=start,
                        updated_at=start,
                    )
                )
            else:
                member.name = name
        officers: list[tuple[Unit, Member]] = []
        for name, kind, aliases, officer in UNITS:
            unit = Unit(name=name, kind=kind, created_at=start)
            s.add(unit)
            await s.flush()
            for alias in aliases:
                s.add(UnitAlias(alias=alias, unit_id=unit.id))
            if officer:
                member = Member(
                    im_id=officer[0],
                    name=officer[1],
                    role=Role.officer,
                    unit_id=unit.id,
                    created_at=start,
                    updated_at=start,
                )
                s.add(member)
                await s.flush()
                s.add(OfficerTerm(member_id=member.id, unit_id=unit.id, started_at=start))
                officers.append((unit, member))
        rng = random.Random(20261122)
        day = start + timedelta(days=7)
        while day.date() < now.date():
            if day.weekday() < 5:
                for unit, member in rng.sample(officers, rng.randint(0, 3)):
                    template, category = rng.choice(TITLES)
                    title = template.format(u=unit.name)
                    body = BODY.format(u=unit.name, n=rng.randint(3, 40))
                    when = day.replace(
                        hour=rng.randint(8, 17), minute=rng.randint(0, 59), second=0, microsecond=0
                    )
                    draft = Draft(
                        unit_id=unit.id,
                        submitter_id=member.id,
                        title=title,
                        body=body,
                        char_count=char_count(body),
                        category=category,
                        source="group",
                        group_id=GROUP_ID,
                        content_hash=content_hash(title, body),
                        submitted_at=when,
                        piece_at=when,
                    )
                    s.add(draft)
                    await s.flush()
                    s.add(
                        DraftEvent(draft_id=draft.id, action="submit", actor_id=member.id, at=when)
                    )
            day += timedelta(days=1)
        # quotas: every unit 4 drafts a month, the direct-reporting points 12 points a year
        s.add(Quota(scope="all", period="month", metric="submitted", target=4, valid_from=start))
        s.add(
            Quota(
                scope="kind",
                kind="direct_point",
                period="year",
                metric="points",
                target=12,
                valid_from=start,
            )
        )
        # an open topic due in a few days, one unit has answered already
        coordinator = (
            await s.execute(select(Member).where(Member.im_id == min(COORDINATORS)))
        ).scalar_one()
        topic = Topic(
            title="关于冬季安全生产的经验做法",
            brief="请重点反映隐患排查治理的新举措、新成效，每篇1500字以内。",
            deadline=(now + timedelta(days=3)).replace(hour=17, minute=0, second=0, microsecond=0),
            created_by=coordinator.id,
            created_at=now - timedelta(days=2),
        )
        s.add(topic)
        await s.flush()
        by_name = {unit.name: (unit, member) for unit, member in officers}
        for name in ("城关镇", "文江镇", "经信局", "应急管理局"):
            s.add(TopicTarget(topic_id=topic.id, unit_id=by_name[name][0].id))
        unit, member = by_name["经信局"]
        title, body = "经信局“三查三改”推进工业企业冬季安全生产", BODY.format(u="经信局", n=12)
        answer = Draft(
            unit_id=unit.id,
            submitter_id=member.id,
            title=title,
            body=body,
            char_count=char_count(body),
            category="经验",
            topic_ref=topic.number,
            source="group",
            group_id=GROUP_ID,
            content_hash=content_hash(title, body),
            submitted_at=now - timedelta(days=1),
            piece_at=now - timedelta(days=1),
        )
        s.add(answer)
        await s.flush()
        s.add(
            DraftEvent(
                draft_id=answer.id, action="submit", actor_id=member.id, at=answer.submitted_at
            )
        )
        await _seed_bulletin(s, start, now, coordinator)
    return True


# The default rule file's county outlet, its points for a piece printed whole, its version.
BULLETIN_OUTLET, BULLETIN_POINTS, RULE_VERSION = "县政务信息", 1.0, "2026"


async def _seed_bulletin(s, start: datetime, now: datetime, coordinator: Member) -> None:
    """Two printed issues of the county bulletin, three pieces each, recorded as /编期 印发
    records them (adoptions, points, history; their documents are written when first
    fetched), and the next issue in preparation with two pieces."""
    drafts = list((await s.execute(select(Draft).order_by(Draft.submitted_at))).scalars())
    number = 0
    for printed_at in (start + timedelta(days=21), start + timedelta(days=28)):
        printed_at = printed_at.replace(hour=10, minute=0, second=0, microsecond=0)
        pieces = [d for d in drafts if d.submitted_at < printed_at and d.status == "submitted"][:3]
        if not pieces:
            continue
        number += 1
        issue = BulletinIssue(
            year=printed_at.year, number=number, status="printed", version=len(pieces) + 2,
            created_at=printed_at - timedelta(days=1), created_by=coordinator.id,
            printed_at=printed_at, printed_by=coordinator.id,
        )  # fmt: skip
        s.add(issue)
        await s.flush()
        for position, draft in enumerate(pieces, 1):
            s.add(BulletinEntry(issue_id=issue.id, draft_id=draft.id, position=position,
                                added_at=issue.created_at, added_by=coordinator.id))  # fmt: skip
            adoption = Adoption(
                draft_id=draft.id, unit_id=draft.unit_id, outlet=BULLETIN_OUTLET, level="county",
                form="full", issue=str(number), at=printed_at, by=coordinator.id,
            )  # fmt: skip
            s.add(adoption)
            await s.flush()
            s.add(PointsEntry(unit_id=draft.unit_id, draft_id=draft.id, kind="adoption",
                              ref_id=adoption.id, points=BULLETIN_POINTS,
                              rule_version=RULE_VERSION, at=printed_at))  # fmt: skip
            s.add(DraftEvent(draft_id=draft.id, action="adopt", actor_id=coordinator.id,
                             at=printed_at, reason=BULLETIN_OUTLET))  # fmt: skip
            draft.status = DraftStatus.adopted
    recent = [d for d in drafts if d.status == "submitted" and d.submitted_at.year == now.year]
    if len(recent) >= 2:
        issue = BulletinIssue(year=now.year, number=number + 1, version=3,
                              created_at=now - timedelta(hours=2), created_by=coordinator.id)  # fmt: skip
        s.add(issue)
        await s.flush()
        for position, draft in enumerate(recent[-2:], 1):
            s.add(BulletinEntry(issue_id=issue.id, draft_id=draft.id, position=position,
                                added_at=issue.created_at, added_by=coordinator.id))  # fmt: skip


async def latest_time(db: Database) -> datetime | None:
    """The latest time anything was recorded at (an event, a message, a draft's
    history): where a restarted demo's clock resumes."""
    async with db.reader() as s:
        times = [
            (await s.execute(select(func.max(column)))).scalar()
            for column in (ProcessedEvent.created_at, Outbox.created_at, DraftEvent.at)
        ]
    return max((t for t in times if t is not None), default=None)
