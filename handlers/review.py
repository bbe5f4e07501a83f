"""Review and bookkeeping: /退回 /不采用 /采用 /上报 /批示 /迟报.

Every fact is a row with who and when; every points-bearing fact writes a
points row with the rule version (also when the rule gives 0, so a later
`rescore` under new rules has something to recompute).
"""

from __future__ import annotations

import re

from bot.context import Context, Refusal
from bot.router import COORDINATORS, Command, Router, normalize
from bot.rules import FORM_WORDS, LEVEL_WORDS
from storage.models import Adoption, Draft, DraftStatus, Forward, Instruction

from .common import draft_arg, usage
from .scoring import adoption_points, instruction_points

router = Router("review")

_ISSUE = re.compile(r"^第?(\d{1,5})期$")
REVOKE_WORDS = ("撤销", "撤消", "取消")


def _reviewable(draft: Draft) -> None:
    if draft.status in (DraftStatus.withdrawn, DraftStatus.awaiting_file):
        raise Refusal("review_not_possible.txt.j2", draft=draft)


async def _notify_unit(ctx: Context, draft: Draft, one_liner: str, detail: str) -> None:
    """The unit's officers: a group one-liner (in the chat used, or every group) and a private detail."""
    officers = await ctx.repo.members.officers_of(draft.unit_id)
    groups = [ctx.event.group_id] if ctx.in_group else sorted(ctx.app.groups)
    for group_id in groups:
        ctx.post(group_id, one_liner, mention=[o.im_id for o in officers], mergeable=True)
    for officer in officers:
        ctx.tell(officer.im_id, detail)
    if not ctx.in_group:
        ctx.tell(ctx.event.user_id, one_liner)


@router.command("退回", aliases=("return",), roles=COORDINATORS)
async def return_draft(ctx: Context, cmd: Command) -> None:
    draft = await draft_arg(ctx, cmd)
    reason = " ".join(cmd.words[1:]) or cmd.body.strip()
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
    ctx.reply("returned.txt.j2", draft=draft, name=submitter.name)


@router.command("不采用", aliases=("reject",), roles=COORDINATORS)
async def reject_draft(ctx: Context, cmd: Command) -> None:
    draft = await draft_arg(ctx, cmd)
    reason = " ".join(cmd.words[1:]) or None
    if draft.status not in (DraftStatus.submitted, DraftStatus.returned):
        raise Refusal("review_not_possible.txt.j2", draft=draft)
    draft.status = DraftStatus.rejected
    await ctx.repo.drafts.record(draft, "reject", ctx.member, ctx.now, reason)
    submitter = await ctx.repo.members.get(draft.submitter_id)
    ctx.tell(
        submitter.im_id, ctx.render("rejected_to_submitter.txt.j2", draft=draft, reason=reason)
    )
    ctx.reply("rejected.txt.j2", draft=draft)


@router.command("采用", aliases=("adopt",), roles=COORDINATORS)
async def adopt_draft(ctx: Context, cmd: Command) -> None:
    if len(cmd.words) < 2:
        raise usage(ctx, "采用")
    draft = await draft_arg(ctx, cmd)
    rules = ctx.app.rules
    outlet = rules.outlet(normalize(cmd.words[1]))
    if outlet is None:
        raise Refusal("outlet_unknown.txt.j2", word=cmd.words[1], outlets=rules.outlets)
    form, issue, revoke = "full", None, False
    for word in cmd.words[2:]:
        if word in FORM_WORDS:
            form = FORM_WORDS[word]
        elif word in REVOKE_WORDS:
            revoke = True
        elif (m := _ISSUE.match(normalize(word))) is not None:
            issue = m.group(1)
        else:
            raise Refusal("adopt_bad_word.txt.j2", word=word)
    existing = await ctx.repo.reviews.active_adoption(draft.id, outlet.name)
    if revoke:
        await _revoke_adoption(ctx, draft, outlet.name, existing)
        return
    _reviewable(draft)
    if existing is not None:
        raise Refusal("adopt_duplicate.txt.j2", draft=draft, adoption=existing)
    if form not in outlet.points:
        raise Refusal("adopt_bad_form.txt.j2", outlet=outlet, form=form)
    first = not await ctx.repo.reviews.adoptions(draft.id)
    adoption = Adoption(
        draft_id=draft.id, unit_id=draft.unit_id, outlet=outlet.name, level=outlet.level, form=form,
        issue=issue, at=ctx.now, by=ctx.member.id,
    )  # fmt: skip
    await ctx.repo.reviews.add(adoption)
    points = adoption_points(rules, outlet, form, draft)
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
        draft=draft, unit=unit.name, adoption=adoption, points=points, bonuses=bonuses, total=total
    )
    await _notify_unit(
        ctx,
        draft,
        ctx.render("adopted_one_liner.txt.j2", **context),
        ctx.render("adopted_detail.txt.j2", **context),
    )


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


async def _revoke_adoption(
    ctx: Context, draft: Draft, outlet: str, adoption: Adoption | None
) -> None:
    if adoption is None:
        raise Refusal("adopt_revoke_none.txt.j2", draft=draft, outlet=outlet)
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
    ctx.reply("adopt_revoked.txt.j2", draft=draft, outlet=outlet)


@router.command("上报", aliases=("forward",), roles=COORDINATORS)
async def forward_draft(ctx: Context, cmd: Command) -> None:
    level = LEVEL_WORDS.get(cmd.words[1].removesuffix("办")) if len(cmd.words) >= 2 else None
    if level not in (
        "province",
        "national",
    ):  # forwarding goes to the province or the State Council
        raise usage(ctx, "上报")
    draft = await draft_arg(ctx, cmd)
    _reviewable(draft)
    if await ctx.repo.reviews.forward(draft.id, level) is not None:
        raise Refusal("forward_duplicate.txt.j2", draft=draft, level=level)
    forward = Forward(
        draft_id=draft.id, unit_id=draft.unit_id, level=level, at=ctx.now, by=ctx.member.id
    )
    await ctx.repo.reviews.add(forward)
    rules = ctx.app.rules
    points = rules.forwarded[level]
    ctx.repo.reviews.add_points(
        draft.unit_id, draft.id, "forwarded", forward.id, points, rules.version, ctx.now
    )
    await ctx.repo.drafts.record(draft, "forward", ctx.member, ctx.now, level)
    ctx.reply("forwarded.txt.j2", draft=draft, level=level, points=points)


@router.command("批示", aliases=("instruction",), roles=COORDINATORS)
async def record_instruction(ctx: Context, cmd: Command) -> None:
    if len(cmd.words) < 2:
        raise usage(ctx, "批示")
    draft = await draft_arg(ctx, cmd)
    _reviewable(draft)
    level = LEVEL_WORDS.get(cmd.words[1].removesuffix("领导").removesuffix("级"))
    if level is None:
        raise Refusal("instruction_bad_level.txt.j2", word=cmd.words[1])
    rest = cmd.words[2:]
    main = bool(rest) and rest[0] == "主要"
    note = " ".join(rest[1:] if main else rest) or None
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
    await _notify_unit(
        ctx,
        draft,
        ctx.render("instruction_one_liner.txt.j2", **context),
        ctx.render("instruction_detail.txt.j2", **context),
    )


@router.command("迟报", aliases=("late",), roles=COORDINATORS)
async def record_late(ctx: Context, cmd: Command) -> None:
    draft = await draft_arg(ctx, cmd)
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
    note = " ".join(cmd.words[1:]) or None
    await ctx.repo.drafts.record(draft, "late", ctx.member, ctx.now, note)
    submitter = await ctx.repo.members.get(draft.submitter_id)
    ctx.tell(
        submitter.im_id,
        ctx.render("late_to_submitter.txt.j2", draft=draft, points=rules.urgent_late, note=note),
    )
    ctx.reply("late_recorded.txt.j2", draft=draft, points=rules.urgent_late)
