"""Lookups every workflow needs, each answering a clear refusal when it fails."""

from __future__ import annotations

import re

from bot.context import Context, Refusal
from bot.router import Command, normalize
from storage.models import Draft, Role, Unit

PERIOD_WORDS = {
    "周": "week",
    "本周": "week",
    "月": "month",
    "本月": "month",
    "月度": "month",
    "季": "quarter",
    "季度": "quarter",
    "年": "year",
    "年度": "year",
    "全年": "year",
}

_DRAFT_NO = re.compile(r"^[Gg]?(\d{1,12})$")
_FULLWIDTH_ALNUM = str.maketrans(
    {chr(0xFF10 + i): str(i) for i in range(10)} | {"Ｇ": "G", "ｇ": "g"}
)


def usage(ctx: Context, command: str) -> Refusal:
    """A refusal that shows the command's usage line."""
    return Refusal(
        "usage.txt.j2", command=command, usage=ctx.app.renderer.command_help[command]["usage"]
    )


def parse_draft_number(text: str) -> int | None:
    m = _DRAFT_NO.match(normalize(text).translate(_FULLWIDTH_ALNUM).strip())
    return int(m.group(1)) if m else None


async def draft_arg(ctx: Context, cmd: Command) -> Draft:
    """The draft named by the first argument (G12, g12 or 12)."""
    number = parse_draft_number(cmd.words[0]) if cmd.words else None
    if number is None:
        raise usage(ctx, cmd.spec.name)
    draft = await ctx.repo.drafts.get(number)
    if draft is None:
        raise Refusal("draft_not_found.txt.j2", number=f"G{number}")
    return draft


def require_own_unit(ctx: Context, draft: Draft) -> None:
    """Officers act only on their own unit's drafts; coordinators on any."""
    if ctx.role == Role.coordinator:
        return
    if draft.unit_id != ctx.member.unit_id:
        raise Refusal("draft_other_unit.txt.j2", number=draft.number)


async def unit_arg(ctx: Context, text: str) -> Unit:
    unit = await ctx.repo.units.find(text)
    if unit is None:
        raise Refusal(
            "unit_unknown.txt.j2", name=text, suggestions=await ctx.repo.units.suggest(text)
        )
    return unit


async def person_arg(ctx: Context, cmd: Command) -> tuple[int, list[str]]:
    """The person a coordinator command is about: an @-mention or a numeric id.
    Returns the IM id and the remaining words."""
    if cmd.mentions:
        return cmd.mentions[0], cmd.words
    if cmd.words and cmd.words[0].isdigit():
        return int(cmd.words[0]), cmd.words[1:]
    raise usage(ctx, cmd.spec.name)
