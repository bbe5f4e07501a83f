"""Topic requests (约稿): publish, list, claim, close, remind, close at the deadline.

Operations (publish_topic, claim_topic, close_topic, remind_topic,
close_topic_at_deadline) hold the rules; the chat commands and the scheduled
jobs call them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.context import Context, Refusal
from bot.pages import BadInput, Form, Page, View
from bot.router import COORDINATORS, EVERYONE, OFFICERS, Command, Router, normalize
from bot.timeparse import DeadlineError, is_deadline_text, parse_deadline
from storage.models import Topic, Unit
from storage.queries import Repo

from .common import unit_arg, usage

if TYPE_CHECKING:
    from bot.app import BotApp

router = Router("topics")

REMINDER_STAGES = (("24h", timedelta(hours=24)), ("2h", timedelta(hours=2)))
ALL_WORDS = ("全体", "全部", "所有单位")
AGAIN_WORD = "重发"  # /约稿 重发 …: publish although an identical topic is open
_TOPIC_NO = re.compile(r"^(?:[Yy]|约稿)?(\d{1,9})$")
_LIST_SPLIT = re.compile(r"[\s,、;；]+")


def parse_topic_number(text: str) -> int | None:
    m = _TOPIC_NO.match(normalize(text).strip().lstrip("#").translate({0xFF39: "Y", 0xFF59: "y"}))
    return int(m.group(1)) if m else None


async def topic_arg(ctx: Context, cmd: Command) -> Topic:
    number = parse_topic_number(cmd.words[0]) if cmd.words else None
    if number is None:
        raise usage(ctx, cmd.spec.name)
    topic = await ctx.repo.topics.get(number)
    if topic is None:
        raise Refusal("topic_not_found.txt.j2", number=f"Y{number}")
    return topic


_DEADLINE_WORD = re.compile(r"(?:^|\s)截止(?:时间|日期)?\s*:?\s*")
_TARGET_WORD = re.compile(r"\s对象\s*:?\s*")


def split_topic_head(head: str) -> tuple[str, str, str | None]:
    """ "标题 [截止]<时间> [对象 <单位…>|全体]" into title, deadline text and target text.
    The keywords count only at the start of a word, so a title may contain them; without
    截止 the deadline is the last one or two words before 对象 when they are a time."""
    text = normalize(head)
    found = list(_DEADLINE_WORD.finditer(text))
    if not found:
        return _split_without_keyword(text)
    last = found[-1]
    title, rest = text[: last.start()].strip(), text[last.end() :]
    deadline, target = _split_target(rest)
    return title, deadline, target


def _split_target(text: str) -> tuple[str, str | None]:
    target = _TARGET_WORD.search(" " + text)
    if target is None:
        return text.strip(), None
    return text[: target.start()].strip(), text[target.end() - 1 :].strip()


def _split_without_keyword(text: str) -> tuple[str, str, str | None]:
    before, target = _split_target(text)
    words = before.split()
    for n in (2, 1):  # "11-30 17:00" is two words, "周五" one; a title stays before them
        if len(words) > n and is_deadline_text(" ".join(words[-n:])):
            return " ".join(words[:-n]), " ".join(words[-n:]), target
    raise Refusal("topic_no_deadline.txt.j2")


# ------------------------------------------------------------------ operations


async def publish_topic(
    ctx: Context,
    title: str,
    deadline: datetime,
    targets: Sequence[Unit],
    brief: str,
    again: bool = False,
) -> Topic:
    """Publish a topic to every configured group, @-mentioning the officers of the target
    units (every unit when `targets` is empty); reminders and the closing are scheduled.
    An open topic with the same title and deadline is refused unless `again`."""
    if not title:
        raise Refusal("topic_no_title.txt.j2")
    existing = await ctx.repo.topics.open_same(title, deadline)
    if existing is not None and not again:
        raise Refusal("topic_duplicate.txt.j2", topic=existing)
    if deadline <= ctx.now:
        raise Refusal(
            "deadline_invalid.txt.j2", text=deadline.strftime("%Y-%m-%d %H:%M"), problem="past"
        )
    seen: set[int] = set()
    for unit in targets:
        if not unit.active:
            raise Refusal("topic_target_retired.txt.j2", name=unit.name)
        if unit.id in seen:
            raise Refusal("topic_target_twice.txt.j2", name=unit.name)
        seen.add(unit.id)
    topic = Topic(
        title=title,
        brief=brief,
        deadline=deadline,
        all_units=not targets,
        created_by=ctx.member.id,
        created_at=ctx.now,
    )
    await ctx.repo.topics.create(topic, list(targets))
    units = list(targets) or await ctx.repo.topics.targets(topic)
    officers = await ctx.repo.members.officers_by_unit(u.id for u in units)
    mention = [m.im_id for u in units for m in officers[u.id]]
    text = ctx.render("topic_published.txt.j2", topic=topic, units=units, all_units=topic.all_units)
    for group_id in sorted(ctx.app.groups):
        ctx.post(group_id, text, mention=mention)
    app, topic_id = ctx.app, topic.id
    ctx.after_commit.append(lambda: schedule_topic(app, topic_id, deadline))
    return topic


async def claim_topic(ctx: Context, topic: Topic, unit: Unit) -> None:
    """`unit` (the actor's) claims an open topic that targets it."""
    _require_open(topic)
    if not topic.all_units and unit.id not in {u.id for u in await ctx.repo.topics.targets(topic)}:
        raise Refusal("topic_not_targeted.txt.j2", topic=topic, unit=unit.name)
    if not await ctx.repo.topics.claim(topic, unit, ctx.member, ctx.now):
        raise Refusal("topic_claimed_already.txt.j2", topic=topic, unit=unit.name)


async def close_topic(ctx: Context, topic: Topic) -> None:
    """Close an open topic before its deadline; its reminders are cancelled."""
    _require_open(topic)
    ctx.repo.topics.close(topic, ctx.member, "manual", ctx.now)
    scheduler, prefix = ctx.app.scheduler, f"topic:{topic.id}:"
    ctx.after_commit.append(lambda: scheduler.cancel(prefix))


async def remind_topic(ctx: Context, topic: Topic, stage: str) -> str:
    """Post one reminder naming the target units that have not answered: "sent",
    "all_answered" or "already_today" (a topic is reminded at most once a day)."""
    _require_open(topic)
    repo = ctx.repo
    if await repo.reminders.sent_on("topic", topic.id, ctx.now.date().isoformat()):
        return "already_today"
    answered = await repo.topics.answered_unit_ids(topic)
    exempt = await repo.exemptions.active(ctx.now)  # 暂停催报: not reminded
    missing = [
        u for u in await repo.topics.targets(topic) if u.id not in answered and u.id not in exempt
    ]
    if not missing:
        return "all_answered"
    officers = await repo.members.officers_by_unit(u.id for u in missing)
    text = ctx.render(
        "topic_reminder.txt.j2", topic=topic, missing=missing, officers=officers, stage=stage
    )
    mention = [m.im_id for u in missing for m in officers[u.id]]
    for group_id in sorted(ctx.app.groups):
        ctx.post(group_id, text, mention=mention)
    repo.reminders.log("topic", topic.id, [u.id for u in missing], stage, ctx.now)
    return "sent"


async def close_topic_at_deadline(ctx: Context, topic: Topic) -> None:
    """The deadline passed: close the topic, write `[topic] missed_penalty` for the
    target units that did not answer (units exempt from reminders are excused), and post
    who answered and who did not."""
    _require_open(topic)
    repo, rules = ctx.repo, ctx.app.rules
    repo.topics.close(topic, None, "deadline", ctx.now)
    answered_ids = await repo.topics.answered_unit_ids(topic)
    targets = await repo.topics.targets(topic)
    exempt = await repo.exemptions.active(ctx.now)
    for unit in targets:  # written even when the rule gives 0
        if unit.id not in answered_ids and unit.id not in exempt:
            repo.reviews.add_points(
                unit.id,
                None,
                "topic_missed",
                topic.id,
                rules.missed_penalty,
                rules.version,
                ctx.now,
            )
    text = ctx.render(
        "topic_deadline_passed.txt.j2",
        topic=topic,
        answered=[u for u in targets if u.id in answered_ids],
        missing=[u for u in targets if u.id not in answered_ids],
    )
    for group_id in sorted(ctx.app.groups):
        ctx.post(group_id, text)


def _require_open(topic: Topic) -> None:
    if topic.status != "open":
        raise Refusal("topic_closed.txt.j2", topic=topic)


# ------------------------------------------------------------------ scheduled


def schedule_topic(app: BotApp, topic_id: int, deadline: datetime) -> None:
    """Reminders 24 h and 2 h before (moved back onto working hours; of two that land on
    one day only the later goes out), and the closing post."""
    now = app.clock.now()
    planned = [
        (stage, app.posting.before(deadline - before, deadline, now))
        for stage, before in REMINDER_STAGES
    ]
    for i, (stage, when) in enumerate(planned):
        job_id = f"topic:{topic_id}:{stage}"
        if when is None:
            continue  # its time has passed: a job still stored runs late if still useful
        if any(later is not None and later.date() == when.date() for _, later in planned[i + 1 :]):
            app.scheduler.cancel(job_id)
            continue
        app.scheduler.at(job_id, when, send_reminder, topic_id, stage, useful_until=deadline)
    closing = app.posting.next_allowed(deadline)
    app.scheduler.at(
        f"topic:{topic_id}:close",
        closing,
        close_at_deadline,
        topic_id,
        useful_until=closing + timedelta(days=7),
    )


@router.on_startup
async def ensure_topic_jobs(app: BotApp) -> None:
    """Every open topic has its reminder and closing jobs (also one seeded by the demo)."""
    async with app.db.reader() as s:
        topics = await Repo(s).topics.open_topics()
    for topic in topics:
        schedule_topic(app, topic.id, topic.deadline)


@router.job
async def send_reminder(app: BotApp, topic_id: int, stage: str) -> None:
    """Scheduled job: remind the target units that have not answered."""
    async with app.acting(None) as ctx:
        topic = await ctx.repo.topics.get(topic_id)
        if topic is not None and topic.status == "open":
            await remind_topic(ctx, topic, stage)


@router.job
async def close_at_deadline(app: BotApp, topic_id: int) -> None:
    """Scheduled job: the deadline passed."""
    async with app.acting(None) as ctx:
        topic = await ctx.repo.topics.get(topic_id)
        if topic is not None and topic.status == "open":
            await close_topic_at_deadline(ctx, topic)


# ------------------------------------------------------------------ chat commands


@router.command("约稿", aliases=("topic",), roles=COORDINATORS)
async def publish_command(ctx: Context, cmd: Command) -> None:
    again = cmd.words[:1] == [AGAIN_WORD] and cmd.head.startswith(AGAIN_WORD)
    head = cmd.head.removeprefix(AGAIN_WORD).strip() if again else cmd.head
    title, deadline_text, target_text = split_topic_head(head)
    try:
        deadline = parse_deadline(deadline_text, ctx.now)
    except DeadlineError as exc:
        raise Refusal("deadline_invalid.txt.j2", text=deadline_text, problem=exc.code) from None
    all_units = target_text is None or target_text in ALL_WORDS or not target_text
    targets = [] if all_units else await _target_units(ctx, target_text)
    topic = await publish_topic(ctx, title, deadline, targets, cmd.body.strip(), again)
    if not ctx.in_group:
        ctx.reply("topic_published_confirm.txt.j2", topic=topic, groups=len(ctx.app.groups))


async def _target_units(ctx: Context, text: str) -> list[Unit]:
    """The units named (retired ones too: publish_topic refuses them by name)."""
    units = []
    for name in (w for w in _LIST_SPLIT.split(text) if w):
        unit = await ctx.repo.units.find_any(name)
        units.append(unit or await unit_arg(ctx, name))  # refuses with the closest names
    return units


@router.command("约稿列表", aliases=("topics",), roles=EVERYONE)
async def list_topics(ctx: Context, cmd: Command) -> None:
    rows = await topic_rows(ctx.repo, await ctx.repo.topics.open_topics())
    ctx.reply("topic_list.txt.j2", rows=rows)


@router.command("认领", aliases=("claim",), roles=OFFICERS)
async def claim_command(ctx: Context, cmd: Command) -> None:
    topic = await topic_arg(ctx, cmd)
    unit = await ctx.repo.units.get(ctx.member.unit_id)
    await claim_topic(ctx, topic, unit)
    ctx.reply("topic_claimed.txt.j2", topic=topic, unit=unit.name)


@router.command("结束约稿", aliases=("closetopic",), roles=COORDINATORS)
async def close_command(ctx: Context, cmd: Command) -> None:
    topic = await topic_arg(ctx, cmd)
    await close_topic(ctx, topic)
    ctx.reply("topic_closed_now.txt.j2", topic=topic)


async def remind_command(ctx: Context, cmd: Command) -> None:
    """/催报 Y12 (the command lives with the quota reminders)."""
    topic = await topic_arg(ctx, cmd)
    outcome = await remind_topic(ctx, topic, "manual")
    if outcome != "sent" or not ctx.in_group:
        ctx.reply("topic_remind_result.txt.j2", topic=topic, outcome=outcome)


# ------------------------------------------------------------------ console: 约稿

RECENTLY_CLOSED = 10  # closed topics shown under the open ones
_DATETIME_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$")  # <input type="datetime-local">


async def topic_rows(repo: Repo, topics: Sequence[Topic]) -> list[dict]:
    """Each topic with its target units, who answered, who claimed and who is missing."""
    rows = []
    for topic in topics:
        targets = await repo.topics.targets(topic)
        answered = await repo.topics.answered_unit_ids(topic)
        rows.append(
            {
                "topic": topic,
                "targets": targets,
                "answered": [u for u in targets if u.id in answered],
                "missing": [u for u in targets if u.id not in answered],
                "claimed": [u for _, u in await repo.topics.claims(topic)],
            }
        )
    return rows


@router.page("topics", roles=COORDINATORS)
async def topics_page(view: View) -> Page:
    repo = view.repo
    return Page(
        "console/topics.html.j2",
        {
            "open": await topic_rows(repo, await repo.topics.open_topics()),
            "closed": await topic_rows(repo, await repo.topics.recently_closed(RECENTLY_CLOSED)),
            "units": await repo.units.all_active(),
            "now": view.now,
        },
    )


async def _topic_from(ctx: Context, form: Form) -> Topic:
    number = parse_topic_number(form.required("topic"))
    topic = await ctx.repo.topics.get(number) if number is not None else None
    if topic is None:
        raise BadInput("topic")
    return topic


@router.action("publish_topic", roles=COORDINATORS)
async def publish_action(ctx: Context, form: Form) -> str:
    """Title, a deadline from the date-time picker, target units (none ticked: all), brief."""
    text = form.required("deadline")
    if not _DATETIME_LOCAL.match(text):
        raise BadInput("deadline")
    try:
        deadline = datetime.fromisoformat(text)
    except ValueError:
        raise Refusal("deadline_invalid.txt.j2", text=text, problem="invalid_date") from None
    targets = []
    for value in form.all("units"):
        unit = await ctx.repo.units.get(int(value)) if value.isdigit() else None
        if unit is None:
            raise BadInput("units")
        targets.append(unit)
    topic = await publish_topic(ctx, form.get("title"), deadline, targets, form.get("brief"))
    return ctx.render("topic_published_confirm.txt.j2", topic=topic, groups=len(ctx.app.groups))


@router.action("close_topic", roles=COORDINATORS)
async def close_action(ctx: Context, form: Form) -> str:
    topic = await _topic_from(ctx, form)
    await close_topic(ctx, topic)
    return ctx.render("topic_closed_now.txt.j2", topic=topic)


@router.action("remind_topic", roles=COORDINATORS)
async def remind_action(ctx: Context, form: Form) -> str:
    topic = await _topic_from(ctx, form)
    outcome = await remind_topic(ctx, topic, "manual")
    return ctx.render("topic_remind_result.txt.j2", topic=topic, outcome=outcome)
