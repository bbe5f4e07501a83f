"""Points from the rule file: the one place that turns facts into numbers.

Commands call these when a fact is recorded; `rescore` calls the same
functions to recompute stored rows on purpose and reports what changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from bot.rules import Outlet, Rules
from storage.db import Database
from storage.models import Adoption, Draft, Forward, Instruction, PointsEntry

RESEARCH_MIN_CHARS = 2000


def is_research(draft: Draft) -> bool:
    """调研信息: tagged #调研 and at least 2000 characters."""
    return draft.category == "调研" and (draft.char_count or 0) >= RESEARCH_MIN_CHARS


def adoption_points(
    rules: Rules, outlet: Outlet, form: str, draft: Draft, credited: int = 1
) -> float:
    """What one adoption earns the draft's unit; a 综合采用 credited to `credited` drafts
    gives each an equal share (`[joint] split = "equal"`) or the whole (`"full"`)."""
    points = outlet.points[form]
    if is_research(draft):
        points *= rules.research_multiplier
    if rules.joint_split == "equal":
        points /= credited
    return round(points, 2)


def instruction_points(rules: Rules, level: str, main: bool, first_of_level: bool) -> float:
    """A level counts once per piece: a second instruction of that level earns nothing."""
    if not first_of_level:
        return 0.0
    return rules.instruction[level] + (rules.main_leader_extra if main else 0.0)


@dataclass(frozen=True)
class Change:
    at: datetime
    number: str | None  # the draft's G number, if the row belongs to a draft
    kind: str
    old_points: float
    old_version: str
    new_points: float


async def rescore(db: Database, rules: Rules, since: datetime, apply: bool = True) -> list[Change]:
    """Recompute every live points row dated `since` or later with `rules`;
    rows whose points or rule version change are updated (when `apply`) and returned."""
    changes: list[Change] = []
    async with db.transaction() if apply else db.reader() as s:
        q = (
            select(PointsEntry)
            .where(PointsEntry.at >= since, PointsEntry.void.is_(False))
            .order_by(PointsEntry.id)
        )
        for entry in (await s.execute(q)).scalars():
            draft = await s.get(Draft, entry.draft_id) if entry.draft_id else None
            new = await _expected(s, rules, entry, draft)
            if new != entry.points or entry.rule_version != rules.version:
                number = draft.number if draft else None
                changes.append(
                    Change(entry.at, number, entry.kind, entry.points, entry.rule_version, new)
                )
                if apply:
                    entry.points, entry.rule_version = new, rules.version
    return changes


async def _credited(s, adoption: Adoption) -> int:
    """How many drafts a 综合采用 was credited to when recorded (1 for a plain one)."""
    head = adoption.joint_of or adoption.id
    q = select(func.count()).select_from(Adoption).where(Adoption.joint_of == head)
    return 1 + (await s.execute(q)).scalar_one()


async def _expected(s, rules: Rules, entry: PointsEntry, draft: Draft | None) -> float:
    if entry.kind == "adoption":
        adoption = await s.get(Adoption, entry.ref_id)
        outlet = rules.outlet_named(adoption.outlet)
        if outlet is None or adoption.form not in outlet.points:
            return 0.0  # the outlet or form left the rule file
        return adoption_points(rules, outlet, adoption.form, draft, await _credited(s, adoption))
    if entry.kind == "instruction":
        instruction = await s.get(Instruction, entry.ref_id)
        first_id = (
            await s.execute(
                select(Instruction.id)
                .where(
                    Instruction.draft_id == instruction.draft_id,
                    Instruction.level == instruction.level,
                )
                .order_by(Instruction.id)
                .limit(1)
            )
        ).scalar_one()
        return instruction_points(
            rules, instruction.level, instruction.main, instruction.id == first_id
        )
    if entry.kind == "forwarded":
        forward = await s.get(Forward, entry.ref_id)
        return rules.forwarded[forward.level]
    constant = {
        "topic_bonus": rules.answered_adopted_bonus,
        "urgent_bonus": rules.urgent_on_time,
        "topic_missed": rules.missed_penalty,
        "urgent_late": rules.urgent_late,
        "base": rules.monthly_quota_met,
    }
    return constant[entry.kind]
