"""Review and bookkeeping: /退回 /不采用 /采用 /上报 /批示 /迟报.

Every fact is a row with who and when; every points-bearing fact writes a
points row with the rule version (also when the rule gives 0, so a later
`rescore` under new rules has something to recompute). The operations
(return_draft, reject_draft, adopt, revoke_adoption, forward, instruct,
record_late) hold these rules; the chat commands parse words and call them,
and so will the console.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.context import Context, Refusal
from bot.pages import BadInput, Form, Page, View
from bot.router import COORDINATORS, OFFICERS, Command, Router, normalize
from bot.rules import FORM_WORDS, FORMS, LEVEL_WORDS, LEVELS, Outlet
from storage import standings as st
from storage.models import (
    CATEGORIES,
    Adoption,
    Draft,
    DraftStatus,
    Forward,
    Instruction,
    Member,
    Role,
)

from .common import (
    draft_arg,
    drafts_named,
    on_draft_as_seen,
    parse_draft_number,
    require_own_unit,
    split_names,
    usage,
)
from .scoring import adoption_points, instruction_points

router = Router("review")

_ISSUE = re.compile(r"^第?(\d{1,5})期$")
REVOKE_WORDS = ("撤销", "撤消", "取消")
JOINT_WORDS = ("合并", "联合")


@dataclass(frozen=True)
class Recorded:
    """A points-bearing fact an operation recorded, and the one-line notice the unit's
    officers got in the group (a door may show it to the acting coordinator too)."""

    row: Adoption | Instruction
    points: float  # what the fact itself earned (first-adoption bonuses not included)
    notice: str


def _reviewable(draft: Draft) -> None:
    if draft.status in (DraftStatus.withdrawn, DraftStatus.awaiting_file):
        raise Refusal("review_not_possible.txt.j2", draft=draft)


async def _notify_unit(ctx: Context, draft: Draft, one_liner: str, detail: str) -> None:
    """The unit's officers: a group one-liner (in the group the command came from, else in
    every configured group) and a private detail."""
    officers = await ctx.repo.members.officers_of(draft.unit_id)
    for group_id in ctx.origin_groups:
        ctx.post(group_id, one_liner, mention=[o.im_id for o in officers], mergeable=True)
    for officer in officers:
        ctx.tell(officer.im_id, detail)


# ------------------------------------------------------------------ operations


async def return_draft(ctx: Context, draft: Draft, reason: str) -> Member:
    """Return a submitted draft for revision; the submitter is told privately why.
    Returns the submitter."""
    if not reason:
        raise Refusal("return_needs_reason.txt.j2", draft=draft)
    if draft.status != DraftStatus.submitted:
        raise Refusal("review_not_possible.txt.j2", draft=draft)
    draft.status = DraftStatus.returned
    await ctx.repo.drafts.record(draft, "return", ctx.member, ctx.now, reason)
    submitter = await ctx.repo.members.get(draft.submitter_id)
    ctx.tell(
        submitter.im_id, ctx.render("returned_to_submitter.txt.j2", draft=draft, reason=reason)
    )
    return submitter


async def reject_draft(ctx: Context, draft: Draft, reason: str | None = None) -> None:
    """不采用; the submitter is told privately."""
    if draft.status not in (DraftStatus.submitted, DraftStatus.returned):
        raise Refusal("review_not_possible.txt.j2", draft=draft)
    draft.status = DraftStatus.rejected
    await ctx.repo.drafts.record(draft, "reject", ctx.member, ctx.now, reason)
    submitter = await ctx.repo.members.get(draft.submitter_id)
    ctx.tell(
        submitter.im_id, ctx.render("rejected_to_submitter.txt.j2", draft=draft, reason=reason)
    )


async def adopt(
    ctx: Context,
    draft: Draft,
    outlet: Outlet,
    form: str,
    issue: str | None = None,
    joined: Sequence[Draft] = (),
) -> Recorded:
    """Record an adoption of `draft` in `outlet` (one per outlet), its points from the rule
    file and, at the first adoption, the topic and urgent bonuses; the unit's officers get
    the group one-liner and a private detail. `joined`: other drafts merged into the piece
    (综合采用): each gets an adoption row of its own pointing at this one, its share of the
    points (`[joint] split`), its bonuses and its unit's notices."""
    credited = [draft, *joined]
    if len({d.id for d in credited}) != len(credited):
        raise Refusal("adopt_joint_repeated.txt.j2", draft=draft)
    for d in credited:
        _reviewable(d)
        existing = await ctx.repo.reviews.active_adoption(d.id, outlet.name)
        if existing is not None:
            raise Refusal("adopt_duplicate.txt.j2", draft=d, adoption=existing)
    if form not in outlet.points:
        raise Refusal("adopt_bad_form.txt.j2", outlet=outlet, form=form)
    units = {d.id: (await ctx.repo.units.get(d.unit_id)).name for d in credited}
    head: Recorded | None = None
    for d in credited:
        partners = [(units[o.id], o.number) for o in credited if o is not d]
        recorded = await _adopt_one(
            ctx, d, outlet, form, issue, len(credited), head.row.id if head else None, partners
        )
        head = head or recorded
    return head


async def _adopt_one(
    ctx: Context,
    draft: Draft,
    outlet: Outlet,
    form: str,
    issue: str | None,
    credited: int,
    joint_of: int | None,
    partners: list[tuple[str, str]],
) -> Recorded:
    rules = ctx.app.rules
    first = not await ctx.repo.reviews.adoptions(draft.id)
    adoption = Adoption(
        draft_id=draft.id, unit_id=draft.unit_id, outlet=outlet.name, level=outlet.level, form=form,
        issue=issue, at=ctx.now, by=ctx.member.id, joint_of=joint_of,
    )  # fmt: skip
    await ctx.repo.reviews.add(adoption)
    points = adoption_points(rules, outlet, form, draft, credited)
    ctx.repo.reviews.add_points(
        draft.unit_id, draft.id, "adoption", adoption.id, points, rules.version, ctx.now
    )
    bonuses = await _first_adoption_bonuses(ctx, draft) if first else []
    draft.status = DraftStatus.adopted
    await ctx.repo.drafts.record(draft, "adopt", ctx.member, ctx.now, outlet.name)
    unit = await ctx.repo.units.get(draft.unit_id)
    total = sum(
        (await ctx.repo.reviews.draft_points([draft.id])).values()
    )  # autoflush includes the new rows
    context = dict(
        draft=draft, unit=unit.name, adoption=adoption, points=points, bonuses=bonuses,
        total=total, partners=partners, split=rules.joint_split,
    )  # fmt: skip
    one_liner = ctx.render("adopted_one_liner.txt.j2", **context)
    await _notify_unit(ctx, draft, one_liner, ctx.render("adopted_detail.txt.j2", **context))
    return Recorded(adoption, points, one_liner)


async def _first_adoption_bonuses(ctx: Context, draft: Draft) -> list[tuple[str, float]]:
    """Bonuses a draft earns once, at its first adoption: answering a topic, an urgent piece on time."""
    rules, out = ctx.app.rules, []
    kinds = {e.kind for e in await ctx.repo.reviews.points_entries(draft.id)}
    if draft.topic_ref and "topic_bonus" not in kinds:
        topic = await ctx.repo.topics.get(int(draft.topic_ref[1:]))
        if topic is not None and (
            topic.all_units or draft.unit_id in {u.id for u in await ctx.repo.topics.targets(topic)}
        ):
            out.append(("topic_bonus", rules.answered_adopted_bonus))
            ctx.repo.reviews.add_points(
                draft.unit_id,
                draft.id,
                "topic_bonus",
                topic.id,
                rules.answered_adopted_bonus,
                rules.version,
                ctx.now,
            )
    if draft.urgent and "urgent_bonus" not in kinds and "urgent_late" not in kinds:
        out.append(("urgent_bonus", rules.urgent_on_time))
        ctx.repo.reviews.add_points(
            draft.unit_id,
            draft.id,
            "urgent_bonus",
            None,
            rules.urgent_on_time,
            rules.version,
            ctx.now,
        )
    return out


async def revoke_adoption(ctx: Context, draft: Draft, outlet: str) -> None:
    """Revoke a wrong adoption entry (kept in history); its points are voided, and with
    the last adoption gone the first-adoption bonuses too. Revoking the adoption a 综合采用
    was recorded on revokes the merged drafts' adoptions with it."""
    adoption = await ctx.repo.reviews.active_adoption(draft.id, outlet)
    if adoption is None:
        raise Refusal("adopt_revoke_none.txt.j2", draft=draft, outlet=outlet)
    for joined in await ctx.repo.reviews.joined_to(adoption):
        await _revoke(ctx, joined, await ctx.repo.drafts.get_locked(joined.draft_id))
    await _revoke(ctx, adoption, draft)


async def _revoke(ctx: Context, adoption: Adoption, draft: Draft) -> None:
    outlet = adoption.outlet
    adoption.revoked_at, adoption.revoked_by = ctx.now, ctx.member.id
    await ctx.repo.reviews.void_points("adoption", adoption.id)
    if not await ctx.repo.reviews.adoptions(
        draft.id
    ):  # no adoption left: the first-adoption bonuses go too
        for entry in await ctx.repo.reviews.points_entries(draft.id):
            if entry.kind in ("topic_bonus", "urgent_bonus"):
                entry.void = True
        draft.status = DraftStatus.submitted
    await ctx.repo.drafts.record(draft, "adopt_revoked", ctx.member, ctx.now, outlet)


async def forward(ctx: Context, draft: Draft, level: str) -> float:
    """Record forwarding to the province or the State Council office; returns its points."""
    if level not in ("province", "national"):
        raise ValueError(f"forwarding goes to the province or the State Council, not {level!r}")
    _reviewable(draft)
    if await ctx.repo.reviews.forward(draft.id, level) is not None:
        raise Refusal("forward_duplicate.txt.j2", draft=draft, level=level)
    row = Forward(
        draft_id=draft.id, unit_id=draft.unit_id, level=level, at=ctx.now, by=ctx.member.id
    )
    await ctx.repo.reviews.add(row)
    rules = ctx.app.rules
    points = rules.forwarded[level]
    ctx.repo.reviews.add_points(
        draft.unit_id, draft.id, "forwarded", row.id, points, rules.version, ctx.now
    )
    await ctx.repo.drafts.record(draft, "forward", ctx.member, ctx.now, level)
    return points


async def instruct(
    ctx: Context, draft: Draft, level: str, main: bool = False, note: str | None = None
) -> Recorded:
    """Record a leader's instruction (批示) on a draft; the first of each level earns points;
    the unit's officers are told."""
    _reviewable(draft)
    first = level not in {i.level for i in await ctx.repo.reviews.instructions(draft.id)}
    instruction = Instruction(
        draft_id=draft.id,
        unit_id=draft.unit_id,
        level=level,
        main=main,
        note=note,
        at=ctx.now,
        by=ctx.member.id,
    )
    await ctx.repo.reviews.add(instruction)
    rules = ctx.app.rules
    points = instruction_points(rules, level, main, first)
    ctx.repo.reviews.add_points(
        draft.unit_id, draft.id, "instruction", instruction.id, points, rules.version, ctx.now
    )
    await ctx.repo.drafts.record(draft, "instruction", ctx.member, ctx.now, note)
    unit = await ctx.repo.units.get(draft.unit_id)
    context = dict(draft=draft, unit=unit.name, instruction=instruction, points=points, first=first)
    one_liner = ctx.render("instruction_one_liner.txt.j2", **context)
    await _notify_unit(ctx, draft, one_liner, ctx.render("instruction_detail.txt.j2", **context))
    return Recorded(instruction, points, one_liner)


async def record_late(ctx: Context, draft: Draft, note: str | None = None) -> float:
    """Record late emergency reporting: `[penalty] urgent_late`, and the on-time bonus
    voided; the submitter is told. Only an urgent (#紧急) draft can be late. Returns the
    penalty."""
    if not draft.urgent:
        raise Refusal("late_not_urgent.txt.j2", draft=draft)
    entries = await ctx.repo.reviews.points_entries(draft.id)
    if any(e.kind == "urgent_late" for e in entries):
        raise Refusal("late_duplicate.txt.j2", draft=draft)
    rules = ctx.app.rules
    for entry in entries:
        if entry.kind == "urgent_bonus":
            entry.void = True  # late is not on time
    ctx.repo.reviews.add_points(
        draft.unit_id, draft.id, "urgent_late", None, rules.urgent_late, rules.version, ctx.now
    )
    await ctx.repo.drafts.record(draft, "late", ctx.member, ctx.now, note)
    submitter = await ctx.repo.members.get(draft.submitter_id)
    ctx.tell(
        submitter.im_id,
        ctx.render("late_to_submitter.txt.j2", draft=draft, points=rules.urgent_late, note=note),
    )
    return rules.urgent_late


# ------------------------------------------------------------------ chat commands


def _confirm_privately(ctx: Context, recorded: Recorded) -> None:
    """From private chat the coordinator gets the one-liner the group got."""
    if not ctx.in_group:
        ctx.reply_text(recorded.notice)


@router.command("退回", aliases=("return",), roles=COORDINATORS)
async def return_command(ctx: Context, cmd: Command) -> None:
    draft = await draft_arg(ctx, cmd)
    submitter = await return_draft(ctx, draft, " ".join(cmd.words[1:]) or cmd.body.strip())
    ctx.reply("returned.txt.j2", draft=draft, name=submitter.name)


@router.command("不采用", aliases=("reject",), roles=COORDINATORS)
async def reject_command(ctx: Context, cmd: Command) -> None:
    draft = await draft_arg(ctx, cmd)
    await reject_draft(ctx, draft, " ".join(cmd.words[1:]) or None)
    ctx.reply("rejected.txt.j2", draft=draft)


@router.command("采用", aliases=("adopt",), roles=COORDINATORS)
async def adopt_command(ctx: Context, cmd: Command) -> None:
    if len(cmd.words) < 2:
        raise usage(ctx, "采用")
    draft = await draft_arg(ctx, cmd)
    rules = ctx.app.rules
    outlet = rules.outlet(normalize(cmd.words[1]))
    if outlet is None:
        raise Refusal("outlet_unknown.txt.j2", word=cmd.words[1], outlets=rules.outlets)
    form, issue, revoke, joined = "full", None, False, []
    words = cmd.words[2:]
    for i, word in enumerate(words):
        if word in JOINT_WORDS:  # the rest names the drafts merged into this one
            joined = await drafts_named(ctx, split_names(" ".join(words[i + 1 :])), "采用")
            if not joined:
                raise usage(ctx, "采用")
            break
        if word in FORM_WORDS:
            form = FORM_WORDS[word]
        elif word in REVOKE_WORDS:
            revoke = True
        elif (m := _ISSUE.match(normalize(word))) is not None:
            issue = m.group(1)
        else:
            raise Refusal("adopt_bad_word.txt.j2", word=word)
    if revoke:
        await revoke_adoption(ctx, draft, outlet.name)
        ctx.reply("adopt_revoked.txt.j2", draft=draft, outlet=outlet.name)
        return
    _confirm_privately(ctx, await adopt(ctx, draft, outlet, form, issue, joined))


@router.command("上报", aliases=("forward",), roles=COORDINATORS)
async def forward_command(ctx: Context, cmd: Command) -> None:
    level = LEVEL_WORDS.get(cmd.words[1].removesuffix("办")) if len(cmd.words) >= 2 else None
    if level not in (
        "province",
        "national",
    ):  # forwarding goes to the province or the State Council
        raise usage(ctx, "上报")
    draft = await draft_arg(ctx, cmd)
    points = await forward(ctx, draft, level)
    ctx.reply("forwarded.txt.j2", draft=draft, level=level, points=points)


@router.command("批示", aliases=("instruction",), roles=COORDINATORS)
async def instruct_command(ctx: Context, cmd: Command) -> None:
    if len(cmd.words) < 2:
        raise usage(ctx, "批示")
    draft = await draft_arg(ctx, cmd)
    level = LEVEL_WORDS.get(cmd.words[1].removesuffix("领导").removesuffix("级"))
    if level is None:
        raise Refusal("instruction_bad_level.txt.j2", word=cmd.words[1])
    rest = cmd.words[2:]
    main = bool(rest) and rest[0] == "主要"
    note = " ".join(rest[1:] if main else rest) or None
    _confirm_privately(ctx, await instruct(ctx, draft, level, main, note))


@router.command("迟报", aliases=("late",), roles=COORDINATORS)
async def late_command(ctx: Context, cmd: Command) -> None:
    draft = await draft_arg(ctx, cmd)
    points = await record_late(ctx, draft, " ".join(cmd.words[1:]) or None)
    ctx.reply("late_recorded.txt.j2", draft=draft, points=points)


# ------------------------------------------------------------------ console: 收稿

PAGE_SIZE = 30  # drafts listed per page
STATES = (*DraftStatus, "all")
PERIODS = ("week", "month", "quarter", "year")
_TOPIC_REF = re.compile(r"^Y[0-9]{1,9}$")


@router.page("drafts", roles=OFFICERS | COORDINATORS)
async def drafts_page(view: View) -> Page:
    """Drafts newest first, filtered (awaiting review by default); one draft in full with
    its history and, for coordinators, one form per review action. Officers see their own
    unit's drafts, read-only."""
    q, repo = view.query, view.repo
    officer = view.role == Role.officer
    filters = {
        "unit": view.member.unit_id if officer else q.number("unit"),
        "state": q.choice("state", STATES, "all" if officer else DraftStatus.submitted),
        "category": q.choice("category", ("", *CATEGORIES), ""),
        "topic": q.get("topic"),
        "period": q.choice("period", ("", *PERIODS), ""),
    }
    if filters["topic"] and not _TOPIC_REF.match(filters["topic"]):
        raise BadInput("topic")
    offset = q.number("offset", 0)
    period = st.period_containing(filters["period"], view.now) if filters["period"] else None
    rows, total = await repo.drafts.listing(
        unit_id=filters["unit"],
        category=filters["category"] or None,
        topic_ref=filters["topic"] or None,
        status=None if filters["state"] == "all" else filters["state"],
        since=period.start if period else None,
        limit=PAGE_SIZE,
        offset=offset,
    )
    return Page(
        "console/drafts.html.j2",
        {
            "rows": rows, "total": total, "offset": offset, "size": PAGE_SIZE,
            "filters": filters, "officer": officer,
            "units": [] if officer else await repo.units.all_active(),
            "topics": [] if officer else await repo.topics.open_topics(),
            "states": STATES, "categories": CATEGORIES, "periods": PERIODS,
            "detail": await _draft_detail(view, q.get("draft")) if q.get("draft") else None,
        },
    )  # fmt: skip


async def _draft_detail(view: View, number_text: str) -> dict:
    number = parse_draft_number(number_text)
    if number is None:
        raise BadInput("draft")
    repo = view.repo
    draft = await repo.drafts.get(number)
    if draft is None:
        raise Refusal("draft_not_found.txt.j2", number=f"G{number}")
    require_own_unit(view, draft)
    entries = await repo.reviews.points_entries(draft.id)
    return {
        "draft": draft,
        "unit": await repo.units.get(draft.unit_id),
        "submitter": await repo.members.get(draft.submitter_id),
        "history": await repo.drafts.history(draft.id),
        "adoptions": await repo.reviews.adoptions(draft.id),
        "instructions": await repo.reviews.instructions(draft.id),
        "forwards": await repo.reviews.forwards(draft.id),
        "points": sum(e.points for e in entries),
        "outlets": view.app.rules.outlets,
        "levels": LEVELS,
    }


@router.action("return", roles=COORDINATORS)
async def return_action(ctx: Context, form: Form) -> str:
    draft, submitter = await on_draft_as_seen(
        ctx, form, lambda d: return_draft(ctx, d, form.get("reason"))
    )
    return ctx.render("returned.txt.j2", draft=draft, name=submitter.name)


@router.action("reject", roles=COORDINATORS)
async def reject_action(ctx: Context, form: Form) -> str:
    draft, _ = await on_draft_as_seen(
        ctx, form, lambda d: reject_draft(ctx, d, form.get("reason") or None)
    )
    return ctx.render("rejected.txt.j2", draft=draft)


@router.action("adopt", roles=COORDINATORS)
async def adopt_action(ctx: Context, form: Form) -> str:
    """`outlet` is "刊物名|form" from the rule file's outlets; `issue` the 期 number;
    `joined` the drafts merged into this one (综合采用), as /采用 … 合并 G15 G18 names them."""
    name, _, form_code = form.required("outlet").rpartition("|")
    outlet = ctx.app.rules.outlet_named(name)
    if outlet is None or form_code not in FORMS:
        raise BadInput("outlet")
    issue = form.number("issue")
    joined = await drafts_named(ctx, split_names(form.get("joined")), "采用")
    _, recorded = await on_draft_as_seen(
        ctx,
        form,
        lambda d: adopt(ctx, d, outlet, form_code, str(issue) if issue else None, joined),
    )
    return recorded.notice


@router.action("revoke", roles=COORDINATORS)
async def revoke_action(ctx: Context, form: Form) -> str:
    outlet = form.required("outlet")
    draft, _ = await on_draft_as_seen(ctx, form, lambda d: revoke_adoption(ctx, d, outlet))
    return ctx.render("adopt_revoked.txt.j2", draft=draft, outlet=outlet)


@router.action("instruct", roles=COORDINATORS)
async def instruct_action(ctx: Context, form: Form) -> str:
    level = form.choice("level", LEVELS, "")
    main, note = form.get("main") == "1", form.get("note") or None
    _, recorded = await on_draft_as_seen(ctx, form, lambda d: instruct(ctx, d, level, main, note))
    return recorded.notice


@router.action("forward", roles=COORDINATORS)
async def forward_action(ctx: Context, form: Form) -> str:
    level = form.choice("level", ("province", "national"), "")
    draft, points = await on_draft_as_seen(ctx, form, lambda d: forward(ctx, d, level))
    return ctx.render("forwarded.txt.j2", draft=draft, level=level, points=points)


@router.action("late", roles=COORDINATORS)
async def late_action(ctx: Context, form: Form) -> str:
    draft, points = await on_draft_as_seen(
        ctx, form, lambda d: record_late(ctx, d, form.get("note") or None)
    )
    return ctx.render("late_recorded.txt.j2", draft=draft, points=points)
