"""Topic requests (约稿): publish, list, claim, close, remind, close at the deadline."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.context import Context, Refusal
from bot.router import COORDINATORS, EVERYONE, OFFICERS, Command, Router, normalize
from bot.timeparse import DeadlineError, parse_deadline
from storage.models import Topic
from storage.queries import Repo

from .common import unit_arg, usage

if TYPE_CHECKING:
    from bot.app import BotApp

router = Router("topics")

REMINDER_STAGES = (("24h", timedelta(hours=24)), ("2h", timedelta(hours=2)))
ALL_WORDS = ("全体", "全部", "所有单位")
_TOPIC_NO = re.compile(r"^(?:[Yy]|约稿)?(\d{1,9})$")
_LIST_SPLIT = re.compile(r"[\s,、;；]+")


def parse_topic_number(text: str) -> int | None:
    m = _TOPIC_NO.match(normalize(text).strip().lstrip("#").translate({0xFF39: "Y", 0xFF59: "y"}))
    return int(m.group(1)) if m else None


async def topic_arg(ctx: Context, cmd: Command, *, must_be_open: bool = True) -> Topic:
    number = parse_topic_number(cmd.words[0]) if cmd.words else None
    if number is None:
        raise usage(ctx, cmd.spec.name)
    topic = await ctx.repo.topics.get(number)
    if topic is None:
        raise Refusal("topic_not_found.txt.j2", number=f"Y{number}")
    if must_be_open and topic.status != "open":
        raise Refusal("topic_closed.txt.j2", topic=topic)
    return topic


_DEADLINE_WORD = re.compile(r"(?:^|\s)截止(?:时间|日期)?\s*:?\s*")
_TARGET_WORD = re.compile(r"\s对象\s*:?\s*")


def split_topic_head(head: str) -> tuple[str, str, str | None]:
    """ "标题 截止<时间> [对象 <单位…>|全体]" into title, deadline text and target text.
    The keywords count only at the start of a word, so a title may contain them."""
    text = normalize(head)
    found = list(_DEADLINE_WORD.finditer(text))
    if not found:
        raise Refusal("topic_no_deadline.txt.j2")
    last = found[-1]
    title, rest = text[: last.start()].strip(), text[last.end() :]
    target = _TARGET_WORD.search(" " + rest)
    if target is None:
        return title, rest.strip(), None
    return title, rest[: target.start()].strip(), rest[target.end() - 1 :].strip()


@router.command("约稿", aliases=("topic",), roles=COORDINATORS)
async def publish_topic(ctx: Context, cmd: Command) -> None:
    title, deadline_text, target_text = split_topic_head(cmd.head)
    if not title:
        raise Refusal("topic_no_title.txt.j2")
    try:
        deadline = parse_deadline(deadline_text, ctx.now)
    except DeadlineError as exc:
        raise Refusal("deadline_invalid.txt.j2", text=deadline_text, problem=exc.code) from None
    all_units = target_text is None or target_text in ALL_WORDS or not target_text
    targets = [] if all_units else await _target_units(ctx, target_text)
    topic = Topic(
        title=title,
        brief=cmd.body.strip(),
        deadline=deadline,
        all_units=all_units,
        created_by=ctx.member.id,
        created_at=ctx.now,
    )
    await ctx.repo.topics.create(topic, targets)
    units = targets or await ctx.repo.topics.targets(topic)
    officers = await ctx.repo.members.officers_by_unit(u.id for u in units)
    mention = [m.im_id for u in units for m in officers[u.id]]
    text = ctx.render("topic_published.txt.j2", topic=topic, units=units, all_units=all_units)
    for group_id in sorted(ctx.app.groups):
        ctx.post(group_id, text, mention=mention)
    if not ctx.in_group:
        ctx.reply("topic_published_confirm.txt.j2", topic=topic, groups=len(ctx.app.groups))
    topic_id = topic.id
    ctx.after_commit.append(lambda: schedule_topic(ctx.app, topic_id, deadline))


async def _target_units(ctx: Context, text: str) -> list:
    names = [w for w in _LIST_SPLIT.split(text) if w]
    units, seen = [], set()
    for name in names:
        unit = await ctx.repo.units.find_any(name)
        if unit is not None and not unit.active:
            raise Refusal("topic_target_retired.txt.j2", name=name)
        unit = unit or await unit_arg(ctx, name)  # refuses with the closest names
        if unit.id in seen:
            raise Refusal("topic_target_twice.txt.j2", name=unit.name)
        seen.add(unit.id)
        units.append(unit)
    return units


def schedule_topic(app: BotApp, topic_id: int, deadline: datetime) -> None:
    """Reminders 24 h and 2 h before (moved onto working hours), and the closing post."""
    now = app.clock.now()
    for stage, before in REMINDER_STAGES:
        when = app.posting.before(deadline - before, deadline)
        if when is not None and when > now:
            app.scheduler.at(
                f"topic:{topic_id}:{stage}",
                when,
                "handlers.topics:send_reminder",
                topic_id,
                stage,
                useful_until=deadline,
            )
    closing = app.posting.next_allowed(deadline)
    app.scheduler.at(
        f"topic:{topic_id}:close",
        closing,
        "handlers.topics:close_at_deadline",
        topic_id,
        useful_until=closing + timedelta(days=7),
    )


async def send_reminder(app: BotApp, topic_id: int, stage: str) -> None:
    """Scheduled job: remind the target units that have not answered."""
    async with app.db.transaction() as s:
        repo = Repo(s)
        topic = await repo.topics.get(topic_id)
        if topic is not None and topic.status == "open":
            await remind(app, repo, topic, stage)
    app.sender.wake()


async def remind(app: BotApp, repo: Repo, topic: Topic, stage: str) -> str:
    """Post one reminder naming the units that have not answered: "sent",
    "all_answered" or "already_today" (a topic is reminded at most once a day)."""
    now = app.clock.now()
    if await repo.reminders.sent_on("topic", topic.id, now.date().isoformat()):
        return "already_today"
    answered = await repo.topics.answered_unit_ids(topic)
    missing = [u for u in await repo.topics.targets(topic) if u.id not in answered]
    if not missing:
        return "all_answered"
    officers = await repo.members.officers_by_unit(u.id for u in missing)
    text = app.renderer.text(
        "topic_reminder.txt.j2", topic=topic, missing=missing, officers=officers, stage=stage
    )
    for group_id in sorted(app.groups):
        app.queue(
            repo,
            "group",
            group_id,
            text,
            mention=[m.im_id for u in missing for m in officers[u.id]],
        )
    repo.reminders.log("topic", topic.id, [u.id for u in missing], stage, now)
    return "sent"


async def close_at_deadline(app: BotApp, topic_id: int) -> None:
    """Scheduled job: the deadline passed; close the topic with a short summary."""
    async with app.db.transaction() as s:
        repo = Repo(s)
        topic = await repo.topics.get(topic_id)
        if topic is None or topic.status != "open":
            return
        now = app.clock.now()
        repo.topics.close(topic, None, "deadline", now)
        answered_ids = await repo.topics.answered_unit_ids(topic)
        targets = await repo.topics.targets(topic)
        rules = app.rules
        for unit in targets:  # [topic] missed_penalty, written even when the rule gives 0
            if unit.id not in answered_ids:
                repo.reviews.add_points(
                    unit.id,
                    None,
                    "topic_missed",
                    topic.id,
                    rules.missed_penalty,
                    rules.version,
                    now,
                )
        text = app.renderer.text(
            "topic_deadline_passed.txt.j2",
            topic=topic,
            answered=[u for u in targets if u.id in answered_ids],
            missing=[u for u in targets if u.id not in answered_ids],
        )
        for group_id in sorted(app.groups):
            app.queue(repo, "group", group_id, text)
    app.sender.wake()


@router.command("约稿列表", aliases=("topics",), roles=EVERYONE)
async def list_topics(ctx: Context, cmd: Command) -> None:
    rows = []
    for topic in await ctx.repo.topics.open_topics():
        targets = await ctx.repo.topics.targets(topic)
        answered = await ctx.repo.topics.answered_unit_ids(topic)
        rows.append(
            {
                "topic": topic,
                "target_count": len(targets),
                "answered": [u.name for u in targets if u.id in answered],
                "claimed": [u.name for _, u in await ctx.repo.topics.claims(topic)],
            }
        )
    ctx.reply("topic_list.txt.j2", rows=rows)


@router.command("认领", aliases=("claim",), roles=OFFICERS)
async def claim_topic(ctx: Context, cmd: Command) -> None:
    topic = await topic_arg(ctx, cmd)
    unit = await ctx.repo.units.get(ctx.member.unit_id)
    if not topic.all_units and unit.id not in {u.id for u in await ctx.repo.topics.targets(topic)}:
        raise Refusal("topic_not_targeted.txt.j2", topic=topic, unit=unit.name)
    if not await ctx.repo.topics.claim(topic, unit, ctx.member, ctx.now):
        raise Refusal("topic_claimed_already.txt.j2", topic=topic, unit=unit.name)
    ctx.reply("topic_claimed.txt.j2", topic=topic, unit=unit.name)


@router.command("结束约稿", aliases=("closetopic",), roles=COORDINATORS)
async def close_topic(ctx: Context, cmd: Command) -> None:
    topic = await topic_arg(ctx, cmd)
    ctx.repo.topics.close(topic, ctx.member, "manual", ctx.now)
    ctx.reply("topic_closed_now.txt.j2", topic=topic)
    prefix = f"topic:{topic.id}:"
    ctx.after_commit.append(lambda: ctx.app.scheduler.cancel(prefix))


async def remind_topic_now(ctx: Context, cmd: Command) -> None:
    """/催报 Y12 (the command lives with the quota reminders)."""
    topic = await topic_arg(ctx, cmd)
    outcome = await remind(ctx.app, ctx.repo, topic, "manual")
    if outcome != "sent" or not ctx.in_group:
        ctx.reply("topic_remind_result.txt.j2", topic=topic, outcome=outcome)
