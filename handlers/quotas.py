"""Quotas (目标任务), reminders to lagging units (催报) and exemptions (暂停催报).

A unit is judged only on its own working days: from the day it was added,
until it was retired, outside its exemptions. Its target for a period is
pro-rated by those days (`due`); it lags when its progress is below the target
pro-rated by those of them already elapsed, by more than the configured
tolerance. Exempt and retired units are never reminded. The
reminder schedule comes from `schedule.quota_reminders`; each run posts one
group message @-mentioning the officers of lagging units, sends each
coordinator a digest (with units to call after `escalate_after` lagging runs
and units that have no officer), and logs every unit reminded. A unit is
never reminded of the same quota twice in one day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from bot.context import Context, Refusal
from bot.pages import BadInput, Form, Page, View
from bot.router import COORDINATORS, OFFICERS, Command, Router, normalize
from bot.timeparse import DeadlineError, parse_deadline
from storage import standings as st
from storage.models import Exemption, Quota, Role, Unit
from storage.queries import Repo

from . import topics
from .common import PERIOD_WORDS, unit_arg, unit_field, usage

if TYPE_CHECKING:
    from bot.app import BotApp

router = Router("quotas")

METRICS = {"报送": "submitted", "采用": "adopted", "积分": "points"}
SCOPE_WORDS = {"全部": ("all", None), "全体": ("all", None), "乡镇": ("kind", "township"), "部门": ("kind", "department"),
               "直报点": ("kind", "direct_point")}  # fmt: skip
SCOPE_ORDER = {"unit": 0, "kind": 1, "all": 2}
_AMOUNT = re.compile(r"^\d+(?:\.\d)?$")
BASE_POINTS_AT = time(0, 10)  # the month-end job runs just after midnight


@dataclass
class Progress:
    unit: Unit
    quota: Quota
    period: st.Period
    done: float
    due: float  # the target pro-rated by the working days the unit is judged on
    expected: float  # the target pro-rated by those days already elapsed

    @property
    def target(self) -> float:
        return self.quota.target

    @property
    def prorated(self) -> bool:
        return self.due != self.target

    @property
    def percent(self) -> int:
        return int(self.done * 100 // self.due) if self.due else 100

    @property
    def needed(self) -> float:
        return max(self.due - self.done, 0)

    @property
    def met(self) -> bool:
        return self.done >= self.due


def effective(quotas: list[Quota], unit: Unit) -> dict[tuple[str, str], Quota]:
    """The quota in force for a unit per (period, metric): its own over its kind's over all units'."""
    chosen: dict[tuple[str, str], Quota] = {}
    for q in sorted(quotas, key=lambda q: SCOPE_ORDER[q.scope], reverse=True):
        if (
            q.scope == "all"
            or (q.scope == "kind" and q.kind == unit.kind)
            or (q.scope == "unit" and q.unit_id == unit.id)
        ):
            chosen[(q.period, q.metric)] = q
    return {key: q for key, q in chosen.items() if q.target > 0}


ONE_DAY = timedelta(days=1)


class WorkingDays:
    """The working days of one period, counted in O(1) for any span of it."""

    def __init__(self, app: BotApp, period: st.Period) -> None:
        self.start = period.start.date()
        days = (period.end.date() - self.start).days
        self.before = [0]  # working days before the i-th day of the period
        for i in range(days):
            day = self.start + timedelta(days=i)
            self.before.append(self.before[-1] + app.calendar.is_workday(day))
        self.total = self.before[-1]

    def between(self, first: date, end: date) -> int:
        """Working days in [first, end), clipped to the period."""
        a = min(max((first - self.start).days, 0), len(self.before) - 1)
        b = min(max((end - self.start).days, 0), len(self.before) - 1)
        return max(self.before[b] - self.before[a], 0)

    def judged(self, unit: Unit, exemptions: list[Exemption], end: date) -> int:
        """The unit's judged working days before `end`: from the day it was added, before
        the day it was retired, outside its exemptions."""
        if unit.retired_at is not None:
            end = min(end, unit.retired_at.date())
        first = unit.created_at.date()
        days = self.between(first, end)
        for e in exemptions:
            days -= self.between(max(first, e.starts_at.date()), min(end, e.last_day() + ONE_DAY))
        return days


async def progress(
    app: BotApp, repo: Repo, at: datetime, unit_ids: set[int] | None = None
) -> list[Progress]:
    """Every (unit, quota) in force at `at`, with the period's figures up to `at`, for the
    units that existed in the period (retired ones too: the doors that remind skip them)."""
    quotas = await repo.quotas.active_at(at)
    year = st.period_containing("year", at - timedelta(microseconds=1))
    units = await repo.units.existing(year.start, st.shown_until(year, at))
    exemptions: dict[int, list[Exemption]] = {}
    for e in await repo.exemptions.overlapping(year.start.date(), at.date() + ONE_DAY):
        exemptions.setdefault(e.unit_id, []).append(e)
    # figures and working days, once per period kind (the same for every unit)
    periods: dict[str, tuple[dict[int, st.UnitStanding], WorkingDays]] = {}
    spans = {
        kind: (p, st.shown_until(p, at))
        for kind in ("month", "quarter", "year")
        for p in [st.period_containing(kind, at - timedelta(microseconds=1))]
    }
    # the quotas in force depend on the unit's kind and whether it has quotas of its own
    with_own_quotas = {q.unit_id for q in quotas if q.scope == "unit"}
    in_force: dict[tuple, list[tuple[tuple[str, str], Quota]]] = {}
    out = []
    for unit in units:
        if unit_ids is not None and unit.id not in unit_ids:
            continue
        key = (unit.kind, unit.id if unit.id in with_own_quotas else None)
        if key not in in_force:
            in_force[key] = sorted(effective(quotas, unit).items(), key=_order)
        for (period_kind, metric), quota in in_force[key]:
            period, end = spans[period_kind]
            if unit.created_at >= end or (unit.retired_at or end) <= period.start:
                continue  # not in this period
            if period_kind not in periods:
                rows = await st.standings(app.db, period.start, end)
                periods[period_kind] = ({r.unit_id: r for r in rows}, WorkingDays(app, period))
            figures, days = periods[period_kind]
            row = figures.get(unit.id)
            done = (
                0.0
                if row is None
                else {
                    "submitted": row.submitted,
                    "adopted": row.adopted_total,
                    "points": row.points,
                }[metric]
            )
            own = exemptions.get(unit.id, [])
            share = quota.target / days.total if days.total else 0.0
            due = round(share * days.judged(unit, own, period.end.date()), 6)
            expected = round(share * days.judged(unit, own, min(at, period.end).date()), 6)
            out.append(Progress(unit, quota, period, done, due, expected))
    return out


async def completion(app: BotApp, repo: Repo, month: st.Period) -> list[Progress]:
    """The monthly quotas of a finished month, per unit that existed in it."""
    return [p for p in await progress(app, repo, month.end) if p.quota.period == "month"]


def _order(item: tuple[tuple[str, str], Quota]) -> tuple[int, int]:
    (period, metric), _ = item
    return (
        ["month", "quarter", "year"].index(period),
        ["submitted", "adopted", "points"].index(metric),
    )


def lagging(app: BotApp, p: Progress) -> bool:
    tolerance = app.config.quotas.tolerance_percent / 100
    return p.done < p.expected * (1 - tolerance)


async def remindable(ctx: Context, rows: list[Progress]) -> tuple[list[Progress], dict]:
    """The rows of units that may be reminded now (not retired, not exempt), and the
    exemptions in force by unit."""
    exempt = await ctx.repo.exemptions.active(ctx.now)
    return [p for p in rows if p.unit.active and p.unit.id not in exempt], exempt


async def exempt_units(repo: Repo, exempt: dict[int, Exemption]) -> list[tuple[Unit, Exemption]]:
    """The exemptions in force (by unit id, as `remindable` returns them) with their units."""
    units = {u.id: u for u in await repo.units.all_active()}
    return [(units[uid], e) for uid, e in exempt.items() if uid in units]


# ------------------------------------------------------------------ operations


async def set_quota(
    ctx: Context, unit: Unit | None, kind: str | None, period: str, metric: str, target: float
) -> Quota | None:
    """Set the `period` (month/quarter/year) target of `metric` (submitted/adopted/points)
    for one unit, a kind of units, or all units (neither given); 0 = none. The old row
    ends and stays, so a finished period is judged by the target then in force.
    Returns the replaced quota, if any."""
    if unit is not None and not unit.active:
        raise Refusal("quota_retired_unit.txt.j2", name=unit.name)
    if target < 0 or (metric != "points" and not float(target).is_integer()):
        raise Refusal("quota_bad_amount.txt.j2", amount=f"{target:g}", metric=metric)
    scope = "unit" if unit is not None else "kind" if kind is not None else "all"
    return await ctx.repo.quotas.replace(
        Quota(scope=scope, unit_id=unit.id if unit else None, kind=kind, period=period, metric=metric,
              target=float(target), valid_from=ctx.now, created_by=ctx.member.id),
    )  # fmt: skip


async def remind_lagging(ctx: Context, stage: str) -> dict:
    """One reminder run: the group post, the coordinators' digest, the log and the streaks.
    Returns what happened: lagging units, units reminded, whether all were already today."""
    app, repo, now = ctx.app, ctx.repo, ctx.now
    day = now.date().isoformat()
    rows, exempt = await remindable(ctx, await progress(app, repo, now))
    units_with_quota = {p.unit.id for p in rows}
    behind = [p for p in rows if lagging(app, p)]
    lagging_units = {p.unit.id for p in behind}
    streaks = await repo.quotas.bump_streaks(units_with_quota, lagging_units, now)
    already = {(r.ref, r.unit_id) for r in await repo.reminders.sent_on_day("quota", day)}
    fresh = [p for p in behind if (p.quota.id, p.unit.id) not in already]
    officers = await repo.members.officers_by_unit({p.unit.id for p in fresh})
    to_mention = [p for p in fresh if officers[p.unit.id]]
    orphans = sorted({p.unit.name for p in fresh if not officers[p.unit.id]})
    escalate = sorted(
        {
            p.unit.name
            for p in fresh
            if streaks.get(p.unit.id, 0) >= app.config.quotas.escalate_after
        }
    )
    if to_mention:
        text = ctx.render("quota_reminder.txt.j2", rows=to_mention, now=now)
        mention = [
            m.im_id for uid in dict.fromkeys(p.unit.id for p in to_mention) for m in officers[uid]
        ]
        for group_id in sorted(app.groups):
            ctx.post(group_id, text, mention=mention)
    if fresh:
        await ctx.tell_coordinators(
            "quota_digest.txt.j2", rows=fresh, now=now, escalate=escalate, orphans=orphans,
            escalate_after=app.config.quotas.escalate_after, exempt=await exempt_units(ctx.repo, exempt),
        )  # fmt: skip
        for p in fresh:
            repo.reminders.log("quota", p.quota.id, [p.unit.id], stage, now)
    return {
        "lagging": len(lagging_units),
        "reminded": len({p.unit.id for p in fresh}),
        "already": bool(behind) and not fresh,
    }


async def award_base_points(ctx: Context, month: st.Period) -> None:
    """Month end: units that met their monthly submission quota get `[base] monthly_quota_met`,
    dated the month's last second (counted in the month it was earned)."""
    at = month.end - timedelta(seconds=1)
    rules = ctx.app.rules
    for p in await completion(ctx.app, ctx.repo, month):
        if p.quota.metric == "submitted" and p.met:
            ctx.repo.reviews.add_points(
                p.unit.id, None, "base", p.quota.id, rules.monthly_quota_met, rules.version, at
            )


async def exempt_unit(ctx: Context, unit: Unit, until: date, reason: str | None) -> Exemption:
    """Exempt `unit` from reminders from now through the day `until` (暂停催报); an exemption
    in force is replaced (and kept). Its quotas leave out the exempt working days."""
    if not unit.active:
        raise Refusal("unit_retired.txt.j2", unit=unit)
    if until < ctx.now.date():
        raise Refusal("exempt_bad_date.txt.j2", text=until.isoformat())
    current = await ctx.repo.exemptions.current(unit.id, ctx.now)
    if current is not None:
        ctx.repo.exemptions.end(current, ctx.member, ctx.now)
    return await ctx.repo.exemptions.add(
        Exemption(unit_id=unit.id, starts_at=ctx.now, until=until, reason=reason,
                  created_by=ctx.member.id if ctx.member else None)
    )  # fmt: skip


async def end_exemption(ctx: Context, unit: Unit) -> Exemption:
    """/恢复催报: end the unit's exemption now (kept as history)."""
    current = await ctx.repo.exemptions.current(unit.id, ctx.now)
    if current is None:
        raise Refusal("exempt_none.txt.j2", unit=unit.name)
    ctx.repo.exemptions.end(current, ctx.member, ctx.now)
    return current


# ------------------------------------------------------------------ chat commands


@router.command("设任务", aliases=("setquota",), roles=COORDINATORS)
async def set_quota_command(ctx: Context, cmd: Command) -> None:
    if len(cmd.words) != 4:
        raise usage(ctx, "设任务")
    who, period_word, metric_word, amount = cmd.words
    word, metric = PERIOD_WORDS.get(period_word), METRICS.get(metric_word)
    period = word.kind if word is not None and not word.back else None
    if period in (None, "week") or metric is None:
        raise Refusal(
            "quota_bad_words.txt.j2",
            period=period_word,
            metric=metric_word,
            ok_period=period not in (None, "week"),
        )
    amount = normalize(amount)
    if not _AMOUNT.match(amount):
        raise Refusal("quota_bad_amount.txt.j2", amount=amount, metric=metric)
    scope, kind = SCOPE_WORDS.get(who, ("unit", None))
    unit = None
    if scope == "unit":
        unit = await ctx.repo.units.find_any(who) or await unit_arg(ctx, who)
    old = await set_quota(ctx, unit, kind, period, metric, float(amount))
    ctx.reply(
        "quota_set.txt.j2",
        who=unit.name if unit else who,
        period=period,
        metric=metric,
        target=float(amount),
        old=old,
    )


@router.command("任务", aliases=("quota",), roles=OFFICERS | COORDINATORS)
async def show_quota(ctx: Context, cmd: Command) -> None:
    if ctx.role == Role.officer:
        unit = await ctx.repo.units.get(ctx.member.unit_id)
        if cmd.words and (await unit_arg(ctx, cmd.rest)).id != unit.id:
            raise Refusal("quota_other_unit.txt.j2", unit=unit.name)
    elif cmd.words:
        unit = await unit_arg(ctx, cmd.rest)
    else:
        rows, exempt = await remindable(ctx, await progress(ctx.app, ctx.repo, ctx.now))
        ctx.reply(
            "quota_overview.txt.j2",
            rows=[p for p in rows if lagging(ctx.app, p)],
            total=len({p.unit.id for p in rows}),
            now=ctx.now,
            exempt=await exempt_units(ctx.repo, exempt),
        )
        return
    rows = await progress(ctx.app, ctx.repo, ctx.now, {unit.id})
    last = await ctx.repo.reminders.last_for_unit("quota", unit.id)
    ctx.reply(
        "quota_detail.txt.j2",
        unit=unit.name,
        rows=rows,
        lagging=[lagging(ctx.app, p) for p in rows],
        last=last,
        now=ctx.now,
        exemption=await ctx.repo.exemptions.current(unit.id, ctx.now),
    )


@router.command("催报", aliases=("remind",), roles=COORDINATORS)
async def remind_command(ctx: Context, cmd: Command) -> None:
    """/催报: the quota reminders now; /催报 Y12: that topic's reminder."""
    if cmd.words:
        await topics.remind_command(ctx, cmd)
        return
    outcome = await remind_lagging(ctx, "manual")
    if not ctx.in_group or outcome["reminded"] == 0:
        ctx.reply("quota_remind_result.txt.j2", **outcome)


@router.command("暂停催报", aliases=("exempt",), roles=COORDINATORS)
async def exempt_command(ctx: Context, cmd: Command) -> None:
    if len(cmd.words) < 2:
        raise usage(ctx, "暂停催报")
    unit = await unit_arg(ctx, cmd.words[0])
    try:  # a date: compared with the start of today, so today itself is accepted
        until = parse_deadline(cmd.words[1], datetime.combine(ctx.now.date(), time.min)).date()
    except DeadlineError:
        raise Refusal("exempt_bad_date.txt.j2", text=cmd.words[1]) from None
    row = await exempt_unit(ctx, unit, until, " ".join(cmd.words[2:]) or None)
    ctx.reply("exempted.txt.j2", unit=unit.name, exemption=row)


@router.command("恢复催报", aliases=("unexempt",), roles=COORDINATORS)
async def end_exemption_command(ctx: Context, cmd: Command) -> None:
    if not cmd.words:
        raise usage(ctx, "恢复催报")
    unit = await unit_arg(ctx, cmd.rest)
    await end_exemption(ctx, unit)
    ctx.reply("exemption_ended.txt.j2", unit=unit.name)


# ------------------------------------------------------------------ scheduled


def reminder_times(app: BotApp, year: int, month: int) -> list[datetime]:
    """This month's quota reminder times: day N (clamped to the month; a non-working day
    moves to the previous working day of the month), or -N = the Nth working day before
    the month's end; quiet hours respected."""
    first = date(year, month, 1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    workdays = [
        first + timedelta(days=i)
        for i in range(last.day)
        if app.calendar.is_workday(first + timedelta(days=i))
    ]
    out = set()
    for spec in app.config.schedule.quota_reminders:
        day_text, _, hm = spec.partition(" ")
        n = int(day_text)
        if not workdays:
            continue
        if n < 0:
            day = workdays[n] if len(workdays) >= -n else workdays[0]
        else:
            wanted = first.replace(day=min(n, last.day))
            earlier = [d for d in workdays if d <= wanted]
            day = earlier[-1] if earlier else workdays[0]
        out.add(app.posting.next_allowed(datetime.combine(day, time.fromisoformat(hm))))
    return sorted(out)


def next_reminder(app: BotApp, after: datetime) -> datetime:
    year, month = after.year, after.month
    for _ in range(24):
        later = [t for t in reminder_times(app, year, month) if t > after]
        if later:
            return later[0]
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    raise RuntimeError("no quota reminder in two years")  # pragma: no cover


@router.on_startup
async def ensure_quota_jobs(app: BotApp) -> None:
    now = app.clock.now()
    when = next_reminder(app, now)
    app.scheduler.ensure(
        "quota:remind", when, reminder_job, when.isoformat(), useful_until=when + timedelta(hours=8)
    )
    month_end = datetime.combine(st.period_containing("month", now).end.date(), BASE_POINTS_AT)
    covered = st.previous(st.period_containing("month", month_end)).start.date().isoformat()
    app.scheduler.ensure(
        "quota:base",
        month_end,
        base_points_job,
        covered,
        useful_until=month_end + timedelta(days=20),
    )


@router.job
async def reminder_job(app: BotApp, planned: str) -> None:
    async with app.acting(None) as ctx:
        if await ctx.repo.events.claim(f"quota-remind:{planned}", ctx.now):
            await remind_lagging(ctx, "scheduled")
    when = next_reminder(app, max(app.clock.now(), datetime.fromisoformat(planned)))
    app.scheduler.at(
        "quota:remind", when, reminder_job, when.isoformat(), useful_until=when + timedelta(hours=8)
    )


@router.job
async def base_points_job(app: BotApp, month_start: str) -> None:
    """Month end: the base points of the month that ended, once; then plan the next."""
    month = st.period_containing("month", datetime.fromisoformat(month_start))
    async with app.acting(None) as ctx:
        if await ctx.repo.events.claim(f"base-points:{month_start}", ctx.now):
            await award_base_points(ctx, month)
    next_end = datetime.combine(month.end.date() + timedelta(days=32), BASE_POINTS_AT).replace(
        day=1
    )
    app.scheduler.at("quota:base", next_end, base_points_job, month.end.date().isoformat(),
                     useful_until=next_end + timedelta(days=20))  # fmt: skip


@router.on_tick
async def warn_missing_calendar(app: BotApp, now: datetime) -> None:
    """From 1 December, at a posting time, coordinators are told once (the key is kept)
    when the installed chinesecalendar lacks next year's official arrangement."""
    if now.month != 12 or not app.posting.allowed(now) or app.calendar.covers(now.year + 1):
        return
    key = f"calendar-missing:{now.year + 1}"
    async with app.db.reader() as s:
        if await Repo(s).events.seen(key):
            return
    async with app.acting(None) as ctx:
        if await ctx.repo.events.claim(key, ctx.now):
            await ctx.tell_coordinators("calendar_missing.txt.j2", year=now.year + 1)


# ------------------------------------------------------------------ console: 任务


@router.page("quotas", roles=OFFICERS | COORDINATORS)
async def quotas_page(view: View) -> Page:
    """Progress of every quota in force, lagging units first; an officer sees the own
    unit's, read-only. Coordinators set quotas and send the reminders here."""
    app, repo = view.app, view.repo
    officer = view.role == Role.officer
    rows = await progress(app, repo, view.now, {view.member.unit_id} if officer else None)
    units: dict[int, dict] = {}
    for p in rows:
        entry = units.setdefault(p.unit.id, {"unit": p.unit, "rows": [], "lagging": False})
        behind = lagging(app, p)
        entry["rows"].append((p, behind))
        entry["lagging"] = entry["lagging"] or behind
        entry["last"] = await repo.reminders.last_for_unit("quota", p.unit.id)
    listed = sorted(units.values(), key=lambda e: not e["lagging"])  # stable: unit order kept
    return Page(
        "console/quotas.html.j2",
        {
            "units": listed, "officer": officer, "now": view.now,
            "lagging_count": sum(e["lagging"] for e in listed),
            "scopes": SCOPE_WORDS, "all_units": [] if officer else await repo.units.all_active(),
            "metrics": METRICS,
            "exempt": []
            if officer
            else await exempt_units(view.repo, await view.repo.exemptions.active(view.now)),
        },
    )  # fmt: skip


@router.action("set_quota", roles=COORDINATORS)
async def set_quota_action(ctx: Context, form: Form) -> str:
    """`who`: a unit's name or 全部/乡镇/部门/直报点, as /设任务 takes them."""
    who = form.required("who")
    period = form.choice("period", ("month", "quarter", "year"), "")
    metric = form.choice("metric", METRICS.values(), "")
    amount = normalize(form.required("amount"))
    if not _AMOUNT.match(amount):
        raise Refusal("quota_bad_amount.txt.j2", amount=amount, metric=metric)
    scope, kind = SCOPE_WORDS.get(who, ("unit", None))
    unit = await unit_arg(ctx, who) if scope == "unit" else None
    old = await set_quota(ctx, unit, kind, period, metric, float(amount))
    return ctx.render(
        "quota_set.txt.j2", who=who, period=period, metric=metric, target=float(amount), old=old
    )


@router.action("exempt", roles=COORDINATORS)
async def exempt_action(ctx: Context, form: Form) -> str:
    """暂停催报 from the console: a unit, the last exempt day (a date picker), a reason."""
    unit = await unit_field(ctx, form)
    try:
        until = date.fromisoformat(form.required("until"))
    except ValueError:
        raise BadInput("until") from None
    row = await exempt_unit(ctx, unit, until, form.get("reason") or None)
    return ctx.render("exempted.txt.j2", unit=unit.name, exemption=row)


@router.action("end_exemption", roles=COORDINATORS)
async def end_exemption_action(ctx: Context, form: Form) -> str:
    unit = await unit_field(ctx, form)
    await end_exemption(ctx, unit)
    return ctx.render("exemption_ended.txt.j2", unit=unit.name)


@router.action("remind_quotas", roles=COORDINATORS)
async def remind_action(ctx: Context, form: Form) -> str:
    """一键催报: the quota reminders now."""
    return ctx.render("quota_remind_result.txt.j2", **await remind_lagging(ctx, "manual"))
