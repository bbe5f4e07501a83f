"""SQLModel table models. Times are naive local times (see bot.clock)."""

from __future__ import annotations

import functools
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from pydantic_core import PydanticUndefined
from sqlalchemy import BigInteger, Column, DateTime, Index, Text, UniqueConstraint, inspect
from sqlalchemy.orm.attributes import set_attribute
from sqlmodel import Field, SQLModel


class UnitKind(StrEnum):
    township = "township"
    department = "department"
    direct_point = "direct_point"
    other = "other"


class Role(StrEnum):
    stranger = "stranger"  # not stored: anyone without a member row
    none = "none"  # known person without a role (a retired officer)
    officer = "officer"
    leader = "leader"
    coordinator = "coordinator"


class DraftStatus(StrEnum):
    submitted = "submitted"
    awaiting_file = "awaiting_file"
    withdrawn = "withdrawn"
    returned = "returned"
    rejected = "rejected"
    adopted = "adopted"


CATEGORIES = ("动态", "经验", "问题", "建议", "调研", "紧急", "社情民意")


def big(**kw) -> Column:
    return Column(BigInteger, **kw)


M = TypeVar("M", bound=SQLModel)


@functools.cache
def _defaults(model: type[SQLModel]) -> dict[str, Any]:
    return {
        name: field.default
        for name, field in model.model_fields.items()
        if field.default is not PydanticUndefined and name in model.__table__.columns  # type: ignore[attr-defined]
    }


def new_row(model: type[M], **values: Any) -> M:
    """A new row object as SQLAlchemy makes loaded ones, skipping SQLModel's validation
    (a third of a submission's CPU): for the event path's rows, whose values come from
    our own code. The model's plain defaults fill what `values` leaves out."""
    row = inspect(model).class_manager.new_instance()
    for name, value in {**_defaults(model), **values}.items():
        set_attribute(row, name, value)
    return row


def local_time(**kw):
    """A naive local-time column (see bot.clock), whatever SQLModel's default."""
    return Field(sa_type=DateTime(timezone=False), **kw)


class Unit(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    kind: UnitKind = UnitKind.other
    klass: str | None = None  # 类别 from [units] classes: ranked separately with by_class
    active: bool = True
    created_at: datetime = local_time()  # judged from this moment (quotas, streaks, reports)
    retired_at: datetime | None = local_time(default=None)  # left reminders and rankings then


class UnitAlias(SQLModel, table=True):
    __tablename__ = "unit_alias"
    alias: str = Field(primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)


class Member(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    im_id: int = Field(sa_column=big(unique=True, nullable=False))
    name: str
    role: Role = Role.none
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    created_at: datetime = local_time()
    updated_at: datetime = local_time()


class OfficerTerm(SQLModel, table=True):
    """信息员备案: who was officer of which unit, from when to when."""

    __tablename__ = "officer_term"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    started_at: datetime = local_time()
    ended_at: datetime | None = local_time(default=None)
    started_by: int | None = Field(default=None, foreign_key="member.id")
    ended_by: int | None = Field(default=None, foreign_key="member.id")


class BindRequest(SQLModel, table=True):
    __tablename__ = "bind_request"
    id: int | None = Field(default=None, primary_key=True)
    im_id: int = Field(sa_column=big(nullable=False, index=True))
    name: str
    unit_id: int = Field(foreign_key="unit.id")
    status: str = "pending"  # pending / approved / rejected
    group_id: int | None = Field(default=None, sa_column=big(nullable=True))
    created_at: datetime = local_time()
    decided_by: int | None = Field(default=None, foreign_key="member.id")
    decided_at: datetime | None = local_time(default=None)
    reason: str | None = None


class Draft(SQLModel, table=True):
    """稿件. The number shown to users is "G" + id; AUTOINCREMENT keeps ids unique forever.

    A piece (一条信息) is a draft and its revisions: it counts once, under the time of its
    first submission (`piece_at`, copied into every revision), by its live revision
    (`live`: the latest one not withdrawn)."""

    __table_args__ = (
        # covering: the standings count per unit and period reads only this index
        Index("ix_draft_unit_piece", "unit_id", "piece_at", "live", "status"),
        Index("ix_draft_unit_hash", "unit_id", "content_hash"),
        Index("ix_draft_piece_at", "piece_at"),  # the rollups' partial days (storage/rollup.py)
        {"sqlite_autoincrement": True},
    )
    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id")
    submitter_id: int = Field(foreign_key="member.id")
    title: str
    body: str = Field(default="", sa_type=Text)
    char_count: int | None = None  # None: unknown (an attachment we cannot read)
    category: str = "动态"
    urgent: bool = False
    topic_ref: str | None = Field(default=None, index=True)  # "Y12" as tagged by the officer
    source: str = "group"  # group / private / file
    group_id: int | None = Field(default=None, sa_column=big(nullable=True))
    attachment_name: str | None = None
    attachment_path: str | None = None
    attachment_size: int | None = None
    status: DraftStatus = DraftStatus.submitted
    revision_of: int | None = Field(default=None, foreign_key="draft.id")
    content_hash: str
    submitted_at: datetime = local_time()
    piece_id: int | None = Field(default=None, foreign_key="draft.id", index=True)  # None: itself
    piece_at: datetime = local_time()  # the piece's first submission (set by Drafts.create)
    live: bool = True

    @property
    def number(self) -> str:
        return f"G{self.id}"


class DraftEvent(SQLModel, table=True):
    """History of a draft: submitted, withdrawn, returned, ... (who, when, why)."""

    __tablename__ = "draft_event"
    id: int | None = Field(default=None, primary_key=True)
    draft_id: int = Field(foreign_key="draft.id", index=True)
    action: str
    actor_id: int | None = Field(default=None, foreign_key="member.id")
    reason: str | None = None
    at: datetime = local_time()


class ProcessedEvent(SQLModel, table=True):
    """Keys of events whose effects are committed; written in the same transaction.

    A message's key is remembered until `expires_at` and then pruned (message
    ids repeat over months); keys without it (reports posted, reminders,
    hints, files) are kept for ever."""

    __tablename__ = "processed_event"
    key: str = Field(primary_key=True)
    created_at: datetime = local_time()
    expires_at: datetime | None = local_time(default=None, index=True)


class CollectSession(SQLModel, table=True):
    """A /报送 without body: the next messages of this person in this chat are the body."""

    __tablename__ = "collect_session"
    __table_args__ = (UniqueConstraint("chat_type", "chat_id", "im_id"),)
    id: int | None = Field(default=None, primary_key=True)
    chat_type: str
    chat_id: int = Field(sa_column=big(nullable=False))
    im_id: int = Field(sa_column=big(nullable=False))
    header: str  # the /报送 line: tags and title
    parts: str = Field(default="[]", sa_type=Text)  # JSON list of message texts
    started_at: datetime = local_time()
    last_activity_at: datetime = local_time()
    prompted: bool = False


class FileJob(SQLModel, table=True):
    """An uploaded file waiting to be downloaded and registered as a draft."""

    __tablename__ = "file_job"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id")
    unit_id: int = Field(foreign_key="unit.id")
    self_id: int = Field(sa_column=big(nullable=False))
    chat_type: str
    chat_id: int = Field(sa_column=big(nullable=False))
    file_id: str
    busid: int | None = None
    name: str
    size: int | None = None
    url: str | None = None
    status: str = "pending"  # pending / done / failed
    attempts: int = 0  # counted before each try: a job never runs more than MAX_ATTEMPTS times
    draft_id: int | None = Field(default=None, foreign_key="draft.id")
    error: str | None = None
    created_at: datetime = local_time()


class Outbox(SQLModel, table=True):
    """Every outgoing message, written in the transaction that caused it."""

    __table_args__ = (
        Index("ix_outbox_status_target", "status", "target_type", "target_id", "id"),
        Index("ix_outbox_status_priority", "status", "priority", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    self_id: int | None = Field(default=None, sa_column=big(nullable=True))
    target_type: str  # group / private
    target_id: int = Field(sa_column=big(nullable=False))
    segments: str = Field(sa_type=Text)  # JSON list of OneBot segments
    mergeable: bool = False  # a short receipt/notice that may share a message with others
    # 0: normal; 1: low - help, unknown-command answers, refusals, anything a stranger
    # gets. Sent after the normal rows of its target; dropped when old or too many.
    priority: int = 0
    status: str = "pending"  # pending / sent / failed / unknown / dropped
    attempts: int = 0
    next_attempt_at: datetime | None = local_time(default=None)
    created_at: datetime = local_time()
    sent_at: datetime | None = local_time(default=None)
    message_id: int | None = Field(default=None, sa_column=big(nullable=True))
    last_error: str | None = None


class ServedGroup(SQLModel, table=True):
    """Which QQ account serves each group, written by every bot process at start-up
    from its `onebot.groups`. Several processes share one PostgreSQL database, one
    account each; a post to a group is queued for the group's account, so the
    process of that account, and only it, sends it (and paces it)."""

    __tablename__ = "served_group"
    group_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    self_id: int = Field(sa_column=big(nullable=False, index=True))
    listen: str  # the serving process's listen address, for the operator
    since: datetime = local_time()


class Topic(SQLModel, table=True):
    """约稿: a request for pieces on a subject, by a deadline, from some or all units."""

    id: int | None = Field(default=None, primary_key=True)
    title: str
    brief: str = Field(default="", sa_type=Text)
    deadline: datetime = local_time(index=True)
    all_units: bool = False
    status: str = "open"  # open / closed
    created_by: int = Field(foreign_key="member.id")
    created_at: datetime = local_time()
    closed_at: datetime | None = local_time(default=None)
    closed_by: int | None = Field(default=None, foreign_key="member.id")
    closed_reason: str | None = None  # manual / deadline

    @property
    def number(self) -> str:
        return f"Y{self.id}"


class TopicTarget(SQLModel, table=True):
    __tablename__ = "topic_target"
    topic_id: int = Field(foreign_key="topic.id", primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", primary_key=True)


class TopicClaim(SQLModel, table=True):
    __tablename__ = "topic_claim"
    topic_id: int = Field(foreign_key="topic.id", primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", primary_key=True)
    member_id: int = Field(foreign_key="member.id")
    at: datetime = local_time()


class ReminderLog(SQLModel, table=True):
    """Every reminder sent to a unit: what about, which day. A unit is never
    reminded of the same thing twice in one day (the unique key)."""

    __tablename__ = "reminder_log"
    __table_args__ = (UniqueConstraint("kind", "ref", "unit_id", "day"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str  # topic / quota
    ref: int  # the topic or quota id
    unit_id: int = Field(foreign_key="unit.id", index=True)
    day: str  # ISO date
    stage: str  # 24h / 2h / manual ...
    at: datetime = local_time()


class Adoption(SQLModel, table=True):
    """采用: one row per outlet that adopted a draft; a wrong entry is revoked, not deleted."""

    __table_args__ = (
        Index("ix_adoption_unit_level", "unit_id", "level", "at", "revoked_at"),
        Index("ix_adoption_at", "at"),  # the rollups' partial days (storage/rollup.py)
    )
    id: int | None = Field(default=None, primary_key=True)
    draft_id: int = Field(foreign_key="draft.id", index=True)
    unit_id: int = Field(foreign_key="unit.id")
    outlet: str
    level: str  # county / city / province / national
    form: str  # full / excerpt / combined
    issue: str | None = None  # 第N期
    at: datetime = local_time()
    by: int = Field(foreign_key="member.id")
    revoked_at: datetime | None = local_time(default=None)
    revoked_by: int | None = Field(default=None, foreign_key="member.id")
    # 综合采用 of several units' drafts: the other drafts' rows point at the named draft's
    joint_of: int | None = Field(default=None, foreign_key="adoption.id", index=True)


class Forward(SQLModel, table=True):
    """上报: the county forwarded a draft to the province or the State Council office."""

    __table_args__ = (UniqueConstraint("draft_id", "level"),)
    id: int | None = Field(default=None, primary_key=True)
    draft_id: int = Field(foreign_key="draft.id", index=True)
    unit_id: int = Field(foreign_key="unit.id")
    level: str  # province / national
    at: datetime = local_time()
    by: int = Field(foreign_key="member.id")


class Instruction(SQLModel, table=True):
    """领导批示 on a draft."""

    __table_args__ = (Index("ix_instruction_unit_at", "unit_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    draft_id: int = Field(foreign_key="draft.id", index=True)
    unit_id: int = Field(foreign_key="unit.id")
    level: str  # county / city / province / national
    main: bool = False  # by the principal leader
    note: str | None = None
    at: datetime = local_time()
    by: int = Field(foreign_key="member.id")


class PointsEntry(SQLModel, table=True):
    """积分: every points-bearing event, with the rule version it was computed with.
    Standings are sums of these rows; `void` marks a revoked entry (history kept)."""

    __tablename__ = "points"
    __table_args__ = (
        Index("ix_points_unit_at", "unit_id", "at", "void", "points"),  # covering for the sums
        Index("ix_points_at", "at"),  # rescore --from DATE
    )
    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id")
    draft_id: int | None = Field(default=None, foreign_key="draft.id", index=True)
    kind: str  # adoption / forwarded / instruction / topic_bonus / urgent_bonus / topic_missed / urgent_late / base
    ref_id: int | None = None  # the adoption, forward, instruction or topic
    points: float
    rule_version: str
    at: datetime = local_time()
    void: bool = False


class Rollup(SQLModel, table=True):
    """What the standings count, per unit and day (`span` "day"), month or year,
    kept by database triggers on draft, adoption, instruction and points in the same
    transaction as those rows (storage/rollup.py; `xinxibot db verify` checks them).
    Derived data: no foreign key, a row may hold zeros."""

    __tablename__ = "rollup"
    __table_args__ = {"sqlite_with_rowid": False}
    span: str = Field(primary_key=True)
    bucket: date = Field(primary_key=True)  # the day, or the month's or year's first day
    unit_id: int = Field(primary_key=True)
    submitted: int = 0  # pieces first submitted then, counted by their live version
    adopted_county: int = 0  # adoptions not revoked, per level
    adopted_city: int = 0
    adopted_province: int = 0
    adopted_national: int = 0
    instructions: int = 0
    points: float = 0.0  # the sum of the non-void points rows
    points_rows: int = 0  # how many there are (a unit with rows of 0 points has figures)
    topics_missed: int = 0  # of them, `topic_missed`


class Quota(SQLModel, table=True):
    """目标任务: a target for a unit, a kind of unit or all units, per period and metric.
    Changing a target closes the old row (valid_to) and opens a new one, so a past
    period is judged by the target that was in force then."""

    __table_args__ = (Index("ix_quota_scope", "scope", "unit_id", "kind", "period", "metric"),)
    id: int | None = Field(default=None, primary_key=True)
    scope: str  # unit / kind / all
    unit_id: int | None = Field(default=None, foreign_key="unit.id")
    kind: str | None = None  # township / department / direct_point (scope kind)
    period: str  # month / quarter / year
    metric: str  # submitted / adopted / points
    target: float  # 0: no quota (a unit-specific 0 exempts the unit from a wider quota)
    valid_from: datetime = local_time()
    valid_to: datetime | None = local_time(default=None)
    created_by: int | None = Field(default=None, foreign_key="member.id")


class Exemption(SQLModel, table=True):
    """暂停催报: a unit exempt from reminders from `starts_at` through the day `until`
    (or until ended early); its quotas leave out the exempt working days. Kept as history."""

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    starts_at: datetime = local_time()
    until: date  # the last exempt day
    reason: str | None = None
    created_by: int | None = Field(default=None, foreign_key="member.id")
    ended_at: datetime | None = local_time(default=None)  # /恢复催报 before `until`
    ended_by: int | None = Field(default=None, foreign_key="member.id")

    def last_day(self) -> date:
        """The last exempt day, an early end included (its own day is not exempt)."""
        if self.ended_at is None:
            return self.until
        return min(self.until, self.ended_at.date() - timedelta(days=1))


class LaggingStreak(SQLModel, table=True):
    """How many quota reminder runs in a row found the unit lagging (escalation after 3)."""

    __tablename__ = "lagging_streak"
    unit_id: int = Field(foreign_key="unit.id", primary_key=True)
    runs: int = 0
    last_run_at: datetime = local_time()


class ConsoleLogin(SQLModel, table=True):
    """A one-time link to the web console, sent by /登录: only the token's hash is kept.
    Valid until `expires_at`, once (`used_at`)."""

    __tablename__ = "console_login"
    token_hash: str = Field(primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    created_at: datetime = local_time()
    expires_at: datetime = local_time(index=True)
    used_at: datetime | None = local_time(default=None)


class ConsoleSession(SQLModel, table=True):
    """A logged-in browser (the cookie holds the session id; only its hash is kept).
    It ends after idle time, after a day, at logout, or when the member loses the role."""

    __tablename__ = "console_session"
    id_hash: str = Field(primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    created_at: datetime = local_time()
    last_seen_at: datetime = local_time(index=True)


class BulletinIssue(SQLModel, table=True):
    """一期县信息刊物: numbered per year and type ("" regular, or a type of [bulletin] types).
    At most one is in preparation; `version` grows with every edit, so an edit made on
    what someone saw before another's edit is refused, never silently applied."""

    __tablename__ = "bulletin_issue"
    __table_args__ = (UniqueConstraint("year", "kind", "number"),)
    id: int | None = Field(default=None, primary_key=True)
    year: int
    kind: str = ""  # "": regular; else a type from [bulletin] types, e.g. 专报
    number: int
    status: str = Field(default="preparing", index=True)  # preparing / printed
    version: int = 1
    created_at: datetime = local_time()
    created_by: int | None = Field(default=None, foreign_key="member.id")
    printed_at: datetime | None = local_time(default=None)
    printed_by: int | None = Field(default=None, foreign_key="member.id")
    file_path: str | None = None  # the printed document (the latest correction's)
    corrected_at: datetime | None = local_time(default=None)


class BulletinEntry(SQLModel, table=True):
    """A piece of an issue, in order. A correction of a printed issue keeps the replaced
    entry (`replaced_at`, `replaced_by`) and adds the new one at its position."""

    __tablename__ = "bulletin_entry"
    __table_args__ = (UniqueConstraint("issue_id", "draft_id"),)
    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="bulletin_issue.id", index=True)
    draft_id: int = Field(foreign_key="draft.id", index=True)
    position: int
    form: str = "full"  # the adoption's form: full / excerpt
    added_at: datetime = local_time()
    added_by: int | None = Field(default=None, foreign_key="member.id")
    replaced_at: datetime | None = local_time(default=None)
    replaced_by: int | None = Field(default=None, foreign_key="draft.id")
