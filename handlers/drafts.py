"""Drafts: /报送 (inline or collected until /完成), /撤回, /我的稿件, /稿件."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.context import Context, Refusal
from bot.onebot import Event
from bot.router import MEMBERS, OFFICERS, Command, Router, normalize
from storage.models import CATEGORIES, Draft, DraftStatus, Role
from storage.queries import Repo, char_count, content_hash

from .common import draft_arg, require_own_unit

if TYPE_CHECKING:
    from bot.app import BotApp

router = Router("drafts")

MAX_TITLE_CHARS = 80
BODY_PAGE = 2800  # characters of a body shown by one /稿件 (at most two chat messages)
_PAGE = re.compile(r"^[0-9]{1,6}$")
_TOPIC_TAG = re.compile(r"^(?:[Yy]|约稿)(\d{1,9})$")
_REVISION_TAG = re.compile(r"^(?:[Gg]|修改|改)(\d{1,12})$")


@dataclass
class Tags:
    category: str = "动态"
    urgent: bool = False
    topic_ref: str | None = None
    revision_of: int | None = None  # #G12: a revision of returned draft G12


def parse_tags(tags: list[str]) -> Tags:
    """#调研 #紧急 #Y12 / #约稿12 into a category, the urgent flag and a topic."""
    out = Tags()
    categories = []
    for tag in tags:
        m = _TOPIC_TAG.match(tag)
        r = _REVISION_TAG.match(tag)
        if m:
            out.topic_ref = f"Y{int(m.group(1))}"
        elif r:
            out.revision_of = int(r.group(1))
        elif tag == "紧急":
            out.urgent = True
        elif tag in CATEGORIES:
            categories.append(tag)
        else:
            raise Refusal("submit_bad_tag.txt.j2", tag=tag, categories=CATEGORIES)
    out.category = categories[0] if categories else ("紧急" if out.urgent else "动态")
    return out


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime) -> datetime:
    return (start + timedelta(days=32)).replace(day=1)


async def check_flood(ctx: Context) -> None:
    limit = ctx.app.config.limits.drafts_per_hour
    if (
        await ctx.repo.drafts.count_by_member_since(ctx.member.id, ctx.now - timedelta(hours=1))
        >= limit
    ):
        raise Refusal("submit_flood.txt.j2", limit=limit)


async def register_draft(ctx: Context, draft: Draft) -> Draft:
    """Store a new draft (refusing an exact duplicate of the unit's) and queue the receipt.
    A revision of a returned draft (#G12, or the same title) is linked to it."""
    duplicate = await ctx.repo.drafts.duplicate_of(draft.unit_id, draft.content_hash)
    if duplicate is not None:
        raise Refusal("draft_duplicate.txt.j2", existing=duplicate)
    if draft.revision_of is not None:
        original = await ctx.repo.drafts.get(draft.revision_of)
        if (
            original is None
            or original.unit_id != draft.unit_id
            or original.status != DraftStatus.returned
        ):
            raise Refusal("revision_invalid.txt.j2", number=f"G{draft.revision_of}")
    else:
        original = await ctx.repo.drafts.returned_with_title(draft.unit_id, draft.title)
        draft.revision_of = original.id if original else None
    await ctx.repo.drafts.create(draft, ctx.member)
    if original is not None:
        await ctx.repo.drafts.record(original, "revised", ctx.member, ctx.now, draft.number)
    await send_receipt(ctx, draft)
    return draft


async def send_receipt(ctx: Context, draft: Draft) -> None:
    unit = await ctx.repo.units.get(draft.unit_id)
    start = month_start(draft.submitted_at)
    nth = await ctx.repo.drafts.count_in(draft.unit_id, start, next_month(start))
    note = None
    if draft.topic_ref:  # a draft for a closed or unknown topic is still accepted, with a note
        topic = await ctx.repo.topics.get(int(draft.topic_ref[1:]))
        note = "unknown" if topic is None else ("closed" if topic.status != "open" else None)
    template = "draft_receipt.txt.j2" if ctx.in_group else "draft_receipt_private.txt.j2"
    ctx.reply(template, draft=draft, unit=unit.name, nth=nth, topic_note=note)


def check_title(title: str) -> None:
    if not title:
        raise Refusal("submit_no_title.txt.j2")
    if len(title) > MAX_TITLE_CHARS:
        raise Refusal("submit_title_too_long.txt.j2", length=len(title), limit=MAX_TITLE_CHARS)


def _new_draft(ctx: Context, title: str, body: str, tags: Tags, source: str) -> Draft:
    check_title(title)
    return Draft(
        unit_id=ctx.member.unit_id,
        submitter_id=ctx.member.id,
        title=title,
        body=body,
        char_count=char_count(body),
        category=tags.category,
        urgent=tags.urgent,
        topic_ref=tags.topic_ref,
        revision_of=tags.revision_of,
        source=source,
        group_id=ctx.event.group_id,
        content_hash=content_hash(title, body),
        submitted_at=ctx.now,
    )


@router.command("报送", aliases=("submit",), roles=OFFICERS)
async def submit(ctx: Context, cmd: Command) -> None:
    tags = parse_tags(cmd.tags)
    check_title(cmd.rest)
    await check_flood(ctx)
    if not cmd.body.strip():
        # No body: collect this person's next messages in this chat until /完成.
        await ctx.repo.collecting.start(
            ctx.event.chat_type, ctx.event.chat_id, ctx.event.user_id, cmd.head, ctx.now
        )
        key = (ctx.event.chat_type, ctx.event.chat_id, ctx.event.user_id)
        ctx.after_commit.append(lambda: ctx.app.collecting.add(key))
        ctx.reply(
            "collect_started.txt.j2",
            title=cmd.rest,
            idle=ctx.app.config.limits.collect_idle_minutes,
        )
        return
    await register_draft(
        ctx, _new_draft(ctx, cmd.rest, cmd.body.strip(), tags, ctx.event.chat_type)
    )


async def collect(ctx: Context, event: Event) -> None:
    """A non-command message while /报送 is collecting: append it to the body."""
    session = await ctx.repo.collecting.get(event.chat_type, event.chat_id, event.user_id)
    if session is None or ctx.role != Role.officer:
        return
    text = "".join(s.data.get("text", "") for s in event.segments if s.type == "text").strip()
    if not text:
        return
    total = sum(len(p) for p in json.loads(session.parts)) + len(text)
    if total > ctx.app.config.limits.max_message_chars:
        raise Refusal(
            "too_long.txt.j2", limit=ctx.app.config.limits.max_message_chars, length=total
        )
    ctx.repo.collecting.append(session, text, ctx.now)


async def _end_collection(ctx: Context) -> tuple[object, list[str]]:
    session = await ctx.repo.collecting.get(
        ctx.event.chat_type, ctx.event.chat_id, ctx.event.user_id
    )
    if session is None:
        raise Refusal("collect_none.txt.j2")
    await ctx.repo.collecting.finish(session)
    key = (ctx.event.chat_type, ctx.event.chat_id, ctx.event.user_id)
    ctx.after_commit.append(lambda: ctx.app.collecting.discard(key))
    return session, json.loads(session.parts)


@router.command("完成", aliases=("done",), roles=OFFICERS)
async def finish_collection(ctx: Context, cmd: Command) -> None:
    session, parts = await _end_collection(ctx)
    body = "\n".join(parts).strip()
    if not body:
        raise Refusal("collect_empty.txt.j2")
    tokens = session.header.split()
    tags = parse_tags([normalize(t)[1:] for t in tokens if normalize(t).startswith("#")])
    title = " ".join(t for t in tokens if not normalize(t).startswith("#"))
    await register_draft(ctx, _new_draft(ctx, title, body, tags, ctx.event.chat_type))


@router.command("取消", aliases=("cancel",), roles=OFFICERS)
async def cancel_collection(ctx: Context, cmd: Command) -> None:
    await _end_collection(ctx)
    ctx.reply("collect_cancelled.txt.j2")


async def prompt_idle_collections(app: BotApp, cutoff: datetime) -> None:
    """Ask people whose collected draft has been idle whether to keep it."""
    async with app.db.transaction() as s:
        repo = Repo(s)
        for session in await repo.collecting.idle_since(cutoff):
            text = app.renderer.text("collect_idle_prompt.txt.j2", header=session.header)
            if session.chat_type == "group":
                app.queue(repo, "group", session.chat_id, text, mention=[session.im_id])
            else:
                app.queue(repo, "private", session.im_id, text)
            session.prompted = True
    app.sender.wake()


@router.command("撤回", aliases=("withdraw",), roles=OFFICERS)
async def withdraw(ctx: Context, cmd: Command) -> None:
    draft = await draft_arg(ctx, cmd)
    require_own_unit(ctx, draft)
    if draft.status not in (DraftStatus.submitted, DraftStatus.awaiting_file):
        raise Refusal("withdraw_too_late.txt.j2", draft=draft)
    draft.status = DraftStatus.withdrawn
    await ctx.repo.drafts.record(draft, "withdraw", ctx.member, ctx.now)
    ctx.reply("withdrawn.txt.j2", draft=draft)


@router.command("我的稿件", aliases=("mine",), roles=OFFICERS)
async def my_drafts(ctx: Context, cmd: Command) -> None:
    limit = 5 if ctx.in_group else 20
    drafts, total = await ctx.repo.drafts.recent_for_unit(ctx.member.unit_id, limit)
    unit = await ctx.repo.units.get(ctx.member.unit_id)
    ctx.reply("my_drafts.txt.j2", drafts=drafts, total=total, unit=unit.name, in_group=ctx.in_group)


@router.command("稿件", aliases=("draft",), roles=MEMBERS - {Role.leader})
async def show_draft(ctx: Context, cmd: Command) -> None:
    """One draft with its history, privately; a long body a page at a time
    (`/稿件 G12 2`), so one draft never floods the chat."""
    draft = await draft_arg(ctx, cmd)
    require_own_unit(ctx, draft)
    pages = max(1, -(-len(draft.body) // BODY_PAGE))
    page = int(cmd.words[1]) if len(cmd.words) > 1 and _PAGE.match(cmd.words[1]) else 1
    if not 1 <= page <= pages:
        raise Refusal("draft_page_invalid.txt.j2", draft=draft, pages=pages)
    unit = await ctx.repo.units.get(draft.unit_id)
    submitter = await ctx.repo.members.get(draft.submitter_id)
    history = await ctx.repo.drafts.history(draft.id) if page == 1 else []
    ctx.reply_private(
        "draft_detail.txt.j2",
        draft=draft,
        unit=unit.name,
        submitter=submitter.name,
        history=history,
        body=draft.body[(page - 1) * BODY_PAGE : page * BODY_PAGE],
        page=page,
        pages=pages,
        rest=max(0, len(draft.body) - page * BODY_PAGE),
    )
    if ctx.in_group:
        ctx.reply("draft_sent_private.txt.j2", draft=draft)
