"""Units and officers: /登记 /绑定 /同意 /拒绝 /注销 /单位 /添加单位 /设类别 /停用单位."""

from __future__ import annotations

from collections.abc import Iterable

from bot.context import Context, Refusal
from bot.pages import BadInput, Form, Page, View
from bot.router import COORDINATORS, EVERYONE, Command, Router, normalize
from storage.models import BindRequest, Member, Role, Unit, UnitKind

from .common import person_arg, split_names, unit_arg, unit_field, usage

router = Router("registration")

KIND_WORDS = {
    "乡镇": UnitKind.township,
    "部门": UnitKind.department,
    "直报点": UnitKind.direct_point,
    "其他": UnitKind.other,
}


def guess_kind(name: str) -> UnitKind:
    """The kind a unit's name implies when the coordinator gives none."""
    if name.endswith(("镇", "乡", "街道", "街道办")):
        return UnitKind.township
    if name.endswith(("局", "委", "办", "委员会", "中心", "院", "所", "队", "公司")):
        return UnitKind.department
    return UnitKind.other


# ------------------------------------------------------------------ operations


async def register_officer(ctx: Context, im_id: int, unit: Unit, name: str | None) -> str:
    """Register the person `im_id` as `unit`'s officer (moving units keeps the history);
    `name` as their client shows it, if known. A pending binding request of theirs is
    approved. They are told in the group the command came from, else privately; the
    notice is returned, for the door to show the coordinator."""
    if not unit.active:
        raise Refusal("unit_unknown.txt.j2", name=unit.name, suggestions=[])
    member = await ctx.repo.members.by_im(im_id)
    if member is not None and member.role == Role.coordinator:
        raise Refusal("register_coordinator.txt.j2", name=member.name)
    if member is not None and member.role == Role.officer and member.unit_id == unit.id:
        raise Refusal("register_already.txt.j2", name=member.name, unit=unit.name)
    member = member or await ctx.repo.members.ensure(im_id, name or str(im_id), ctx.now)
    if member.name == str(im_id) and name:
        await ctx.repo.members.rename(member, name, ctx.now)
    old_unit = await ctx.repo.units.get(member.unit_id) if member.unit_id else None
    await ctx.repo.members.make_officer(member, unit, ctx.member, ctx.now)
    pending = await ctx.repo.binds.pending_for(im_id)
    if pending is not None:
        ctx.repo.binds.decide(pending, "approved", ctx.member, None, ctx.now)
    text = ctx.render(
        "registered.txt.j2",
        name=member.name,
        unit=unit.name,
        old_unit=old_unit.name if old_unit else None,
    )
    if ctx.in_group:
        ctx.post(ctx.chat_group, text, mention=[im_id])
    else:
        ctx.tell(im_id, text)
    return text


async def request_binding(ctx: Context, unit: Unit, im_id: int, name: str) -> BindRequest:
    """The person `im_id` (the actor, maybe not yet a member) asks to become `unit`'s
    officer; the coordinators are told privately."""
    if ctx.role == Role.coordinator:
        raise Refusal("bind_coordinator.txt.j2")
    if ctx.role == Role.officer and ctx.member.unit_id == unit.id:
        raise Refusal("register_already.txt.j2", name=ctx.member.name, unit=unit.name)
    pending = await ctx.repo.binds.pending_for(im_id)
    if pending is not None:
        raise Refusal("bind_pending.txt.j2", request_id=pending.id)
    req = await ctx.repo.binds.create(im_id, name, unit, ctx.chat_group, ctx.now)
    await ctx.tell_coordinators(
        "bind_to_coordinators.txt.j2", request=req, unit=unit.name, im_id=im_id
    )
    return req


async def decide_binding(
    ctx: Context, request: BindRequest, approve: bool, reason: str | None = None
) -> None:
    """Approve (register the applicant) or reject a pending binding request; the
    applicant is told where they asked."""
    if request.status != "pending":
        raise Refusal("bind_decided_already.txt.j2", request_id=request.id, status=request.status)
    unit = await ctx.repo.units.get(request.unit_id)
    if approve:
        if unit is None or not unit.active:
            raise Refusal(
                "unit_unknown.txt.j2",
                name=unit.name if unit else str(request.unit_id),
                suggestions=[],
            )
        member = await ctx.repo.members.ensure(request.im_id, request.name, ctx.now)
        if member.role == Role.coordinator:
            raise Refusal("register_coordinator.txt.j2", name=member.name)
        await ctx.repo.members.make_officer(member, unit, ctx.member, ctx.now)
        reason = None
    ctx.repo.binds.decide(
        request, "approved" if approve else "rejected", ctx.member, reason, ctx.now
    )
    text = ctx.render("bind_result.txt.j2", unit=unit.name, approved=approve, reason=reason)
    if request.group_id is not None and request.group_id in ctx.app.groups:
        ctx.post(request.group_id, text, mention=[request.im_id])
    else:
        ctx.tell(request.im_id, text)


async def retire_officer(ctx: Context, member: Member) -> Unit:
    """End `member`'s officer registration; the officer history (备案) is kept."""
    if member.role != Role.officer:
        raise Refusal("retire_not_officer.txt.j2", im_id=member.im_id, name=member.name)
    unit = await ctx.repo.units.get(member.unit_id)
    await ctx.repo.members.retire(member, ctx.member, ctx.now)
    return unit


async def add_unit(
    ctx: Context,
    name: str,
    kind: UnitKind | None,
    aliases: Iterable[str] = (),
    klass: str | None = None,
) -> tuple[Unit, list[str]]:
    """Add a unit (its kind guessed from the name when None) of class `klass` (one of
    `[units] classes`); returns it and its aliases. It is judged from now on."""
    aliases = list(dict.fromkeys(a for a in aliases if a != name))
    taken = await ctx.repo.units.name_taken([name, *aliases])
    if taken is not None:
        raise Refusal("unit_exists.txt.j2", name=taken)
    if klass is not None:
        check_class(ctx, klass)
    unit = await ctx.repo.units.create(name, kind or guess_kind(name), aliases, ctx.now, klass)
    return unit, aliases


def check_class(ctx: Context, klass: str) -> None:
    classes = ctx.app.config.units.classes
    if klass not in classes:
        raise Refusal("class_unknown.txt.j2", word=klass, classes=classes)


async def set_unit_class(ctx: Context, unit: Unit, klass: str) -> None:
    """Put a unit in a class of `[units] classes` (ranked with its class when by_class)."""
    check_class(ctx, klass)
    unit.klass = klass


async def retire_unit(ctx: Context, unit: Unit) -> list[Member]:
    """Retire a unit (停用): from now it is not reminded, not a topic's target and not in
    the rankings of later periods; its drafts, points and reports are kept. Its officers'
    registrations end (history kept); returns them."""
    if not unit.active:
        raise Refusal("unit_retired.txt.j2", unit=unit)
    officers = await ctx.repo.members.officers_of(unit.id)
    for member in officers:
        await ctx.repo.members.retire(member, ctx.member, ctx.now)
    ctx.repo.units.retire(unit, ctx.now)
    return officers


# ------------------------------------------------------------------ chat commands


@router.command("登记", aliases=("register",), roles=COORDINATORS)
async def register_command(ctx: Context, cmd: Command) -> None:
    im_id, rest = await person_arg(ctx, cmd)
    if not rest:
        raise usage(ctx, "登记")
    unit = await unit_arg(ctx, " ".join(rest))
    text = await register_officer(ctx, im_id, unit, cmd.mention_names.get(im_id))
    if not ctx.in_group:
        ctx.reply_text(text)


@router.command("绑定", aliases=("bind",), roles=EVERYONE)
async def bind_command(ctx: Context, cmd: Command) -> None:
    if not cmd.words:
        raise usage(ctx, "绑定")
    unit = await unit_arg(ctx, cmd.rest)
    user_id = ctx.event.user_id
    req = await request_binding(ctx, unit, user_id, ctx.event.sender_name or str(user_id))
    ctx.reply("bind_submitted.txt.j2", request_id=req.id, unit=unit.name)


async def _request_arg(ctx: Context, cmd: Command) -> BindRequest:
    number = normalize(cmd.words[0]).lstrip("#") if cmd.words else ""
    if not number.isdigit():
        raise usage(ctx, cmd.spec.name)
    req = await ctx.repo.binds.get(int(number))
    if req is None:
        raise Refusal("bind_not_found.txt.j2", request_id=number)
    return req


@router.command("同意", aliases=("approve",), roles=COORDINATORS)
async def approve_command(ctx: Context, cmd: Command) -> None:
    await _decide_command(ctx, cmd, True)


@router.command("拒绝", aliases=("deny",), roles=COORDINATORS)
async def deny_command(ctx: Context, cmd: Command) -> None:
    await _decide_command(ctx, cmd, False)


async def _decide_command(ctx: Context, cmd: Command, approve: bool) -> None:
    req = await _request_arg(ctx, cmd)
    unit = await ctx.repo.units.get(req.unit_id)
    # The confirmation comes before the applicant's notice, which may go to the same group
    # (a refusal of the decision rolls both back).
    ctx.reply("bind_decided.txt.j2", request=req, unit=unit.name, approved=approve)
    reason = None if approve else " ".join(cmd.words[1:]) or None
    await decide_binding(ctx, req, approve, reason)


@router.command("注销", aliases=("retire",), roles=COORDINATORS)
async def retire_command(ctx: Context, cmd: Command) -> None:
    im_id, _ = await person_arg(ctx, cmd)
    member = await ctx.repo.members.by_im(im_id)
    if member is None:
        raise Refusal("retire_not_officer.txt.j2", im_id=im_id, name=None)
    unit = await retire_officer(ctx, member)
    ctx.reply("retired.txt.j2", name=member.name, unit=unit.name)


@router.command("单位", aliases=("units",), roles=EVERYONE)
async def list_units(ctx: Context, cmd: Command) -> None:
    units = await ctx.repo.units.listing()
    ctx.reply("unit_list.txt.j2", units=units, limit=30 if ctx.in_group else None)


@router.command("添加单位", aliases=("addunit",), roles=COORDINATORS)
async def add_unit_command(ctx: Context, cmd: Command) -> None:
    words = split_names(" ".join(cmd.words))
    if not words:
        raise usage(ctx, "添加单位")
    name, rest = words[0], words[1:]
    kind = KIND_WORDS.get(rest[0]) if rest else None
    if kind is not None:
        rest = rest[1:]
    klass = rest[0] if rest and rest[0] in ctx.app.config.units.classes else None
    if klass is not None:
        rest = rest[1:]
    unit, aliases = await add_unit(ctx, name, kind, rest, klass)
    ctx.reply("unit_added.txt.j2", unit=unit, aliases=aliases)


@router.command("设类别", aliases=("setclass",), roles=COORDINATORS)
async def set_class_command(ctx: Context, cmd: Command) -> None:
    if len(cmd.words) != 2:
        raise usage(ctx, "设类别")
    unit = await unit_arg(ctx, cmd.words[0])
    await set_unit_class(ctx, unit, cmd.words[1])
    ctx.reply("class_set.txt.j2", unit=unit)


@router.command("停用单位", aliases=("retireunit",), roles=COORDINATORS)
async def retire_unit_command(ctx: Context, cmd: Command) -> None:
    if not cmd.words:
        raise usage(ctx, "停用单位")
    unit = await ctx.repo.units.find_any(cmd.rest) or await unit_arg(ctx, cmd.rest)
    officers = await retire_unit(ctx, unit)
    ctx.reply("unit_retired_now.txt.j2", unit=unit, officers=officers)


# ------------------------------------------------------------------ console: 单位与信息员

TERMS_SHOWN = 50  # officer terms (备案) listed


@router.page("units", roles=COORDINATORS)
async def units_page(view: View) -> Page:
    """Units with their officers, pending binding requests and the officer history (备案)."""
    repo = view.repo
    requests = await repo.binds.pending()
    return Page(
        "console/units.html.j2",
        {
            "units": await repo.units.listing(),
            "requests": [(r, await repo.units.get(r.unit_id)) for r in requests],
            "terms": await repo.members.term_history(TERMS_SHOWN),
            "kinds": KIND_WORDS,
            "classes": view.app.config.units.classes,
        },
    )


@router.action("add_unit", roles=COORDINATORS)
async def add_unit_action(ctx: Context, form: Form) -> str:
    """`kind` is a word of /添加单位 (乡镇 …), or empty: guessed from the name; `klass` one
    of `[units] classes`, or empty."""
    kind_word = form.choice("kind", ("", *KIND_WORDS), "")
    unit, aliases = await add_unit(
        ctx,
        form.required("name"),
        KIND_WORDS.get(kind_word),
        split_names(form.get("aliases")),
        form.get("klass") or None,
    )
    return ctx.render("unit_added.txt.j2", unit=unit, aliases=aliases)


@router.action("set_class", roles=COORDINATORS)
async def set_class_action(ctx: Context, form: Form) -> str:
    unit = await unit_field(ctx, form)
    await set_unit_class(ctx, unit, form.required("klass"))
    return ctx.render("class_set.txt.j2", unit=unit)


@router.action("retire_unit", roles=COORDINATORS)
async def retire_unit_action(ctx: Context, form: Form) -> str:
    unit = await unit_field(ctx, form)
    officers = await retire_unit(ctx, unit)
    return ctx.render("unit_retired_now.txt.j2", unit=unit, officers=officers)


@router.action("register", roles=COORDINATORS)
async def register_action(ctx: Context, form: Form) -> str:
    """Register the QQ number `im_id` (with `name`, if given) as `unit`'s officer."""
    im_id = form.number("im_id")
    if not im_id:
        raise BadInput("im_id")
    return await register_officer(ctx, im_id, await unit_field(ctx, form), form.get("name") or None)


@router.action("retire", roles=COORDINATORS)
async def retire_action(ctx: Context, form: Form) -> str:
    member = await ctx.repo.members.get(form.number("member") or 0)
    if member is None:
        raise BadInput("member")
    unit = await retire_officer(ctx, member)
    return ctx.render("retired.txt.j2", name=member.name, unit=unit.name)


@router.action("decide_binding", roles=COORDINATORS)
async def decide_action(ctx: Context, form: Form) -> str:
    request = await ctx.repo.binds.get(form.number("request") or 0)
    if request is None:
        raise BadInput("request")
    approve = form.choice("decision", ("approve", "reject"), "") == "approve"
    unit = await ctx.repo.units.get(request.unit_id)
    await decide_binding(ctx, request, approve, None if approve else form.get("reason") or None)
    return ctx.render("bind_decided.txt.j2", request=request, unit=unit.name, approved=approve)
