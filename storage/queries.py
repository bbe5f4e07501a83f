"""Query functions, grouped by subject. Handlers call these; they never build SQL."""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TypeVar

from sqlalchemy import (
    ColumnElement,
    Insert,
    Select,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from .cache import RowCache
from .models import (
    Adoption,
    BindRequest,
    BulletinEntry,
    BulletinIssue,
    CollectSession,
    ConsoleLogin,
    ConsoleSession,
    Draft,
    DraftEvent,
    DraftStatus,
    Exemption,
    FileJob,
    Forward,
    Instruction,
    LaggingStreak,
    Member,
    OfficerTerm,
    Outbox,
    PointsEntry,
    ProcessedEvent,
    Quota,
    ReminderLog,
    Role,
    ServedGroup,
    Topic,
    TopicClaim,
    TopicTarget,
    Unit,
    UnitAlias,
    UnitKind,
    new_row,
)
from .standings import counted

T = TypeVar("T", Member, Unit)


def content_hash(title: str, body: str) -> str:
    """Hash of a draft's text that ignores whitespace differences."""
    norm = "".join(title.split()) + "\n" + "".join(body.split())
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def bytes_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def char_count(body: str) -> int:
    """字数 as offices count it: every character of the body except whitespace."""
    return sum(1 for ch in body if not ch.isspace())


@dataclass
class TermView:
    term: OfficerTerm
    member: Member
    unit: Unit
    started_by: Member | None
    ended_by: Member | None


@dataclass
class DraftRow:
    """A draft as the console lists it."""

    draft: Draft
    unit: str
    submitter: str


@dataclass
class AuditEntry:
    """One line of the console's 操作记录: who did what, when. `kind` names the source
    (a draft's history, a topic, an officer term, a binding request, a quota)."""

    at: datetime
    actor: Member | None  # None: the bot itself (a deadline passed) or unknown
    kind: str  # draft / topic_publish / topic_close / term_start / term_end / bind / quota /
    # exempt_start / exempt_end
    action: str  # the draft event's action, a bind request's status, ...
    draft: Draft | None = None
    topic: Topic | None = None
    member: Member | None = None  # the officer a term is about
    unit: Unit | None = None
    quota: Quota | None = None
    request: BindRequest | None = None
    exemption: Exemption | None = None
    detail: str | None = None


@dataclass
class UnitView:
    unit: Unit
    aliases: list[str]
    officers: list[Member]


async def cached(
    s: AsyncSession, model: type[T], key: object, load: Callable[[], Awaitable[T | None]]
) -> T | None:
    """A Member (by IM id) or Unit (by id) from the process's RowCache (storage/cache.py)
    when it holds it, else `load()`, remembered for next time."""
    cache: RowCache | None = s.info.get("cache")
    if cache is None:
        return await load()
    row = cache.get(s.sync_session, model, key)
    if row is None:
        row = await load()
        if row is not None:
            cache.put(s.sync_session, row)
    return row


MEMBER_BY_IM = select(Member).where(Member.im_id == bindparam("im_id"))


class Units:
    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def get(self, unit_id: int) -> Unit | None:
        return await cached(self.s, Unit, unit_id, lambda: self.s.get(Unit, unit_id))

    async def find(self, text: str) -> Unit | None:
        """An active unit by exact name or alias."""
        unit = await self.find_any(text)
        return unit if unit is not None and unit.active else None

    async def find_any(self, text: str) -> Unit | None:
        """A unit by exact name or alias, retired ones included."""
        text = text.strip()
        unit = (await self.s.execute(select(Unit).where(Unit.name == text))).scalar_one_or_none()
        if unit is None:
            unit = (
                await self.s.execute(
                    select(Unit)
                    .join(UnitAlias, UnitAlias.unit_id == Unit.id)
                    .where(UnitAlias.alias == text)
                )
            ).scalar_one_or_none()
        return unit

    async def suggest(self, text: str, n: int = 3) -> list[str]:
        """Closest active unit names to a misspelt one."""
        rows = (
            await self.s.execute(
                select(Unit.name, UnitAlias.alias)
                .outerjoin(UnitAlias, UnitAlias.unit_id == Unit.id)
                .where(Unit.active)
            )
        ).all()
        names = {name for name, _ in rows}
        by_word = {name: name for name in names} | {alias: name for name, alias in rows if alias}
        close = difflib.get_close_matches(text, list(by_word), n=n * 2, cutoff=0.3)
        contains = [w for w in by_word if text and (text in w or w in text)]
        out: list[str] = []
        for word in contains + close:
            if by_word[word] not in out:
                out.append(by_word[word])
        return out[:n]

    async def name_taken(self, words: Iterable[str]) -> str | None:
        """The first of `words` already used as a unit name or alias."""
        for w in words:
            if (await self.s.execute(select(Unit.id).where(Unit.name == w))).first():
                return w
            if await self.s.get(UnitAlias, w):
                return w
        return None

    async def create(
        self,
        name: str,
        kind: UnitKind,
        aliases: Sequence[str],
        now: datetime,
        klass: str | None = None,
    ) -> Unit:
        unit = Unit(name=name, kind=kind, klass=klass, created_at=now)
        self.s.add(unit)
        await self.s.flush()
        for alias in aliases:
            self.s.add(UnitAlias(alias=alias, unit_id=unit.id))
        await self.s.flush()
        return unit

    async def add_aliases(self, unit: Unit, aliases: Iterable[str]) -> None:
        for alias in aliases:
            if await self.s.get(UnitAlias, alias) is None:
                self.s.add(UnitAlias(alias=alias, unit_id=unit.id))
        await self.s.flush()

    async def all_active(self) -> list[Unit]:
        return list(
            (await self.s.execute(select(Unit).where(Unit.active).order_by(Unit.id))).scalars()
        )

    async def existing(self, start: datetime, end: datetime) -> list[Unit]:
        """Units that existed at some moment of [start, end): added before its end and
        not retired before its start (a report of that period shows them)."""
        q = select(Unit).where(
            Unit.created_at < end, or_(Unit.retired_at.is_(None), Unit.retired_at > start)
        )
        return list((await self.s.execute(q.order_by(Unit.id))).scalars())

    def retire(self, unit: Unit, now: datetime) -> None:
        unit.active, unit.retired_at = False, now

    async def listing(self) -> list[UnitView]:
        """Active units with aliases and active officers, townships first."""
        units = (
            (
                await self.s.execute(
                    select(Unit).where(Unit.active).order_by(Unit.kind.desc(), Unit.id)
                )
            )
            .scalars()
            .all()
        )
        aliases: dict[int, list[str]] = {}
        for a in (await self.s.execute(select(UnitAlias).order_by(UnitAlias.alias))).scalars():
            aliases.setdefault(a.unit_id, []).append(a.alias)
        officers: dict[int, list[Member]] = {}
        q = select(Member).where(Member.role == Role.officer).order_by(Member.id)
        for m in (await self.s.execute(q)).scalars():
            officers.setdefault(m.unit_id, []).append(m)
        order = {
            UnitKind.township: 0,
            UnitKind.department: 1,
            UnitKind.direct_point: 2,
            UnitKind.other: 3,
        }
        units = sorted(units, key=lambda u: (order[u.kind], u.id))
        return [UnitView(u, aliases.get(u.id, []), officers.get(u.id, [])) for u in units]


class Members:
    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def get(self, member_id: int) -> Member | None:
        return await self.s.get(Member, member_id)

    async def by_im(self, im_id: int) -> Member | None:
        return await cached(self.s, Member, im_id, lambda: self._by_im(im_id))

    async def _by_im(self, im_id: int) -> Member | None:
        return (await self.s.execute(MEMBER_BY_IM, {"im_id": im_id})).scalar_one_or_none()

    async def ensure(self, im_id: int, name: str, now: datetime) -> Member:
        member = await self.by_im(im_id)
        if member is None:
            member = Member(im_id=im_id, name=name, role=Role.none, created_at=now, updated_at=now)
            self.s.add(member)
            await self.s.flush()
        return member

    async def ensure_coordinator(self, im_id: int, now: datetime) -> None:
        member = await self.ensure(im_id, str(im_id), now)
        if member.role != Role.coordinator:
            await self._end_term(member, None, now)
            member.role, member.unit_id, member.updated_at = Role.coordinator, None, now

    async def rename(self, member: Member, name: str, now: datetime) -> None:
        if name and member.name != name:
            member.name, member.updated_at = name, now

    async def make_officer(
        self, member: Member, unit: Unit, by: Member | None, now: datetime
    ) -> None:
        """Bind `member` to `unit` as its officer; a previous binding ends (history kept)."""
        await self._end_term(member, by, now)
        member.role, member.unit_id, member.updated_at = Role.officer, unit.id, now
        self.s.add(
            OfficerTerm(
                member_id=member.id,
                unit_id=unit.id,
                started_at=now,
                started_by=by.id if by else None,
            )
        )
        await self.s.flush()

    async def retire(self, member: Member, by: Member | None, now: datetime) -> None:
        await self._end_term(member, by, now)
        member.role, member.unit_id, member.updated_at = Role.none, None, now

    async def _end_term(self, member: Member, by: Member | None, now: datetime) -> None:
        await self.s.execute(
            update(OfficerTerm)
            .where(OfficerTerm.member_id == member.id, OfficerTerm.ended_at.is_(None))
            .values(ended_at=now, ended_by=by.id if by else None)
        )

    async def coordinators(self) -> list[Member]:
        q = select(Member).where(Member.role == Role.coordinator).order_by(Member.id)
        return list((await self.s.execute(q)).scalars())

    async def officers_of(self, unit_id: int) -> list[Member]:
        q = (
            select(Member)
            .where(Member.role == Role.officer, Member.unit_id == unit_id)
            .order_by(Member.id)
        )
        return list((await self.s.execute(q)).scalars())

    async def officers_by_unit(self, unit_ids: Iterable[int]) -> dict[int, list[Member]]:
        ids = list(unit_ids)
        q = (
            select(Member)
            .where(Member.role == Role.officer, Member.unit_id.in_(ids))
            .order_by(Member.id)
        )
        out: dict[int, list[Member]] = {i: [] for i in ids}
        for m in (await self.s.execute(q)).scalars():
            out[m.unit_id].append(m)
        return out

    async def terms(self, member_id: int) -> list[OfficerTerm]:
        q = select(OfficerTerm).where(OfficerTerm.member_id == member_id).order_by(OfficerTerm.id)
        return list((await self.s.execute(q)).scalars())

    async def term_history(self, limit: int) -> list[TermView]:
        """信息员备案: the newest officer terms, with who started and ended them."""
        started, ended = aliased(Member), aliased(Member)
        q = (
            select(OfficerTerm, Member, Unit, started, ended)
            .join(Member, Member.id == OfficerTerm.member_id)
            .join(Unit, Unit.id == OfficerTerm.unit_id)
            .outerjoin(started, started.id == OfficerTerm.started_by)
            .outerjoin(ended, ended.id == OfficerTerm.ended_by)
            .order_by(OfficerTerm.id.desc())
            .limit(limit)
        )
        return [TermView(*row) for row in (await self.s.execute(q)).all()]


class BindRequests:
    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def get(self, request_id: int) -> BindRequest | None:
        return await self.s.get(BindRequest, request_id)

    async def pending(self) -> list[BindRequest]:
        q = select(BindRequest).where(BindRequest.status == "pending").order_by(BindRequest.id)
        return list((await self.s.execute(q)).scalars())

    async def pending_for(self, im_id: int) -> BindRequest | None:
        q = select(BindRequest).where(BindRequest.im_id == im_id, BindRequest.status == "pending")
        return (await self.s.execute(q)).scalars().first()

    async def create(
        self, im_id: int, name: str, unit: Unit, group_id: int | None, now: datetime
    ) -> BindRequest:
        req = BindRequest(
            im_id=im_id, name=name, unit_id=unit.id, group_id=group_id, created_at=now
        )
        self.s.add(req)
        await self.s.flush()
        return req

    def decide(
        self, req: BindRequest, status: str, by: Member, reason: str | None, now: datetime
    ) -> None:
        req.status, req.decided_by, req.decided_at, req.reason = status, by.id, now, reason


@dataclass(frozen=True)
class SubmissionFacts:
    recent: int  # the submitter's drafts of the last hour (the flood limit)
    duplicate: int | None  # the unit's draft of the same content, not withdrawn
    returned: int | None  # the unit's latest returned draft of the same title
    month_pieces: int  # the unit's pieces that count, first submitted this month until now


def _unit_drafts(*where: ColumnElement[bool]) -> Select:
    return select(Draft.id).where(Draft.unit_id == bindparam("unit"), *where)


# A member's drafts submitted since a moment (the hourly flood limit).
SUBMITTED_BY_SINCE = select(func.count()).where(
    Draft.submitter_id == bindparam("member"), Draft.submitted_at >= bindparam("hour_ago")
)

# One statement for the four lookups of a submission, built once (DESIGN §9).
SUBMISSION_FACTS = select(
    SUBMITTED_BY_SINCE.scalar_subquery(),
    _unit_drafts(Draft.content_hash == bindparam("digest"), Draft.status != DraftStatus.withdrawn)
    .order_by(Draft.id)
    .limit(1)
    .scalar_subquery(),
    _unit_drafts(Draft.status == DraftStatus.returned, Draft.title == bindparam("title"))
    .order_by(Draft.id.desc())
    .limit(1)
    .scalar_subquery(),
    select(func.count())
    .where(
        Draft.unit_id == bindparam("unit"),
        Draft.piece_at >= bindparam("since"),
        Draft.piece_at <= bindparam("now"),
        counted(),
    )
    .scalar_subquery(),
)


@dataclass(frozen=True)
class DraftLine:
    """A draft as /我的稿件 lists it."""

    id: int
    submitted_at: datetime
    title: str
    status: DraftStatus
    char_count: int | None
    points: float

    @property
    def number(self) -> str:
        return f"G{self.id}"


RECENT_FOR_UNIT = (
    select(
        Draft.id,
        Draft.submitted_at,
        Draft.title,
        Draft.status,
        Draft.char_count,
        select(func.coalesce(func.sum(PointsEntry.points), 0.0))
        .where(PointsEntry.draft_id == Draft.id, PointsEntry.void.is_(False))
        .scalar_subquery(),
        func.count().over(),  # every draft of the unit, counted before the LIMIT
    )
    .where(Draft.unit_id == bindparam("unit"))
    .order_by(Draft.id.desc())
    .limit(bindparam("limit"))
)


class Drafts:
    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def get(self, draft_id: int) -> Draft | None:
        return await self.s.get(Draft, draft_id)

    async def get_locked(self, draft_id: int) -> Draft | None:
        """The draft, its row locked until the transaction ends and read as committed after
        the lock: two coordinators acting on one draft at once take turns, and the second
        sees what the first did (on PostgreSQL; SQLite has one writer anyway)."""
        q = (
            select(Draft)
            .where(Draft.id == draft_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.s.execute(q)).scalar_one_or_none()

    async def submission_facts(
        self, draft: Draft, hour_ago: datetime, month_start: datetime
    ) -> SubmissionFacts:
        """What a new `draft` (not yet stored) is checked against, in one statement."""
        params = {
            "member": draft.submitter_id,
            "unit": draft.unit_id,
            "hour_ago": hour_ago,
            "digest": draft.content_hash,
            "title": draft.title,
            "since": month_start,
            "now": draft.submitted_at,
        }
        return SubmissionFacts(*(await self.s.execute(SUBMISSION_FACTS, params)).one())

    async def create(self, draft: Draft, actor: Member) -> Draft:
        """Store a draft. A revision (`revision_of`) joins the piece of the draft it revises:
        it takes the piece's first-submission time and becomes its live version."""
        if draft.revision_of is not None:
            original = await self.s.get(Draft, draft.revision_of)
            draft.piece_id = original.piece_id or original.id
            draft.piece_at = original.piece_at
            await self.s.execute(
                update(Draft)
                .where(or_(Draft.id == draft.piece_id, Draft.piece_id == draft.piece_id))
                .where(Draft.live)
                .values(live=False)
            )
        else:
            draft.piece_at = draft.submitted_at
        self.s.add(draft)
        await self.s.flush()
        self.s.add(
            new_row(
                DraftEvent,
                draft_id=draft.id,
                action="submit",
                actor_id=actor.id,
                at=draft.submitted_at,
            )
        )
        return draft

    async def record(
        self,
        draft: Draft,
        action: str,
        actor: Member | None,
        now: datetime,
        reason: str | None = None,
    ) -> None:
        self.s.add(
            DraftEvent(
                draft_id=draft.id,
                action=action,
                actor_id=actor.id if actor else None,
                reason=reason,
                at=now,
            )
        )

    async def piece_position(self, draft: Draft, since: datetime) -> int:
        """The place of `draft`'s piece among its unit's pieces that count, first submitted
        from `since` on (in order of first submission, then of number)."""
        root = draft.piece_id or draft.id
        q = select(func.count()).where(
            Draft.unit_id == draft.unit_id,
            Draft.piece_at >= since,
            or_(
                Draft.piece_at < draft.piece_at,
                and_(
                    Draft.piece_at == draft.piece_at,
                    func.coalesce(Draft.piece_id, Draft.id) <= root,
                ),
            ),
            counted(),
        )
        return (await self.s.execute(q)).scalar_one()

    async def reinstate_previous(self, draft: Draft) -> None:
        """`draft` (a live revision) was withdrawn: the version it revised is live again."""
        if draft.revision_of is not None and draft.live:
            previous = await self.s.get(Draft, draft.revision_of)
            draft.live, previous.live = False, True

    async def pieces(self, start: datetime, end: datetime) -> list[tuple[Draft, str, list[int]]]:
        """The pieces that count, first submitted in [start, end), in that order: each
        piece's live draft, its unit's name and the ids of all its versions."""
        q = (
            select(Draft, Unit.name)
            .join(Unit, Unit.id == Draft.unit_id)
            .where(Draft.piece_at >= start, Draft.piece_at < end, counted())
            .order_by(Draft.piece_at, func.coalesce(Draft.piece_id, Draft.id))
        )
        live = (await self.s.execute(q)).all()
        roots = [d.piece_id for d, _ in live if d.piece_id is not None]
        versions: dict[int, list[int]] = {}
        if roots:
            q = select(Draft.id, func.coalesce(Draft.piece_id, Draft.id)).where(
                or_(Draft.id.in_(roots), Draft.piece_id.in_(roots))
            )
            for draft_id, root in (await self.s.execute(q.order_by(Draft.id))).all():
                versions.setdefault(root, []).append(draft_id)
        return [(d, unit, versions.get(d.piece_id, [d.id])) for d, unit in live]

    async def count_by_member_since(self, member_id: int, since: datetime) -> int:
        params = {"member": member_id, "hour_ago": since}
        return (await self.s.execute(SUBMITTED_BY_SINCE, params)).scalar_one()

    async def recent_for_unit(self, unit_id: int, limit: int) -> tuple[list[DraftLine], int]:
        """The unit's latest drafts with their points, and how many it has in all."""
        rows = (await self.s.execute(RECENT_FOR_UNIT, {"unit": unit_id, "limit": limit})).all()
        return [DraftLine(*row[:-1]) for row in rows], rows[0][-1] if rows else 0

    async def history(self, draft_id: int) -> list[tuple[DraftEvent, Member | None]]:
        q = (
            select(DraftEvent, Member)
            .outerjoin(Member, Member.id == DraftEvent.actor_id)
            .where(DraftEvent.draft_id == draft_id)
            .order_by(DraftEvent.id)
        )
        return [(e, m) for e, m in (await self.s.execute(q)).all()]

    async def listing(
        self,
        *,
        unit_id: int | None = None,
        category: str | None = None,
        topic_ref: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        limit: int = 30,
        offset: int = 0,
    ) -> tuple[list[DraftRow], int]:
        """Drafts newest first, filtered; and how many match."""
        conditions = [
            column == value
            for column, value in (
                (Draft.unit_id, unit_id),
                (Draft.category, category),
                (Draft.topic_ref, topic_ref),
                (Draft.status, status),
            )
            if value is not None
        ]
        if since is not None:
            conditions.append(Draft.submitted_at >= since)
        total = (
            await self.s.execute(select(func.count()).select_from(Draft).where(*conditions))
        ).scalar_one()
        q = (
            select(Draft, Unit.name, Member.name)
            .join(Unit, Unit.id == Draft.unit_id)
            .join(Member, Member.id == Draft.submitter_id)
            .where(*conditions)
            .order_by(Draft.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [DraftRow(*row) for row in (await self.s.execute(q)).all()], total

    async def awaiting_file(self, unit_id: int, name: str) -> Draft | None:
        q = select(Draft).where(
            Draft.unit_id == unit_id,
            Draft.status == DraftStatus.awaiting_file,
            Draft.attachment_name == name,
        )
        return (await self.s.execute(q.order_by(Draft.id))).scalars().first()


@functools.cache
def _claim_statement(dialect: str, expiring: bool) -> Insert:
    """The INSERT of a processed-event key, built once per dialect and kind: an expiring
    key that has expired is claimed anew, a key kept for ever never."""
    if dialect == "postgresql":  # only the dialect in use is loaded
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(ProcessedEvent).values(
        key=bindparam("key"), created_at=bindparam("now"), expires_at=bindparam("expires")
    )
    if not expiring:
        return stmt.on_conflict_do_nothing()
    return stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={"created_at": bindparam("now"), "expires_at": bindparam("expires")},
        where=ProcessedEvent.expires_at <= bindparam("now"),
    )


class Events:
    """Processed-event keys: the dedupe record, written with the event's effects."""

    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def claim(self, key: str, now: datetime, ttl: timedelta | None = None) -> bool:
        """Record `key` (for `ttl`, or for ever); False when it is already recorded
        and not expired (a redelivery). An expired key is claimed anew."""
        expires = now + ttl if ttl is not None else None
        stmt = _claim_statement(self.s.bind.dialect.name, expiring=ttl is not None)
        connection = await self.s.connection()  # Core: the session would run a bulk insert
        result = await connection.execute(stmt, {"key": key, "now": now, "expires": expires})
        return result.rowcount == 1

    async def prune(self, now: datetime) -> int:
        """Forget expired keys (messages); keys kept for ever are never touched."""
        result = await self.s.execute(
            delete(ProcessedEvent).where(ProcessedEvent.expires_at <= now)
        )
        return result.rowcount

    async def seen(self, key: str) -> bool:
        return await self.s.get(ProcessedEvent, key) is not None

    async def recorded_at(self, key: str) -> datetime | None:
        row = await self.s.get(ProcessedEvent, key)
        return row.created_at if row is not None else None


class OutboxQueue:
    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    def add(
        self,
        target_type: str,
        target_id: int,
        segments: list[dict],
        now: datetime,
        *,
        self_id: int | None,
        mergeable: bool = False,
        priority: int = 0,
    ) -> None:
        self.s.add(
            new_row(
                Outbox,
                self_id=self_id,
                target_type=target_type,
                target_id=target_id,
                segments=json.dumps(segments, ensure_ascii=False),
                mergeable=mergeable,
                priority=priority,
                created_at=now,
            )
        )


class ServedGroups:
    """Which account serves which group (one row per group)."""

    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def routes(self) -> dict[int, int]:
        """group id -> the account serving it."""
        return dict((await self.s.execute(select(ServedGroup.group_id, ServedGroup.self_id))).all())

    async def register(
        self, self_id: int, groups: Iterable[int], listen: str, now: datetime, only: bool = False
    ) -> None:
        """`self_id` serves exactly `groups` now (a group taken from another account moves);
        `only`: no other account is served any more (one process on SQLite)."""
        groups = set(groups)
        gone = ServedGroup.group_id.not_in(groups)
        await self.s.execute(
            delete(ServedGroup).where(gone if only else gone & (ServedGroup.self_id == self_id))
        )
        for group_id in sorted(groups):
            row = await self.s.get(ServedGroup, group_id)
            if row is None:
                self.s.add(
                    ServedGroup(group_id=group_id, self_id=self_id, listen=listen, since=now)
                )
            elif (row.self_id, row.listen) != (self_id, listen):
                row.self_id, row.listen, row.since = self_id, listen, now


class Collecting:
    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def get(self, chat_type: str, chat_id: int, im_id: int) -> CollectSession | None:
        q = select(CollectSession).where(
            CollectSession.chat_type == chat_type,
            CollectSession.chat_id == chat_id,
            CollectSession.im_id == im_id,
        )
        return (await self.s.execute(q)).scalar_one_or_none()

    async def start(
        self, chat_type: str, chat_id: int, im_id: int, header: str, now: datetime
    ) -> CollectSession:
        old = await self.get(chat_type, chat_id, im_id)
        if old is not None:
            await self.s.delete(old)
            await self.s.flush()
        session = CollectSession(
            chat_type=chat_type,
            chat_id=chat_id,
            im_id=im_id,
            header=header,
            started_at=now,
            last_activity_at=now,
        )
        self.s.add(session)
        await self.s.flush()
        return session

    def append(self, session: CollectSession, text: str, now: datetime) -> None:
        parts = json.loads(session.parts)
        parts.append(text)
        session.parts = json.dumps(parts, ensure_ascii=False)
        session.last_activity_at, session.prompted = now, False

    async def finish(self, session: CollectSession) -> None:
        await self.s.delete(session)

    async def idle_since(self, cutoff: datetime) -> list[CollectSession]:
        """Idle, not yet prompted; rows another process is prompting now are skipped
        (PostgreSQL; SQLite has one process)."""
        q = select(CollectSession).where(
            CollectSession.last_activity_at <= cutoff, CollectSession.prompted.is_(False)
        )
        return list((await self.s.execute(q.with_for_update(skip_locked=True))).scalars())

    async def all_keys(self) -> list[tuple[str, int, int]]:
        q = select(CollectSession.chat_type, CollectSession.chat_id, CollectSession.im_id)
        return [tuple(r) for r in (await self.s.execute(q)).all()]


class FileJobs:
    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def get(self, job_id: int) -> FileJob | None:
        return await self.s.get(FileJob, job_id)

    async def add(self, job: FileJob) -> FileJob:
        self.s.add(job)
        await self.s.flush()
        return job

    async def pending_ids(self, self_id: int | None = None) -> list[int]:
        """Downloads to resume; with `self_id`, only that account's (the others' processes
        resume theirs)."""
        q = select(FileJob.id).where(FileJob.status == "pending")
        if self_id is not None:
            q = q.where(FileJob.self_id == self_id)
        return list((await self.s.execute(q.order_by(FileJob.id))).scalars())


class Topics:
    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def get(self, topic_id: int) -> Topic | None:
        return await self.s.get(Topic, topic_id)

    async def create(self, topic: Topic, targets: Sequence[Unit]) -> Topic:
        self.s.add(topic)
        await self.s.flush()
        for unit in targets:
            self.s.add(TopicTarget(topic_id=topic.id, unit_id=unit.id))
        await self.s.flush()
        return topic

    async def open_same(self, title: str, deadline: datetime) -> Topic | None:
        """An open topic with this title and deadline (publishing it again is a mistake)."""
        q = select(Topic).where(
            Topic.status == "open", Topic.title == title, Topic.deadline == deadline
        )
        return (await self.s.execute(q.order_by(Topic.id))).scalars().first()

    async def open_topics(self) -> list[Topic]:
        q = select(Topic).where(Topic.status == "open").order_by(Topic.deadline, Topic.id)
        return list((await self.s.execute(q)).scalars())

    async def recently_closed(self, limit: int) -> list[Topic]:
        q = select(Topic).where(Topic.status == "closed").order_by(Topic.closed_at.desc())
        return list((await self.s.execute(q.limit(limit))).scalars())

    async def targets(self, topic: Topic) -> list[Unit]:
        """The units asked and not retired: the listed ones, or for an all-units topic every
        unit that existed when it was published."""
        if topic.all_units:
            q = select(Unit).where(Unit.active, Unit.created_at <= topic.created_at)
        else:
            q = (
                select(Unit)
                .join(TopicTarget, TopicTarget.unit_id == Unit.id)
                .where(TopicTarget.topic_id == topic.id, Unit.active)
            )
        return list((await self.s.execute(q.order_by(Unit.id))).scalars())

    async def answered_unit_ids(self, topic: Topic) -> set[int]:
        q = (
            select(Draft.unit_id)
            .where(Draft.topic_ref == topic.number, Draft.status != DraftStatus.withdrawn)
            .distinct()
        )
        return set((await self.s.execute(q)).scalars())

    async def claims(self, topic: Topic) -> list[tuple[TopicClaim, Unit]]:
        q = (
            select(TopicClaim, Unit)
            .join(Unit, Unit.id == TopicClaim.unit_id)
            .where(TopicClaim.topic_id == topic.id)
            .order_by(TopicClaim.at)
        )
        return [(c, u) for c, u in (await self.s.execute(q)).all()]

    async def claim(self, topic: Topic, unit: Unit, member: Member, now: datetime) -> bool:
        """Record the unit's claim; False if the unit had claimed it already."""
        if await self.s.get(TopicClaim, (topic.id, unit.id)) is not None:
            return False
        self.s.add(TopicClaim(topic_id=topic.id, unit_id=unit.id, member_id=member.id, at=now))
        return True

    def close(self, topic: Topic, by: Member | None, reason: str, now: datetime) -> None:
        topic.status, topic.closed_at, topic.closed_reason = "closed", now, reason
        topic.closed_by = by.id if by else None


class Reminders:
    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def sent_on(self, kind: str, ref: int, day: str) -> list[ReminderLog]:
        q = select(ReminderLog).where(
            ReminderLog.kind == kind, ReminderLog.ref == ref, ReminderLog.day == day
        )
        return list((await self.s.execute(q)).scalars())

    async def sent_on_day(self, kind: str, day: str) -> list[ReminderLog]:
        q = select(ReminderLog).where(ReminderLog.kind == kind, ReminderLog.day == day)
        return list((await self.s.execute(q)).scalars())

    async def last_for_unit(self, kind: str, unit_id: int) -> datetime | None:
        q = select(func.max(ReminderLog.at)).where(
            ReminderLog.kind == kind, ReminderLog.unit_id == unit_id
        )
        return (await self.s.execute(q)).scalar_one()

    def log(self, kind: str, ref: int, unit_ids: Iterable[int], stage: str, now: datetime) -> None:
        for unit_id in unit_ids:
            self.s.add(
                ReminderLog(
                    kind=kind,
                    ref=ref,
                    unit_id=unit_id,
                    day=now.date().isoformat(),
                    stage=stage,
                    at=now,
                )
            )


class Reviews:
    """Adoptions, forwarding, instructions and the points ledger of drafts."""

    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def adoptions(self, draft_id: int, include_revoked: bool = False) -> list[Adoption]:
        q = select(Adoption).where(Adoption.draft_id == draft_id)
        if not include_revoked:
            q = q.where(Adoption.revoked_at.is_(None))
        return list((await self.s.execute(q.order_by(Adoption.id))).scalars())

    async def adoptions_of(self, draft_ids: Sequence[int]) -> list[Adoption]:
        """The adoptions (not revoked) of several drafts, in the order recorded."""
        q = select(Adoption).where(
            Adoption.draft_id.in_(list(draft_ids)), Adoption.revoked_at.is_(None)
        )
        return list((await self.s.execute(q.order_by(Adoption.id))).scalars())

    async def joined_to(self, head: Adoption) -> list[Adoption]:
        """The live adoptions of the drafts merged into `head` (综合采用)."""
        q = select(Adoption).where(Adoption.joint_of == head.id, Adoption.revoked_at.is_(None))
        return list((await self.s.execute(q.order_by(Adoption.id))).scalars())

    async def active_adoption(self, draft_id: int, outlet: str) -> Adoption | None:
        q = select(Adoption).where(
            Adoption.draft_id == draft_id, Adoption.outlet == outlet, Adoption.revoked_at.is_(None)
        )
        return (await self.s.execute(q)).scalars().first()

    async def add(self, row: Adoption | Forward | Instruction) -> None:
        self.s.add(row)
        await self.s.flush()

    async def forward(self, draft_id: int, level: str) -> Forward | None:
        q = select(Forward).where(Forward.draft_id == draft_id, Forward.level == level)
        return (await self.s.execute(q)).scalar_one_or_none()

    async def forwards(self, draft_id: int) -> list[Forward]:
        return list(
            (await self.s.execute(select(Forward).where(Forward.draft_id == draft_id))).scalars()
        )

    async def instructions(self, draft_id: int) -> list[Instruction]:
        q = select(Instruction).where(Instruction.draft_id == draft_id).order_by(Instruction.id)
        return list((await self.s.execute(q)).scalars())

    def add_points(
        self,
        unit_id: int,
        draft_id: int | None,
        kind: str,
        ref_id: int | None,
        points: float,
        version: str,
        at: datetime,
    ) -> PointsEntry:
        entry = PointsEntry(
            unit_id=unit_id,
            draft_id=draft_id,
            kind=kind,
            ref_id=ref_id,
            points=points,
            rule_version=version,
            at=at,
        )
        self.s.add(entry)
        return entry

    async def void_points(self, kind: str, ref_id: int) -> None:
        await self.s.execute(
            update(PointsEntry)
            .where(PointsEntry.kind == kind, PointsEntry.ref_id == ref_id)
            .values(void=True)
        )

    async def points_entries(self, draft_id: int) -> list[PointsEntry]:
        q = (
            select(PointsEntry)
            .where(PointsEntry.draft_id == draft_id, PointsEntry.void.is_(False))
            .order_by(PointsEntry.id)
        )
        return list((await self.s.execute(q)).scalars())

    async def draft_points(self, draft_ids: Sequence[int]) -> dict[int, float]:
        if not draft_ids:
            return {}
        q = (
            select(PointsEntry.draft_id, func.sum(PointsEntry.points))
            .where(PointsEntry.draft_id.in_(list(draft_ids)), PointsEntry.void.is_(False))
            .group_by(PointsEntry.draft_id)
        )
        return {d: float(p) for d, p in (await self.s.execute(q)).all()}


class Quotas:
    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def active_at(self, moment: datetime) -> list[Quota]:
        q = select(Quota).where(
            Quota.valid_from <= moment, (Quota.valid_to.is_(None)) | (Quota.valid_to > moment)
        )
        return list((await self.s.execute(q.order_by(Quota.id))).scalars())

    async def replace(self, quota: Quota) -> Quota | None:
        """Put `quota` in force; the one it replaces (same scope, period, metric) ends now."""
        q = select(Quota).where(
            Quota.scope == quota.scope,
            Quota.unit_id.is_(None) if quota.unit_id is None else Quota.unit_id == quota.unit_id,
            Quota.kind.is_(None) if quota.kind is None else Quota.kind == quota.kind,
            Quota.period == quota.period,
            Quota.metric == quota.metric,
            Quota.valid_to.is_(None),
        )
        old = (await self.s.execute(q)).scalars().first()
        if old is not None:
            old.valid_to = quota.valid_from
        self.s.add(quota)
        await self.s.flush()
        return old

    async def bump_streaks(
        self, units: set[int], lagging: set[int], now: datetime
    ) -> dict[int, int]:
        """Count reminder runs in a row at which each unit with a quota lagged."""
        rows = {r.unit_id: r for r in (await self.s.execute(select(LaggingStreak))).scalars()}
        out = {}
        for unit_id in units:
            row = rows.get(unit_id)
            if row is None:
                row = LaggingStreak(unit_id=unit_id, runs=0, last_run_at=now)
                self.s.add(row)
            row.runs = row.runs + 1 if unit_id in lagging else 0
            row.last_run_at = now
            out[unit_id] = row.runs
        return out


class Exemptions:
    """暂停催报: who is exempt from reminders, until when, why; history kept."""

    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    def _active(self, moment: datetime):
        return select(Exemption).where(
            Exemption.starts_at <= moment,
            Exemption.until >= moment.date(),
            or_(Exemption.ended_at.is_(None), Exemption.ended_at > moment),
        )

    async def active(self, moment: datetime) -> dict[int, Exemption]:
        """The exemptions in force at `moment`, by unit."""
        q = self._active(moment).order_by(Exemption.id)
        return {e.unit_id: e for e in (await self.s.execute(q)).scalars()}

    async def current(self, unit_id: int, moment: datetime) -> Exemption | None:
        q = self._active(moment).where(Exemption.unit_id == unit_id)
        return (await self.s.execute(q)).scalars().first()

    async def overlapping(self, start: date, end: date) -> list[Exemption]:
        """Exemptions with a day in [start, end)."""
        q = select(Exemption).where(
            Exemption.starts_at < datetime.combine(end, datetime.min.time()),
            Exemption.until >= start,
        )
        return list((await self.s.execute(q.order_by(Exemption.id))).scalars())

    async def add(self, row: Exemption) -> Exemption:
        self.s.add(row)
        await self.s.flush()
        return row

    def end(self, row: Exemption, by: Member | None, now: datetime) -> None:
        row.ended_at, row.ended_by = now, by.id if by else None


def secret_hash(token: str) -> str:
    """What is stored of a login token or a session id: never the secret itself."""
    return hashlib.sha256(token.encode()).hexdigest()


class ConsoleAccess:
    """One-time login links and sessions of the web console (bot/console.py)."""

    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    def issue_login(self, member: Member, now: datetime, valid: timedelta) -> str:
        """A new one-time login token for `member`; only its hash is stored."""
        token = secrets.token_urlsafe(32)
        self.s.add(
            ConsoleLogin(
                token_hash=secret_hash(token),
                member_id=member.id,
                created_at=now,
                expires_at=now + valid,
            )
        )
        return token

    async def login(self, token: str, now: datetime) -> ConsoleLogin | None:
        """The login behind `token` if it is still usable (unused, not expired)."""
        row = await self.s.get(ConsoleLogin, secret_hash(token))
        return row if row is not None and row.used_at is None and row.expires_at > now else None

    async def use_login(self, token: str, now: datetime) -> int | None:
        """Spend the token (once, even when two requests race): its member's id, or None."""
        result = await self.s.execute(
            update(ConsoleLogin)
            .where(
                ConsoleLogin.token_hash == secret_hash(token),
                ConsoleLogin.used_at.is_(None),
                ConsoleLogin.expires_at > now,
            )
            .values(used_at=now)
            .returning(ConsoleLogin.member_id)
        )
        return result.scalar_one_or_none()

    def open_session(self, member_id: int, now: datetime) -> str:
        """A new session for the member; returns the session id (for the cookie)."""
        session_id = secrets.token_urlsafe(32)
        self.s.add(
            ConsoleSession(
                id_hash=secret_hash(session_id),
                member_id=member_id,
                created_at=now,
                last_seen_at=now,
            )
        )
        return session_id

    async def session(self, session_id: str) -> tuple[ConsoleSession, Member] | None:
        q = (
            select(ConsoleSession, Member)
            .join(Member, Member.id == ConsoleSession.member_id)
            .where(ConsoleSession.id_hash == secret_hash(session_id))
        )
        row = (await self.s.execute(q)).first()
        return (row[0], row[1]) if row is not None else None

    async def touch(self, session_id: str, now: datetime) -> None:
        await self.s.execute(
            update(ConsoleSession)
            .where(ConsoleSession.id_hash == secret_hash(session_id))
            .values(last_seen_at=now)
        )

    async def end_session(self, session_id: str) -> None:
        await self.s.execute(
            delete(ConsoleSession).where(ConsoleSession.id_hash == secret_hash(session_id))
        )

    async def end_sessions(self, member_id: int) -> int:
        """End every session of the member; how many there were."""
        result = await self.s.execute(
            delete(ConsoleSession).where(ConsoleSession.member_id == member_id)
        )
        return result.rowcount

    async def prune(self, now: datetime, idle: timedelta, longest: timedelta) -> None:
        """Forget expired login links and sessions."""
        await self.s.execute(delete(ConsoleLogin).where(ConsoleLogin.expires_at <= now))
        await self.s.execute(
            delete(ConsoleSession).where(
                (ConsoleSession.last_seen_at <= now - idle)
                | (ConsoleSession.created_at <= now - longest)
            )
        )


class AuditLog:
    """The console's 操作记录: the history rows of drafts and every other row that names
    who acted (topics, officer terms, binding decisions, quotas, exemptions), newest first."""

    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def entries(self, limit: int, offset: int = 0) -> list[AuditEntry]:
        n = limit + offset  # each source's newest n rows: enough for the merged page
        actor = aliased(Member)
        out: list[AuditEntry] = []
        q = (
            select(DraftEvent, Draft, Unit, actor)
            .join(Draft, Draft.id == DraftEvent.draft_id)
            .join(Unit, Unit.id == Draft.unit_id)
            .outerjoin(actor, actor.id == DraftEvent.actor_id)
            .order_by(DraftEvent.at.desc(), DraftEvent.id.desc())
            .limit(n)
        )
        for e, draft, unit, who in (await self.s.execute(q)).all():
            out.append(
                AuditEntry(e.at, who, "draft", e.action, draft=draft, unit=unit, detail=e.reason)
            )
        for column, by, kind in (
            (Topic.created_at, Topic.created_by, "topic_publish"),
            (Topic.closed_at, Topic.closed_by, "topic_close"),
        ):
            q = (
                select(Topic, actor)
                .outerjoin(actor, actor.id == by)
                .where(column.is_not(None))
                .order_by(column.desc())
                .limit(n)
            )
            for topic, who in (await self.s.execute(q)).all():
                at = topic.created_at if kind == "topic_publish" else topic.closed_at
                out.append(AuditEntry(at, who, kind, topic.closed_reason or "", topic=topic))
        for column, by, kind in (
            (OfficerTerm.started_at, OfficerTerm.started_by, "term_start"),
            (OfficerTerm.ended_at, OfficerTerm.ended_by, "term_end"),
        ):
            q = (
                select(OfficerTerm, Member, Unit, actor)
                .join(Member, Member.id == OfficerTerm.member_id)
                .join(Unit, Unit.id == OfficerTerm.unit_id)
                .outerjoin(actor, actor.id == by)
                .where(column.is_not(None))
                .order_by(column.desc())
                .limit(n)
            )
            for term, member, unit, who in (await self.s.execute(q)).all():
                at = term.started_at if kind == "term_start" else term.ended_at
                out.append(AuditEntry(at, who, kind, "", member=member, unit=unit))
        q = (
            select(BindRequest, Unit, actor)
            .join(Unit, Unit.id == BindRequest.unit_id)
            .outerjoin(actor, actor.id == BindRequest.decided_by)
            .where(BindRequest.decided_at.is_not(None))
            .order_by(BindRequest.decided_at.desc())
            .limit(n)
        )
        for req, unit, who in (await self.s.execute(q)).all():
            out.append(
                AuditEntry(req.decided_at, who, "bind", req.status, unit=unit, request=req,
                           detail=req.reason)
            )  # fmt: skip
        q = (
            select(Quota, Unit, actor)
            .outerjoin(Unit, Unit.id == Quota.unit_id)
            .outerjoin(actor, actor.id == Quota.created_by)
            .where(Quota.created_by.is_not(None))
            .order_by(Quota.valid_from.desc())
            .limit(n)
        )
        for quota, unit, who in (await self.s.execute(q)).all():
            out.append(AuditEntry(quota.valid_from, who, "quota", "", unit=unit, quota=quota))
        for column, by, kind in (
            (Exemption.starts_at, Exemption.created_by, "exempt_start"),
            (Exemption.ended_at, Exemption.ended_by, "exempt_end"),
        ):
            q = (
                select(Exemption, Unit, actor)
                .join(Unit, Unit.id == Exemption.unit_id)
                .outerjoin(actor, actor.id == by)
                .where(column.is_not(None))
                .order_by(column.desc())
                .limit(n)
            )
            for exemption, unit, who in (await self.s.execute(q)).all():
                at = exemption.starts_at if kind == "exempt_start" else exemption.ended_at
                out.append(AuditEntry(at, who, kind, "", unit=unit, exemption=exemption))
        out.sort(key=lambda e: e.at, reverse=True)
        return out[offset : offset + limit]


class Bulletins:
    """Issues of the county bulletin and their pieces."""

    def __init__(self, s: AsyncSession) -> None:
        self.s = s

    async def preparing(self) -> BulletinIssue | None:
        q = select(BulletinIssue).where(BulletinIssue.status == "preparing")
        return (await self.s.execute(q.order_by(BulletinIssue.id))).scalars().first()

    async def find(self, year: int, kind: str, number: int) -> BulletinIssue | None:
        q = select(BulletinIssue).where(
            BulletinIssue.year == year, BulletinIssue.kind == kind, BulletinIssue.number == number
        )
        return (await self.s.execute(q)).scalar_one_or_none()

    async def last_number(self, year: int, kind: str) -> int | None:
        """The highest number of the year's issues of `kind`; None when the year has none."""
        q = select(func.max(BulletinIssue.number)).where(
            BulletinIssue.year == year, BulletinIssue.kind == kind
        )
        return (await self.s.execute(q)).scalar()

    async def any_issue(self, other_than: int | None = None) -> bool:
        q = select(BulletinIssue.id).where(BulletinIssue.id != (other_than or 0)).limit(1)
        return (await self.s.execute(q)).first() is not None

    async def create(self, issue: BulletinIssue) -> BulletinIssue:
        self.s.add(issue)
        await self.s.flush()
        return issue

    async def printed(self, year: int) -> list[BulletinIssue]:
        q = select(BulletinIssue).where(
            BulletinIssue.year == year, BulletinIssue.status == "printed"
        )
        return list((await self.s.execute(q.order_by(BulletinIssue.printed_at))).scalars())

    async def bump(self, issue: BulletinIssue, seen: int) -> bool:
        """Count an edit of `issue` as seen at version `seen`: False (nothing changed) when
        someone else's edit came first. The conditional UPDATE waits for a concurrent
        edit's commit on PostgreSQL, so two edits of one version never both pass."""
        result = await self.s.execute(
            update(BulletinIssue)
            .where(BulletinIssue.id == issue.id, BulletinIssue.version == seen)
            .values(version=seen + 1)
        )
        if result.rowcount != 1:
            return False
        await self.s.refresh(issue)
        return True

    async def entries(
        self, issue_id: int, include_replaced: bool = False
    ) -> list[tuple[BulletinEntry, Draft, str]]:
        """The issue's pieces in order, each with its draft and its unit's name."""
        q = (
            select(BulletinEntry, Draft, Unit.name)
            .join(Draft, Draft.id == BulletinEntry.draft_id)
            .join(Unit, Unit.id == Draft.unit_id)
            .where(BulletinEntry.issue_id == issue_id)
        )
        if not include_replaced:
            q = q.where(BulletinEntry.replaced_at.is_(None))
        rows = await self.s.execute(q.order_by(BulletinEntry.position, BulletinEntry.id))
        return [(e, d, name) for e, d, name in rows.all()]

    def add_entry(self, entry: BulletinEntry) -> None:
        self.s.add(entry)

    async def remove_entry(self, entry: BulletinEntry) -> None:
        await self.s.delete(entry)
        await self.s.flush()

    async def printed_in(self, draft_id: int) -> BulletinIssue | None:
        """The printed issue a draft appears in (not replaced by a correction)."""
        q = (
            select(BulletinIssue)
            .join(BulletinEntry, BulletinEntry.issue_id == BulletinIssue.id)
            .where(
                BulletinEntry.draft_id == draft_id,
                BulletinEntry.replaced_at.is_(None),
                BulletinIssue.status == "printed",
            )
        )
        return (await self.s.execute(q)).scalars().first()

    async def candidates(self, year: int, outlet: str, limit: int) -> list[tuple[Draft, str]]:
        """Drafts of `year` that may go into an issue: live, awaiting review or adopted
        elsewhere, in no issue yet and not adopted by the bulletin's outlet; newest first."""
        in_issue = select(BulletinEntry.draft_id).where(BulletinEntry.replaced_at.is_(None))
        adopted_here = select(Adoption.draft_id).where(
            Adoption.outlet == outlet, Adoption.revoked_at.is_(None)
        )
        q = (
            select(Draft, Unit.name)
            .join(Unit, Unit.id == Draft.unit_id)
            .where(
                Draft.live.is_(True),
                Draft.status.in_([DraftStatus.submitted, DraftStatus.adopted]),
                Draft.piece_at >= datetime(year, 1, 1),
                Draft.piece_at < datetime(year + 1, 1, 1),
                Draft.id.not_in(in_issue),
                Draft.id.not_in(adopted_here),
            )
            .order_by(Draft.id.desc())
            .limit(limit)
        )
        return [(d, name) for d, name in (await self.s.execute(q)).all()]


class Repo:
    """All query groups bound to one session (one transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.units = Units(session)
        self.members = Members(session)
        self.binds = BindRequests(session)
        self.drafts = Drafts(session)
        self.events = Events(session)
        self.outbox = OutboxQueue(session)
        self.collecting = Collecting(session)
        self.files = FileJobs(session)
        self.topics = Topics(session)
        self.reminders = Reminders(session)
        self.reviews = Reviews(session)
        self.quotas = Quotas(session)
        self.exemptions = Exemptions(session)
        self.served = ServedGroups(session)
        self.console = ConsoleAccess(session)
        self.audit = AuditLog(session)
        self.bulletins = Bulletins(session)
