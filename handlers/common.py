"""Lookups every workflow needs, each answering a clear refusal when it fails."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from bot.context import Context, Refusal
from bot.pages import BadInput, Form, View
from bot.router import Command, normalize
from storage import standings as st
from storage.models import Draft, Role, Unit

T = TypeVar("T")


@dataclass(frozen=True)
class PeriodWord:
    kind: str  # week / month / quarter / year
    back: int = 0  # 0: the period now running; 1: the one just closed


# The one table of period words (/排行, /通报, /导出, /设任务).
PERIOD_WORDS = {
    "周": PeriodWord("week"),
    "本周": PeriodWord("week"),
    "上周": PeriodWord("week", 1),
    "月": PeriodWord("month"),
    "本月": PeriodWord("month"),
    "月度": PeriodWord("month"),
    "上月": PeriodWord("month", 1),
    "季": PeriodWord("quarter"),
    "季度": PeriodWord("quarter"),
    "本季": PeriodWord("quarter"),
    "本季度": PeriodWord("quarter"),
    "上季": PeriodWord("quarter", 1),
    "上季度": PeriodWord("quarter", 1),
    "年": PeriodWord("year"),
    "年度": PeriodWord("year"),
    "全年": PeriodWord("year"),
    "本年": PeriodWord("year"),
    "今年": PeriodWord("year"),
    "去年": PeriodWord("year", 1),
    "上年": PeriodWord("year", 1),
    "上年度": PeriodWord("year", 1),
}


def split_names(text: str) -> list[str]:
    """Names separated by spaces, commas or 、 (full-width too)."""
    return [w for part in text.split() for w in normalize(part).replace("、", ",").split(",") if w]


def period_of(word: PeriodWord, now: datetime) -> st.Period:
    """The period a word names at `now`: the running one, or the one just closed."""
    period = st.period_containing(word.kind, now)
    return st.previous(period) if word.back else period


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
    """The draft named by the first argument (G12, g12 or 12), locked for this event (a
    command on a draft may change it)."""
    number = parse_draft_number(cmd.words[0]) if cmd.words else None
    if number is None:
        raise usage(ctx, cmd.spec.name)
    draft = await ctx.repo.drafts.get_locked(number)
    if draft is None:
        raise Refusal("draft_not_found.txt.j2", number=f"G{number}")
    return draft


async def drafts_named(ctx: Context, words: Iterable[str], command: str) -> list[Draft]:
    """The drafts named by `words` (G12 G15 …), each locked as `draft_arg` locks one."""
    drafts = []
    for word in words:
        number = parse_draft_number(word)
        if number is None:
            raise usage(ctx, command)
        draft = await ctx.repo.drafts.get_locked(number)
        if draft is None:
            raise Refusal("draft_not_found.txt.j2", number=f"G{number}")
        drafts.append(draft)
    return drafts


def require_own_unit(ctx: Context | View, draft: Draft) -> None:
    """Officers act only on their own unit's drafts; coordinators on any."""
    if ctx.role == Role.coordinator:
        return
    if draft.unit_id != ctx.member.unit_id:
        raise Refusal("draft_other_unit.txt.j2", number=draft.number)


async def unit_arg(ctx: Context, text: str) -> Unit:
    unit = await ctx.repo.units.find(text)
    if unit is None and (retired := await ctx.repo.units.find_any(text)) is not None:
        raise Refusal("unit_retired.txt.j2", unit=retired)
    if unit is None:
        raise Refusal(
            "unit_unknown.txt.j2", name=text, suggestions=await ctx.repo.units.suggest(text)
        )
    return unit


async def unit_field(ctx: Context, form: Form) -> Unit:
    """The unit a console form names by id (`unit`)."""
    unit_id = form.number("unit")
    unit = await ctx.repo.units.get(unit_id) if unit_id is not None else None
    if unit is None:
        raise BadInput("unit")
    return unit


async def person_arg(ctx: Context, cmd: Command) -> tuple[int, list[str]]:
    """The person a coordinator command is about: an @-mention or a numeric id.
    Returns the IM id and the remaining words."""
    if cmd.mentions:
        return cmd.mentions[0], cmd.words
    if cmd.words and cmd.words[0].isdigit():
        return int(cmd.words[0]), cmd.words[1:]
    raise usage(ctx, cmd.spec.name)


async def on_draft_as_seen(
    ctx: Context, form: Form, operation: Callable[[Draft], Awaitable[T]]
) -> tuple[Draft, T]:
    """A console action on the draft a form names (`draft`), as its page showed it (`seen`:
    the state then). The operation's own refusal comes first, being the most specific
    ("already adopted by 《…》 at 10:02"); an action it would allow on a draft whose state
    changed since the page was loaded is undone and refused with the current state."""
    number = parse_draft_number(form.required("draft"))
    if number is None:
        raise BadInput("draft")
    draft = await ctx.repo.drafts.get_locked(number)
    if draft is None:
        raise Refusal("draft_not_found.txt.j2", number=f"G{number}")
    current = draft.status
    result = await operation(draft)
    if form.required("seen") != current:
        raise Refusal("console_draft_changed.txt.j2", draft=draft, status=current)
    return draft, result
