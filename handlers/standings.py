"""Standings: /排行, /通报, the scheduled weekly/monthly/quarterly/yearly reports, /导出."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bot.context import Context
from bot.router import COORDINATORS, EVERYONE, Command, Router
from storage import standings as st
from storage.queries import Repo

from . import export
from .common import PERIOD_WORDS, usage

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


def period_word(ctx: Context, cmd: Command, default: str) -> str:
    if not cmd.words:
        return default
    kind = PERIOD_WORDS.get(cmd.words[0])
    if kind is None:
        raise usage(ctx, cmd.spec.name)
    return kind


# ------------------------------------------------------------------ /排行


async def ranking(app: BotApp, repo: Repo, kind: str, limit: int | None) -> str:
    """The current period to date; the year (default) moves against the start of this week,
    the other periods against the previous period's rank."""
    now = app.clock.now()
    period = st.period_containing(kind, now)
    end = now + timedelta(seconds=1)
    if kind == "year":
        week_start = st.period_containing("week", now).start
        rows = await st.standings(
            app.db, period.start, end, compare_end=max(week_start, period.start)
        )
    else:
        rows = await st.standings(app.db, period.start, end)
        before = st.previous(period)
        prev = {r.unit_id: r.rank for r in await st.standings(app.db, before.start, before.end)}
        for r in rows:
            r.previous_rank = prev.get(r.unit_id)
    return app.renderer.text(
        "ranking.txt.j2",
        kind=kind,
        period=period,
        now=now,
        rows=rows,
        limit=limit,
        has_data=st.has_data(rows),
    )


@router.command("排行", aliases=("rank",), roles=EVERYONE)
async def show_ranking(ctx: Context, cmd: Command) -> None:
    kind = period_word(ctx, cmd, "year")
    ctx.reply_text(
        await ranking(ctx.app, ctx.repo, kind, GROUP_LIMIT if ctx.in_group else PRIVATE_LIMIT)
    )


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
        ytd=ytd,
        silent=sorted(silent, key=lambda r: (-weeks[r.unit_id], r.name)),
        weeks=weeks,
        topics=topics,
        limit=GROUP_LIMIT,
        has_data=st.has_data(rows) or st.has_data(ytd),
    )


async def monthly_report(app: BotApp, repo: Repo, month: st.Period) -> str:
    rows = await st.standings(app.db, month.start, month.end)
    months = await st.months_without_adoption(repo.session, [r.unit_id for r in rows], month)
    zero = sorted(
        ((r, months[r.unit_id]) for r in rows if months[r.unit_id] >= app.rules.zero_months_warn),
        key=lambda x: (-x[1], x[0].name),
    )
    return app.renderer.text(
        "report_monthly.txt.j2", period=month, rows=rows, zero=zero, limit=GROUP_LIMIT, has_data=st.has_data(rows),
        zero_months_warn=app.rules.zero_months_warn,
    )  # fmt: skip


async def rating_report(app: BotApp, repo: Repo, period: st.Period) -> str:
    """评比: quarterly and yearly ranking, the excellent top N, units under the yearly minimum."""
    rows = await st.standings(app.db, period.start, period.end)
    excellent = [r for r in rows if r.rank <= app.rules.excellent_top and r.points > 0]
    under = (
        [r for r in rows if r.points < app.rules.min_year_points] if period.kind == "year" else []
    )
    return app.renderer.text(
        "report_rating.txt.j2", period=period, rows=rows, excellent=excellent, under=under, rules=app.rules,
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


async def post_report(ctx: Context, period: st.Period) -> None:
    """Post the period's report to every configured group and record that it was posted,
    so the schedule will not post it again."""
    text = await report_text(ctx.app, ctx.repo, period)
    await ctx.repo.events.claim(report_key(period), ctx.now)
    for group_id in sorted(ctx.app.groups):
        ctx.post(group_id, text)


@router.command("通报", aliases=("report",), roles=COORDINATORS)
async def post_report_command(ctx: Context, cmd: Command) -> None:
    period = last_complete(period_word(ctx, cmd, "week"), ctx.now)
    await post_report(ctx, period)
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
    async with app.acting(None) as ctx:
        if await ctx.repo.events.claim(report_key(period), ctx.now):  # once, even if raced
            await post_report(ctx, period)
    when, covered = next_report(app, kind, max(app.clock.now(), period.end))
    app.scheduler.at(
        f"report:{kind}", when, report_job, kind, covered.start.date().isoformat(),
        useful_until=when + USEFUL_FOR[kind],
    )  # fmt: skip


# ------------------------------------------------------------------ /导出


async def export_workbook(ctx: Context, kind: str) -> Path:
    """The Excel workbook of the current `kind` period to date; returns its path."""
    period = st.period_containing(kind, ctx.now)
    end = min(period.end, ctx.now + timedelta(seconds=1))
    folder = ctx.app.config.files_path / "exports"
    return await export.write_workbook(
        ctx.app.db, ctx.repo.session, ctx.app.config.bot.county, period.start, end, folder
    )


@router.command("导出", aliases=("export",), roles=COORDINATORS)
async def export_now(ctx: Context, cmd: Command) -> None:
    path = await export_workbook(ctx, period_word(ctx, cmd, "year"))
    app, event = ctx.app, ctx.event
    ctx.reply("export_ready.txt.j2", name=path.name)
    ctx.after_commit.append(
        lambda: app.spawn(
            send_export(app, event.self_id, event.chat_type, event.chat_id, event.user_id, path)
        )
    )


async def send_export(
    app: BotApp, self_id: int, chat_type: str, chat_id: int, user_id: int, path: Path
) -> None:
    """Upload the workbook where the implementation supports it, else say where it is."""
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
            app.renderer.text("export_fallback.txt.j2", path=path),
            self_id=self_id,
        )
    app.sender.wake()
