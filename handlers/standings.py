"""Standings: /排行, /通报, the scheduled weekly/monthly/quarterly/yearly reports, /导出."""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import Context, Refusal
from bot.pages import Download, Form, Page, View
from bot.router import COORDINATORS, EVERYONE, MEMBERS, Command, Router
from storage import standings as st
from storage.queries import Repo

from . import export, quotas
from .common import PERIOD_WORDS, PeriodWord, period_of, usage

if TYPE_CHECKING:
    from bot.app import BotApp

router = Router("standings")

GROUP_LIMIT = 20  # ranking lines in a group post; the rest via /导出
PRIVATE_LIMIT = 100
REPORT_TIME = time(9, 0)
USEFUL_FOR = {
    "week": timedelta(days=3),
    "month": timedelta(days=10),
    "quarter": timedelta(days=20),
    "year": timedelta(days=20),
}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
AGAIN_WORD = "重发"  # /通报 周 重发: post a report again


def period_arg(ctx: Context, cmd: Command, default: str) -> tuple[PeriodWord, list[str]]:
    """The period word the command starts with (or `default`) and the other words."""
    if cmd.words and cmd.words[0] in PERIOD_WORDS:
        return PERIOD_WORDS[cmd.words[0]], cmd.words[1:]
    return PERIOD_WORDS[default], cmd.words


# ------------------------------------------------------------------ classes


def class_label(app: BotApp, row: st.UnitStanding) -> str:
    """The class a unit is ranked in: its own, else its kind's word (乡镇, 部门, 直报点)."""
    return row.klass or app.renderer.labels["KIND"][row.kind]


def arrange(
    app: BotApp, rows: list[st.UnitStanding], klass: str | None = None
) -> list[tuple[str | None, list[st.UnitStanding]]]:
    """Rows grouped for a post: each class ranked separately with `[standings] by_class`
    (classes in the configured order), or only the units of `klass`, ranked among
    themselves; else one ranking of all. Ranks are set here."""
    if klass is not None:
        rows = [r for r in rows if klass in (r.klass, class_label(app, r))]
        return [(klass, st.rank(rows))]
    if not app.config.standings.by_class:
        return [(None, st.rank(rows))]
    ranked = st.rank(rows, lambda r: class_label(app, r), app.config.units.classes)
    groups: dict[str, list[st.UnitStanding]] = {}
    for r in ranked:
        groups.setdefault(class_label(app, r), []).append(r)
    return list(groups.items())


def class_arg(ctx: Context, words: list[str]) -> str | None:
    """/排行 … 类别: a configured class or a kind word; None without one."""
    if not words:
        return None
    word = " ".join(words)
    if word in ctx.app.config.units.classes or word in ctx.app.renderer.labels["KIND"].values():
        return word
    raise Refusal(
        "ranking_bad_word.txt.j2",
        usage=ctx.app.renderer.command_help["排行"]["usage"],
        classes=ctx.app.config.units.classes,
    )


# ------------------------------------------------------------------ /排行


async def ranking_groups(
    app: BotApp, word: PeriodWord, now: datetime, klass: str | None = None
) -> tuple[st.Period, datetime, list[tuple[str, list[st.UnitStanding]]]]:
    """The period a word names: the running one to date (the year moves against the start
    of this week, the others against the previous period), or the one just closed. Returns
    the period, the end shown, and the (class label, rows) groups ranked as configured."""
    period = period_of(word, now)
    end = st.shown_until(period, now)
    if period.kind == "year" and not word.back:
        week_start = st.period_containing("week", now).start
        rows = await st.standings(
            app.db, period.start, end, compare_end=max(week_start, period.start)
        )
        groups = arrange(app, rows, klass)
    else:
        groups = arrange(app, await st.standings(app.db, period.start, end), klass)
        before = st.previous(period)
        earlier = arrange(app, await st.standings(app.db, before.start, before.end), klass)
        prev = {r.unit_id: r.rank for _, group in earlier for r in group}
        for _, group in groups:
            for r in group:
                r.previous_rank = prev.get(r.unit_id)
    return period, end, groups


async def ranking(
    app: BotApp, repo: Repo, word: PeriodWord, limit: int | None, klass: str | None = None
) -> str:
    period, end, groups = await ranking_groups(app, word, app.clock.now(), klass)
    rows = [r for _, group in groups for r in group]
    return app.renderer.text(
        "ranking.txt.j2",
        kind=period.kind,
        current=not word.back,
        period=period,
        last=end - timedelta(seconds=1),
        groups=groups,
        limit=limit,
        has_data=st.has_data(rows),
    )


@router.command("排行", aliases=("rank",), roles=EVERYONE)
async def show_ranking(ctx: Context, cmd: Command) -> None:
    word, rest = period_arg(ctx, cmd, "年")
    limit = GROUP_LIMIT if ctx.in_group else PRIVATE_LIMIT
    ctx.reply_text(await ranking(ctx.app, ctx.repo, word, limit, class_arg(ctx, rest)))


# ------------------------------------------------------------------ reports


async def weekly_report(app: BotApp, repo: Repo, week: st.Period) -> str:
    rows = await st.standings(app.db, week.start, week.end)
    year = st.period_containing("year", week.start)
    ytd = await st.standings(app.db, year.start, week.end, compare_end=max(week.start, year.start))
    silent = [r for r in rows if r.submitted == 0]
    weeks = await st.weeks_without_submission(repo.session, [r.unit_id for r in silent], week)
    topics = []
    for topic in await repo.topics.open_topics():
        answered = await repo.topics.answered_unit_ids(topic)
        missing = [u.name for u in await repo.topics.targets(topic) if u.id not in answered]
        topics.append((topic, missing))
    return app.renderer.text(
        "report_weekly.txt.j2",
        week=week,
        rows=rows,
        ytd=arrange(app, ytd),
        silent=sorted(silent, key=lambda r: (-weeks[r.unit_id], r.name)),
        weeks=weeks,
        topics=topics,
        limit=GROUP_LIMIT,
        has_data=st.has_data(rows) or st.has_data(ytd),
    )


async def monthly_report(app: BotApp, repo: Repo, month: st.Period) -> str:
    """月通报: the month's table and ranking, each unit's completion of its monthly quotas,
    urgent pieces (and how many were recorded late), units without adoption for months."""
    rows = await st.standings(app.db, month.start, month.end)
    months = await st.months_without_adoption(repo.session, [r.unit_id for r in rows], month)
    zero = sorted(
        ((r, months[r.unit_id]) for r in rows if months[r.unit_id] >= app.rules.zero_months_warn),
        key=lambda x: (-x[1], x[0].name),
    )
    completion: dict[int, list[quotas.Progress]] = {}
    for p in await quotas.completion(app, repo, month):
        completion.setdefault(p.unit.id, []).append(p)
    urgent = await st.urgent_pieces(repo.session, month.start, month.end)
    return app.renderer.text(
        "report_monthly.txt.j2", period=month, rows=rows, groups=arrange(app, rows), zero=zero,
        completion=list(completion.values()), urgent=[(r, urgent[r.unit_id]) for r in rows if r.unit_id in urgent],
        limit=GROUP_LIMIT, has_data=st.has_data(rows), zero_months_warn=app.rules.zero_months_warn,
    )  # fmt: skip


async def rated(app: BotApp, s: AsyncSession, period: st.Period, end: datetime) -> list:
    """The figures of a 评比 or an export: the standings with each unit's unanswered 约稿;
    for a year, `[topic] missed_action = "zero"` counts the points of units that reached
    `missed_limit` as 0. A rule of the presentation: no points row changes."""
    rows = await st.standings(app.db, period.start, end)
    missed = await st.topics_missed(app.db, period.start, end)
    rules = app.rules
    for r in rows:
        r.topics_missed = missed.get(r.unit_id, 0)
        if period.kind == "year" and sanctioned(app, r) and rules.missed_action == "zero":
            r.earned, r.points = r.points, 0.0
    return rows


def sanctioned(app: BotApp, row: st.UnitStanding) -> bool:
    limit = app.rules.missed_limit
    return bool(limit) and row.topics_missed >= limit


async def rating_report(app: BotApp, repo: Repo, period: st.Period) -> str:
    """评比: quarterly and yearly ranking, the excellent top N, units under the yearly minimum,
    and (yearly) units that left `[topic] missed_limit` targeted 约稿 unanswered."""
    groups = arrange(app, await rated(app, repo.session, period, period.end))
    rows = [r for _, group in groups for r in group]
    excellent = [r for r in rows if r.rank <= app.rules.excellent_top and r.points > 0]
    yearly = period.kind == "year"
    under = [r for r in rows if r.points < app.rules.min_year_points] if yearly else []
    flagged = [r for r in rows if sanctioned(app, r)] if yearly else []
    return app.renderer.text(
        "report_rating.txt.j2", period=period, rows=rows, groups=groups, excellent=excellent, under=under,
        flagged=sorted(flagged, key=lambda r: (-r.topics_missed, r.name)), rules=app.rules,
        limit=GROUP_LIMIT, has_data=st.has_data(rows),
    )  # fmt: skip


async def report_text(app: BotApp, repo: Repo, period: st.Period) -> str:
    if period.kind == "week":
        return await weekly_report(app, repo, period)
    if period.kind == "month":
        return await monthly_report(app, repo, period)
    return await rating_report(app, repo, period)


def last_complete(kind: str, now: datetime) -> st.Period:
    return st.previous(st.period_containing(kind, now))


async def post_report(ctx: Context, period: st.Period, again: bool = False) -> None:
    """Post the period's report to every configured group and record that it was posted:
    a report already posted (by the schedule or a coordinator) is refused, naming when,
    unless `again`."""
    key = report_key(period)
    if not await ctx.repo.events.claim(key, ctx.now) and not again:
        posted = await ctx.repo.events.recorded_at(key)
        raise Refusal("report_already_posted.txt.j2", period=period, posted=posted)
    text = await report_text(ctx.app, ctx.repo, period)
    for group_id in sorted(ctx.app.groups):
        ctx.post(group_id, text)


@router.command("通报", aliases=("report",), roles=COORDINATORS)
async def post_report_command(ctx: Context, cmd: Command) -> None:
    word, rest = period_arg(ctx, cmd, "周")
    if rest not in ([], [AGAIN_WORD]):
        raise usage(ctx, "通报")
    period = last_complete(word.kind, ctx.now)  # 月 and 上月 both mean the month just closed
    await post_report(ctx, period, again=bool(rest))
    if not ctx.in_group:
        ctx.reply("report_posted.txt.j2", period=period, groups=len(ctx.app.groups))


def report_key(period: st.Period) -> str:
    return f"report:{period.kind}:{period.start.date().isoformat()}"


def next_report(app: BotApp, kind: str, after: datetime) -> tuple[datetime, st.Period]:
    """When the next `kind` report goes out after `after`, and the period it covers."""
    if kind == "week":
        day_word, _, hm = app.config.schedule.weekly_standings.partition(" ")
        at = time.fromisoformat(hm)
        day = after.date() + timedelta(days=(WEEKDAYS.index(day_word) - after.weekday()) % 7)
        nominal = datetime.combine(day, at)
        if nominal <= after:
            nominal += timedelta(days=7)
    else:
        current = st.period_containing(kind, after)
        nominal = datetime.combine(current.start.date(), REPORT_TIME)
        if nominal <= after:
            nominal = datetime.combine(current.end.date(), REPORT_TIME)
    covered = st.previous(st.period_containing(kind, nominal))
    return app.posting.next_allowed(nominal), covered


@router.on_startup
async def ensure_report_jobs(app: BotApp) -> None:
    """At start-up: keep a pending report job (it may have been missed while down), or plan the next."""
    now = app.clock.now()
    for kind in USEFUL_FOR:
        when, covered = next_report(app, kind, now)
        app.scheduler.ensure(
            f"report:{kind}", when, report_job, kind, covered.start.date().isoformat(),
            useful_until=when + USEFUL_FOR[kind],
        )  # fmt: skip


@router.job
async def report_job(app: BotApp, kind: str, period_start: str) -> None:
    """Scheduled job: post the report once (its key is written with the posts), plan the next."""
    period = st.period_containing(kind, datetime.fromisoformat(period_start))
    with suppress(Refusal):  # posted already (by /通报): once, even if raced
        async with app.acting(None) as ctx:
            await post_report(ctx, period)
    when, covered = next_report(app, kind, max(app.clock.now(), period.end))
    app.scheduler.at(
        f"report:{kind}", when, report_job, kind, covered.start.date().isoformat(),
        useful_until=when + USEFUL_FOR[kind],
    )  # fmt: skip


# ------------------------------------------------------------------ /导出


async def export_workbook(
    app: BotApp, s: AsyncSession, period: st.Period, path: Path | None = None
) -> Path:
    """The Excel workbook of `period` (to date while it runs), ranked and sanctioned like
    its report; returns its path."""
    end = st.shown_until(period, app.clock.now())
    groups = arrange(app, await rated(app, s, period, end))
    rows = [(label or class_label(app, r), r) for label, group in groups for r in group]
    remarks = {
        r.unit_id: app.renderer.text("export_remark.txt.j2", row=r, rules=app.rules)
        for _, r in rows
        if period.kind == "year" and sanctioned(app, r)
    }
    return await export.write_workbook(
        s, app.renderer, app.config.bot.county, period.start, end, rows, remarks,
        app.config.files_path / "exports", path,
    )  # fmt: skip


@router.command("导出", aliases=("export",), roles=COORDINATORS)
async def export_now(ctx: Context, cmd: Command) -> None:
    word, rest = period_arg(ctx, cmd, "年")
    if rest:
        raise usage(ctx, "导出")
    path = await export_workbook(ctx.app, ctx.repo.session, period_of(word, ctx.now))
    app, event = ctx.app, ctx.event
    ctx.reply("export_ready.txt.j2", name=path.name)
    ctx.after_commit.append(
        lambda: app.spawn(
            send_export(app, event.self_id, event.chat_type, event.chat_id, event.user_id, path)
        )
    )


async def send_export(
    app: BotApp,
    self_id: int,
    chat_type: str,
    chat_id: int,
    user_id: int,
    path: Path,
    fallback: str = "export_fallback.txt.j2",
) -> None:
    """Upload the file where the implementation supports it, else tell `user_id` where
    it is (`fallback`)."""
    if chat_type == "group":
        action, params = (
            "upload_group_file",
            {"group_id": chat_id, "file": str(path), "name": path.name},
        )
    else:
        action, params = (
            "upload_private_file",
            {"user_id": user_id, "file": str(path), "name": path.name},
        )
    result = await app.transport.call(self_id, action, params)
    if result.ok:
        return
    async with app.db.transaction() as s:
        app.queue(
            Repo(s),
            "private",
            user_id,
            app.renderer.text(fallback, path=path),
            self_id=self_id,
        )
    app.sender.wake()


# ------------------------------------------------------------------ console: 排行, 导出

PERIOD_KINDS = ("week", "month", "quarter", "year")
EXPORT_WORDS = ("本月", "上月", "本季", "上季", "本年", "去年")  # of PERIOD_WORDS
WEEKS_SHOWN = 12


async def weekly_figures(
    app: BotApp, now: datetime, weeks: int = WEEKS_SHOWN
) -> tuple[list[st.Period], dict[int, list[tuple[int, int]]]]:
    """The last `weeks` weeks (this one included) and each unit's (submitted, adopted) in
    each: one standings aggregate per week."""
    periods = [st.period_containing("week", now)]
    while len(periods) < weeks:
        periods.insert(0, st.previous(periods[0]))
    series: dict[int, list[tuple[int, int]]] = {}
    for n, week in enumerate(periods):
        for r in await st.standings(app.db, week.start, min(week.end, now + timedelta(seconds=1))):
            # a unit added later is not judged in the weeks before: zeros there
            series.setdefault(r.unit_id, [(0, 0)] * len(periods))[n] = (
                r.submitted,
                r.adopted_total,
            )
    return periods, series


@router.page("standings", roles=MEMBERS)
async def standings_page(view: View) -> Page:
    """The period's standings (the /排行 figures), the year's points per unit and each
    unit's weekly submissions and adoptions as charts. An officer's unit is marked; with
    classes configured, one class can be picked (as `/排行 类别`)."""
    app, now = view.app, view.now
    kind = view.query.choice("period", PERIOD_KINDS, "year")
    classes = app.config.units.classes
    klass = view.query.choice("class", ("", *classes), "") or None
    period, _, groups = await ranking_groups(app, PeriodWord(kind), now, klass)
    rows = [r for _, group in groups for r in group]
    year = groups if kind == "year" else (await ranking_groups(app, PeriodWord("year"), now))[2]
    year_rows = sorted((r for _, g in year for r in g), key=lambda r: (-r.points, r.name))
    weeks, series = await weekly_figures(app, now)
    top = max((n for figures in series.values() for pair in figures for n in pair), default=0)
    return Page(
        "console/standings.html.j2",
        {
            "period": period, "groups": groups, "has_data": st.has_data(rows), "now": now,
            "kinds": PERIOD_KINDS, "levels": st.LEVELS, "year_rows": year_rows,
            "weeks": weeks, "series": series, "top": top or 1,
            "mine": view.member.unit_id, "classes": classes, "klass": klass,
        },
    )  # fmt: skip


@router.page("export", roles=COORDINATORS)
async def export_page(view: View) -> Page:
    return Page("console/export.html.j2", {"words": EXPORT_WORDS})


@router.action("export", roles=COORDINATORS)
async def export_action(ctx: Context, form: Form) -> Download:
    """The workbook of /导出, downloaded at once."""
    word = PERIOD_WORDS[form.choice("period", EXPORT_WORDS, "上月")]
    path = await export_workbook(ctx.app, ctx.repo.session, period_of(word, ctx.now))
    return Download(path, path.name)
