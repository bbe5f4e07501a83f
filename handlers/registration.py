"""Units and officers: /登记 /绑定 /同意 /拒绝 /注销 /单位 /添加单位."""

from __future__ import annotations

from bot.context import Context, Refusal
from bot.router import COORDINATORS, EVERYONE, Command, Router, normalize
from storage.models import Role, UnitKind

from .common import person_arg, unit_arg, usage

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


@router.command("登记", aliases=("register",), roles=COORDINATORS)
async def register_officer(ctx: Context, cmd: Command) -> None:
    im_id, rest = await person_arg(ctx, cmd)
    if not rest:
        raise usage(ctx, "登记")
    unit = await unit_arg(ctx, " ".join(rest))
    member = await ctx.repo.members.by_im(im_id)
    if member is not None and member.role == Role.coordinator:
        raise Refusal("register_coordinator.txt.j2", name=member.name)
    if member is not None and member.role == Role.officer and member.unit_id == unit.id:
        raise Refusal("register_already.txt.j2", name=member.name, unit=unit.name)
    member = member or await ctx.repo.members.ensure(
        im_id, cmd.mention_names.get(im_id, str(im_id)), ctx.now
    )
    if member.name == str(im_id) and im_id in cmd.mention_names:
        await ctx.repo.members.rename(member, cmd.mention_names[im_id], ctx.now)
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
        ctx.post(ctx.event.group_id, text, mention=[im_id])
    else:
        ctx.tell(ctx.event.user_id, text)
        ctx.tell(im_id, text)


@router.command("绑定", aliases=("bind",), roles=EVERYONE)
async def request_binding(ctx: Context, cmd: Command) -> None:
    if not cmd.words:
        raise usage(ctx, "绑定")
    unit = await unit_arg(ctx, cmd.rest)
    if ctx.role == Role.coordinator:
        raise Refusal("bind_coordinator.txt.j2")
    if ctx.role == Role.officer and ctx.member.unit_id == unit.id:
        raise Refusal("register_already.txt.j2", name=ctx.member.name, unit=unit.name)
    pending = await ctx.repo.binds.pending_for(ctx.event.user_id)
    if pending is not None:
        raise Refusal("bind_pending.txt.j2", request_id=pending.id)
    name = ctx.event.sender_name or str(ctx.event.user_id)
    req = await ctx.repo.binds.create(ctx.event.user_id, name, unit, ctx.event.group_id, ctx.now)
    ctx.reply("bind_submitted.txt.j2", request_id=req.id, unit=unit.name)
    await ctx.tell_coordinators(
        "bind_to_coordinators.txt.j2", request=req, unit=unit.name, im_id=ctx.event.user_id
    )


async def _pending_request(ctx: Context, cmd: Command):
    number = normalize(cmd.words[0]).lstrip("#") if cmd.words else ""
    if not number.isdigit():
        raise usage(ctx, cmd.spec.name)
    req = await ctx.repo.binds.get(int(number))
    if req is None:
        raise Refusal("bind_not_found.txt.j2", request_id=number)
    if req.status != "pending":
        raise Refusal("bind_decided_already.txt.j2", request_id=req.id, status=req.status)
    return req


@router.command("同意", aliases=("approve",), roles=COORDINATORS)
async def approve_binding(ctx: Context, cmd: Command) -> None:
    req = await _pending_request(ctx, cmd)
    unit = await ctx.repo.units.get(req.unit_id)
    if unit is None or not unit.active:
        raise Refusal(
            "unit_unknown.txt.j2", name=unit.name if unit else str(req.unit_id), suggestions=[]
        )
    member = await ctx.repo.members.ensure(req.im_id, req.name, ctx.now)
    if member.role == Role.coordinator:
        raise Refusal("register_coordinator.txt.j2", name=member.name)
    await ctx.repo.members.make_officer(member, unit, ctx.member, ctx.now)
    ctx.repo.binds.decide(req, "approved", ctx.member, None, ctx.now)
    ctx.reply("bind_decided.txt.j2", request=req, unit=unit.name, approved=True)
    _tell_applicant(
        ctx, req, ctx.render("bind_result.txt.j2", unit=unit.name, approved=True, reason=None)
    )


@router.command("拒绝", aliases=("deny",), roles=COORDINATORS)
async def deny_binding(ctx: Context, cmd: Command) -> None:
    req = await _pending_request(ctx, cmd)
    unit = await ctx.repo.units.get(req.unit_id)
    reason = " ".join(cmd.words[1:]) or None
    ctx.repo.binds.decide(req, "rejected", ctx.member, reason, ctx.now)
    ctx.reply("bind_decided.txt.j2", request=req, unit=unit.name, approved=False)
    _tell_applicant(
        ctx, req, ctx.render("bind_result.txt.j2", unit=unit.name, approved=False, reason=reason)
    )


def _tell_applicant(ctx: Context, req, text: str) -> None:
    if req.group_id is not None and req.group_id in ctx.app.groups:
        ctx.post(req.group_id, text, mention=[req.im_id])
    else:
        ctx.tell(req.im_id, text)


@router.command("注销", aliases=("retire",), roles=COORDINATORS)
async def retire_officer(ctx: Context, cmd: Command) -> None:
    im_id, _ = await person_arg(ctx, cmd)
    member = await ctx.repo.members.by_im(im_id)
    if member is None or member.role != Role.officer:
        raise Refusal(
            "retire_not_officer.txt.j2", im_id=im_id, name=member.name if member else None
        )
    unit = await ctx.repo.units.get(member.unit_id)
    await ctx.repo.members.retire(member, ctx.member, ctx.now)
    ctx.reply("retired.txt.j2", name=member.name, unit=unit.name)


@router.command("单位", aliases=("units",), roles=EVERYONE)
async def list_units(ctx: Context, cmd: Command) -> None:
    units = await ctx.repo.units.listing()
    ctx.reply("unit_list.txt.j2", units=units, limit=30 if ctx.in_group else None)


@router.command("添加单位", aliases=("addunit",), roles=COORDINATORS)
async def add_unit(ctx: Context, cmd: Command) -> None:
    words = [w for part in cmd.words for w in normalize(part).replace("、", ",").split(",") if w]
    if not words:
        raise usage(ctx, "添加单位")
    name, rest = words[0], words[1:]
    kind = KIND_WORDS.get(rest[0]) if rest else None
    if kind is not None:
        rest = rest[1:]
    aliases = list(dict.fromkeys(a for a in rest if a != name))
    taken = await ctx.repo.units.name_taken([name, *aliases])
    if taken is not None:
        raise Refusal("unit_exists.txt.j2", name=taken)
    unit = await ctx.repo.units.create(name, kind or guess_kind(name), aliases, ctx.now)
    ctx.reply("unit_added.txt.j2", unit=unit, aliases=aliases)
